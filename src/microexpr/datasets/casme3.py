"""CAS(ME)^3 part A: 100 subjects x 13 clips (a-m), one or several expressions per clip.

Layout (docs/datasets.md, "CAS(ME)^3")::

    <root>/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx  (or casme3_table.xlsx, sheet "label",
                                                       or CAS(ME)3_part_A_v2.xls)
    <root>/part_A/data/part_A_split/part_A/spNO.1/a/color/<n>.jpg   (<n> unpadded)
           or MEB's copy ME_A/spNO.1/a/color/

Columns ``Subject, Filename, Onset, Apex, Offset, AU, Objective class, emotion`` (numbers
often stored as text); the v2 .xls adds ``Expression type``, and only micro-expressions are
kept unless ``expression_type=None``. When one clip holds several expressions their ids are
``spNO.1_a``, ``spNO.1_a2``, ``spNO.1_a3`` in sheet order (MEB's naming). Offset 0 is
repaired to the apex.
"""

from __future__ import annotations

from pathlib import Path

from microexpr.datasets.coded_sheet import CodedSheet, coded_sheet_reader
from microexpr.datasets.problems import Report
from microexpr.datasets.sheets import Record
from microexpr.samples import Sample

FPS = 30.0  # (U) docs/datasets.md: frame rate not verified; pass fps= to override
EMOTIONS = frozenset({"anger", "disgust", "fear", "happiness", "sadness", "surprise", "others"})
ROLES = {
    "subject": ("Subject", "sub"),
    "clip": ("Filename", "clip"),
    "onset": ("Onset", "OnsetFrame", "Onset Frame"),
    "apex": ("Apex", "ApexFrame", "Apex Frame"),
    "offset": ("Offset", "OffsetFrame", "Offset Frame"),
    "aus": ("AU", "Action Units", "AUs"),
    "objective": ("Objective class", "Objective classes"),
    "emotion": ("emotion", "Estimated Emotion"),
    "type": ("Expression type", "type"),
}


@coded_sheet_reader("casme3", "CAS(ME)^3 part A sheet + spNO.*/<a-m>/color frame folders")
class Casme3Sheet(CodedSheet):
    """CAS(ME)^3 part A expressions (taxonomies casme3-7, casme3-4, casme3-3)."""

    dataset = "casme3"
    fps = FPS
    emotions = EMOTIONS
    roles = ROLES
    subject_prefix, subject_width = "spNO.", 1  # 1, spNO.1 -> spNO.1
    sheet_patterns = (
        "cas(me)3_part_A_ME_label*.xls*",
        "cas(me)3_part_A*.xls*",
        "casme3*.xls*",
    )
    frames_dirs = ("part_A/data/part_A_split/part_A", "ME_A", "part_A", ".")

    def __init__(self, report: Report, expression_type: str | None = "micro"):
        super().__init__(report)
        self.expression_type = expression_type
        self.dropped: dict[str, int] = {}
        self.occurrences: dict[tuple[str, str], int] = {}

    def clip_id(self, text: str, record: Record) -> str:
        if text != text.lower():
            self.report.note(record.file, record.row, f"clip {text!r} read as {text.lower()!r}")
        return text.lower()

    def clip_folder(self, frames_root: Path, subject: str, clip: str, record: Record) -> Path:
        folder = super().clip_folder(frames_root, subject, clip, record)
        return folder / "color" if (folder / "color").is_dir() else folder

    def keep(self, record: Record) -> bool:
        kind = record.cells.get("type", "")
        if self.expression_type is None or not kind:
            return True
        if self.expression_type.lower() in kind.lower():
            return True
        self.dropped[kind] = self.dropped.get(kind, 0) + 1
        return False

    def sample_id(self, subject: str, clip: str, record: Record) -> str:
        count = self.occurrences[(subject, clip)] = self.occurrences.get((subject, clip), 0) + 1
        return f"{subject}_{clip}" + (str(count) if count > 1 else "")

    def meta(self, record: Record) -> dict[str, str]:
        keep = {"objective": "objective_class", "type": "expression_type"}
        return {name: record.cells[k] for k, name in keep.items() if record.cells.get(k)}

    def finish(self, samples: list[Sample], file: Path) -> list[Sample]:
        if self.dropped:
            listing = ", ".join(f"{k!r} ({n})" for k, n in sorted(self.dropped.items()))
            self.report.note(
                file,
                None,
                f"rows of other expression types left out: {listing} "
                "(expression_type=None keeps them)",
            )
        several = {key: n for key, n in self.occurrences.items() if n > 1}
        for (subject, clip), n in sorted(several.items()):
            ids = ", ".join(f"{subject}_{clip}{k if k > 1 else ''}" for k in range(1, n + 1))
            self.report.note(file, None, f"clip {subject}/{clip} holds {n} expressions: {ids}")
        return super().finish(samples, file)


load_casme3 = Casme3Sheet.load
