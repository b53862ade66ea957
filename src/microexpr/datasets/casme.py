"""CASME (I): 60 fps clips of 19 subjects, coded in ``CASME-coded-20190721.xls``.

Layout (docs/datasets.md, "CASME (I)")::

    <root>/CASME-coded-20190721.xls           (or MEB's copy casme.xlsx)
    <root>/CASME_raw_selected/sub01/EP01_12/EP01_12-<n>.jpg   (cropped: Cropped/.../reg_...)

Columns ``Subject`` (a number), ``Filename``, blank, ``OnsetF``, ``ApexF1``, ``ApexF2``,
``OffsetF``, blank, ``Onset``, ``Total``, ``AU``, ``Emotion``; empty cells hold ``\\``.
``<n>`` is 3-digit padded in some clips only: frames are sorted by number, not by name.
``Onset`` and ``Total`` are durations in ms at 60 fps counted inclusively, so an offset coded
``\\`` is derived as onset + round(Total * 60 / 1000) - 1 (reported).
"""

from __future__ import annotations

from microexpr.datasets.coded_sheet import CodedSheet, coded_sheet_reader
from microexpr.datasets.sheets import Record

FPS = 60.0
EMOTIONS = frozenset(
    {
        "tense",
        "disgust",
        "repression",
        "surprise",
        "happiness",
        "sadness",
        "contempt",
        "fear",
        "amusement",
    }
)
ROLES = {
    "subject": ("Subject",),
    "clip": ("Filename",),
    "onset": ("OnsetF", "Onset Frame", "OnsetFrame"),
    "apex": ("ApexF1", "ApexF", "Apex Frame", "ApexFrame"),
    "apex_end": ("ApexF2",),
    "offset": ("OffsetF", "Offset Frame", "OffsetFrame"),
    "total": ("Total",),
    "aus": ("AU", "Action Units"),
    "emotion": ("Emotion", "Estimated Emotion"),
}


@coded_sheet_reader("casme", "CASME (I) coded sheet + sub*/EP* frame folders")
class CasmeSheet(CodedSheet):
    """CASME clips (taxonomy casme-4: tense, surprise, repression, disgust)."""

    dataset = "casme"
    fps = FPS
    emotions = EMOTIONS
    roles = ROLES
    required = ("subject", "clip", "onset", "emotion")
    subject_prefix, subject_width = "sub", 2
    sheet_patterns = ("CASME-coded*.xls*", "casme.xls*", "CASME*cod*.xls*")
    frames_dirs = ("CASME_raw_selected", "CASME_raw", "Cropped", "CASME_cropped", ".")

    def numbers(self, record: Record) -> tuple[int | None, int | None, int | None]:
        onset, apex, offset = super().numbers(record)
        if offset is None and onset is not None:
            total_ms = record.frame("total")
            if total_ms:
                offset = onset + round(total_ms * FPS / 1000) - 1
                self.report.repair(
                    record.file,
                    record.row,
                    f"offset not coded: derived from Total {total_ms} ms at 60 fps as {offset}",
                )
        return onset, apex, offset

    def meta(self, record: Record) -> dict[str, str]:
        end = record.cells.get("apex_end", "")
        return {"apex_end": end} if end.isdigit() else {}


load_casme = CasmeSheet.load
