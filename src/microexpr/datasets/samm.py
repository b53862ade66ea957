"""SAMM: 200 fps grey clips of 29 subjects (006-037), coded in the FACS-codes sheet.

Layout (docs/datasets.md, "SAMM")::

    <root>/SAMM_Micro_FACS_Codes_v2.xlsx      (13-row preamble, header on row 14), or
           SAMM_20181215_Micro_FACS_Codes_v2.xlsx (header on row 1), or a ``MICRO_ONLY`` sheet
    <root>/SAMM/006/006_1_2/006_05562.jpg     (or <root>/006/...): absolute 5-digit frames

Columns ``Subject, Filename, Inducement Code, Onset Frame, Apex Frame, Offset Frame, Duration,
Micro, Action Units, Estimated Emotion, Objective Classes, Notes``. ``Duration`` is a formula
(``=SUM(F2-D2)+1``): its saved value is checked against offset-onset+1 when there is one.
"""

from __future__ import annotations

from microexpr.datasets.coded_sheet import CodedSheet, coded_sheet_reader
from microexpr.datasets.sheets import Record
from microexpr.errors import DataError

EMOTIONS = frozenset(
    {"anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise", "others"}
)
ROLES = {
    "subject": ("Subject",),
    "clip": ("Filename",),
    "inducement": ("Inducement Code",),
    "onset": ("Onset Frame", "OnsetFrame", "Onset"),
    "apex": ("Apex Frame", "ApexFrame", "Apex"),
    "offset": ("Offset Frame", "OffsetFrame", "Offset"),
    "duration": ("Duration",),
    "type": ("Micro", "Type"),
    "aus": ("Action Units", "AU"),
    "emotion": ("Estimated Emotion", "Emotion"),
    "objective": ("Objective Classes", "Objective Class", "Classes"),
    "notes": ("Notes",),
}


@coded_sheet_reader(
    "samm", "SAMM FACS-codes sheet (with or without preamble) + <subj>/<clip> frames"
)
class SammSheet(CodedSheet):
    """SAMM clips (taxonomies samm-5, samm-3)."""

    dataset = "samm"
    fps = 200.0
    emotions = EMOTIONS
    roles = ROLES
    subject_prefix, subject_width = "", 3  # 6, 06, 006 -> 006
    sheet_patterns = ("SAMM*Micro_FACS_Codes*.xls*", "SAMM*FACS*.xls*", "SAMM*.xls*")
    frames_dirs = ("SAMM", "SAMM_CROP", "SAMM_cropped", ".")

    def numbers(self, record: Record) -> tuple[int | None, int | None, int | None]:
        onset, apex, offset = super().numbers(record)
        if "duration" not in record.formulas and onset is not None and offset:
            try:
                duration = record.frame("duration")
            except DataError:  # a text Duration does not matter: the reader does not need it
                duration = None
            if duration is not None and duration != offset - onset + 1:
                self.report.note(
                    record.file,
                    record.row,
                    f"Duration {duration} disagrees with offset-onset+1 = {offset - onset + 1}",
                )
        return onset, apex, offset

    def meta(self, record: Record) -> dict[str, str]:
        keep = ("inducement", "type", "objective", "notes")
        return {k: record.cells[k] for k in keep if record.cells.get(k)}


load_samm = SammSheet.load
