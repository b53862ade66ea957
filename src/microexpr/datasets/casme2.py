"""CASME II: 200 fps clips of 26 subjects coded in one sheet (several versions in circulation).

Layout (docs/datasets.md, "CASME II")::

    <root>/CASME2-coding-20140508.xlsx        or CASME2-coding-updated.xlsx,
                                               CASME2_label_Ver_2.xls (any one)
    <root>/CASME2_RAW_selected/sub01/EP02_01f/img46.jpg
           (or CASME2-RAW/, CASME2_RAW/, Cropped/ with reg_img46.jpg, or the root itself)

Sheet columns ``Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, Action Units,
Estimated Emotion``; the ``updated`` version adds blank columns, which are ignored. Subject
``01``/``1``/``sub01`` all become ``sub01``. A ``/`` apex is repaired to the middle frame.
"""

from __future__ import annotations

from microexpr.datasets.coded_sheet import CodedSheet, coded_sheet_reader
from microexpr.datasets.sheets import Record

EMOTIONS = frozenset(
    {"happiness", "disgust", "repression", "surprise", "sadness", "fear", "others"}
)
ROLES = {
    "subject": ("Subject", "sub"),
    "clip": ("Filename", "Material"),
    "onset": ("OnsetFrame", "Onset Frame", "OnsetF", "Onset"),
    "apex": ("ApexFrame", "Apex Frame", "ApexF", "Apex"),
    "offset": ("OffsetFrame", "Offset Frame", "OffsetF", "Offset"),
    "aus": ("Action Units", "AU", "AUs"),
    "emotion": ("Estimated Emotion", "Emotion"),
    "objective": ("Objective Class", "Objective Classes"),
}


@coded_sheet_reader("casme2", "CASME II coding sheet (any version) + sub*/EP* frame folders")
class Casme2Sheet(CodedSheet):
    """CASME II clips; taxonomies casme2-5/-3/-7 pick the classes (counts follow the sheet)."""

    dataset = "casme2"
    fps = 200.0
    emotions = EMOTIONS
    roles = ROLES
    subject_prefix, subject_width = "sub", 2  # 1, 01, sub1 -> sub01
    sheet_patterns = (
        "CASME2-coding-*.xls*",
        "CASME2_label_Ver_*.xls*",
        "CASME2*coding*.xls*",
        "CASME2*label*.xls*",
    )
    frames_dirs = (
        "CASME2_RAW_selected",
        "CASME2-RAW",
        "CASME2_RAW",
        "Cropped",
        "CASME2_Cropped",
        ".",
    )

    def meta(self, record: Record) -> dict[str, str]:
        objective = record.cells.get("objective", "")
        return {"objective_class": objective} if objective else {}


load_casme2 = Casme2Sheet.load
