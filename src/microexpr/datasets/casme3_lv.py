"""CAS(ME)^3 part A long clips: each subject's clips a-m as videos, macro and micro rows.

Layout (docs/datasets.md, "CAS(ME)^3 part A long clips")::

    <root>/CAS(ME)3_part_A_v2.xls     one sheet, ``Expression type`` Micro-/Macro-expression
      or <root>/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx (sheet label: micro rows)
         + <root>/cas(me)3_part_A_MaE_label_JpgIndex_v2_emotion.xlsx (macro rows)
    <root>/part_A/data/part_A_split/part_A/spNO.1/a/color/<n>.jpg  (<n> unpadded)

The whole clip folder is the video (``spNO.1_a``); the sheets' frame numbers are the file
numbers. Columns as the ``casme3`` reader takes them (``Subject, Filename, Onset, Apex,
Offset, AU, Objective class, emotion``; the macro sheet may name them ``sub, seq, onset,
apex, offset, emotion``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from microexpr.datasets import casme3
from microexpr.datasets.coded_sheet import DirIndex, VerifyImages
from microexpr.datasets.long_video_sheet import LongVideoSheet, VideoRef, expression_type
from microexpr.datasets.problems import Report, reporting
from microexpr.datasets.registry import register_videos
from microexpr.datasets.sheets import Record, find_dir, find_file, read_table
from microexpr.errors import DataError
from microexpr.samples import Video

DATASET = "casme3_lv"
TYPED_PATTERNS = ("CAS(ME)3_part_A_v2.xls*",)
MICRO_PATTERNS = ("cas(me)3_part_A_ME_label*.xls*", "casme3*.xls*")
MACRO_PATTERNS = ("cas(me)3_part_A_MaE_label*.xls*",)
ROLES = {**casme3.ROLES, "clip": (*casme3.ROLES["clip"], "seq")}
REQUIRED = ("subject", "clip", "onset", "offset")
KEY = ("subject", "clip", "onset")


class Casme3LongClips(LongVideoSheet):
    dataset = DATASET
    fps = casme3.FPS
    emotions = casme3.EMOTIONS
    names_expressions = False  # the clip column is the clip letter: several rows share it

    def __init__(self, report: Report, frames_root: Path, kinds: Mapping[Path, str]):
        super().__init__(report)
        self.frames_root = frames_root
        self.kinds = kinds  # sheet -> the type of all its rows, when it has no type column
        self.subject_dirs = DirIndex(casme3.Casme3Sheet.subject_id)
        self.clip_dirs = DirIndex(str.lower)

    def video_of(self, record: Record) -> VideoRef:
        subject = casme3.Casme3Sheet.subject_id(record.text("subject"))
        clip = record.text("clip")
        if clip != clip.lower():
            self.report.note(record.file, record.row, f"clip {clip!r} read as {clip.lower()!r}")
        subject_dir = self.subject_dirs.find(self.frames_root, subject)
        if subject_dir is None:
            raise record.error(f"no folder for subject {subject} in {self.frames_root}")
        clip_dir = self.clip_dirs.find(subject_dir, clip.lower())
        if clip_dir is None:
            raise record.error(f"no folder {clip.lower()!r} in {subject_dir}")
        folder = clip_dir / "color" if (clip_dir / "color").is_dir() else clip_dir
        return VideoRef(f"{subject}_{clip.lower()}", subject, folder)

    def videos_on_disk(self) -> list[VideoRef]:
        refs = []
        for subject_dir in sorted(p for p in self.frames_root.iterdir() if p.is_dir()):
            subject = casme3.Casme3Sheet.subject_id(subject_dir.name)
            if not subject.startswith("spNO."):
                continue
            for clip_dir in sorted(p for p in subject_dir.iterdir() if p.is_dir()):
                if len(clip_dir.name) == 1 and clip_dir.name.isalpha():
                    color = clip_dir / "color"
                    folder = color if color.is_dir() else clip_dir
                    refs.append(VideoRef(f"{subject}_{clip_dir.name.lower()}", subject, folder))
        return refs

    def event_type(self, record: Record) -> str:
        if record.file in self.kinds:
            return self.kinds[record.file]
        return expression_type(record.text("type"), record)


@register_videos(DATASET, "CAS(ME)^3 part A sheets (Expression type, or ME + MaE) + clip folders")
@reporting
def load_casme3_lv(
    root: Path,
    sheet: str | Path | None = None,
    macro_sheet: str | Path | None = None,
    sheet_name: str | None = None,
    frames_dir: str | Path | None = None,
    columns: Mapping[str, str | int] | None = None,
    verify_images: VerifyImages = "keyframes",
    fps: float | None = None,
    report: Report | None = None,
) -> list[Video]:
    """CAS(ME)^3 part A clips as long videos with every micro and macro row as an Event.

    ``sheet``: one sheet with an ``Expression type`` column (default
    ``CAS(ME)3_part_A_v2.xls``), or the micro-expression sheet; then ``macro_sheet`` (default
    ``cas(me)3_part_A_MaE_label*.xlsx``) adds the macro rows.
    """
    if sheet is None:
        try:
            path = find_file(root, None, TYPED_PATTERNS, "CAS(ME)^3 typed sheet", report)
        except DataError:
            path = find_file(root, None, MICRO_PATTERNS, "CAS(ME)^3 sheet", report)
    else:
        path = find_file(root, sheet, (), "CAS(ME)^3 sheet", report)
    frames_root = find_dir(root, frames_dir, casme3.Casme3Sheet.frames_dirs, "CAS(ME)^3 frames")
    table = read_table(path, ROLES, REQUIRED, KEY, report, columns, sheet_name)
    records = list(table.records)
    kinds: dict[Path, str] = {}
    if "type" not in table.columns:
        kinds[path] = "micro"
        try:
            macro = find_file(root, macro_sheet, MACRO_PATTERNS, "CAS(ME)^3 macro sheet", report)
        except DataError:
            if macro_sheet is not None:
                raise
            report.note(
                path,
                None,
                "no Expression type column and no macro-expression sheet: micro rows only",
            )
        else:
            kinds[macro] = "macro"
            records += read_table(macro, ROLES, REQUIRED, KEY, report, columns).records
    reader = Casme3LongClips(report, frames_root, kinds)
    return reader.videos(records, path, verify_images, fps)
