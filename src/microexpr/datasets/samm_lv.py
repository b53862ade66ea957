"""SAMM Long Videos: 147 grey 200 fps recordings of 30 subjects, macro and micro rows.

Layout (docs/datasets.md, "SAMM Long Videos")::

    <root>/SAMM_LongVideos_V1_Release.xlsx   (V2, V3; .xls or .csv too), worksheet
           FACS_Movement_Only: a 9-row preamble, header on row 10
    <root>/SAMM_longvideos/006_1/006_1_0001.jpg  (4 digits, 5 for the longest videos)

Columns ``Subject, Filename, Inducement Code, Onset, Apex, Offset, Duration, Type, Action
Units, Notes``; ``Filename`` is ``<subject>_<video>_<n>`` and the video folder is its first two
parts; ``Type`` is ``Macro`` or ``Micro - 1/2``. The sheet codes no emotion: ``emotion_sheet=``
names a SAMM micro-expression FACS-codes sheet whose ``Estimated Emotion`` is joined to the
micro rows by ``Filename`` (as MEAN's loader does).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from microexpr.datasets import samm
from microexpr.datasets.coded_sheet import VerifyImages
from microexpr.datasets.long_video_sheet import LongVideoSheet, VideoRef
from microexpr.datasets.problems import Report, reporting
from microexpr.datasets.registry import register_videos
from microexpr.datasets.sheets import (
    Emotions,
    Record,
    canonical_id,
    find_dir,
    find_file,
    read_table,
)
from microexpr.samples import Video

DATASET = "samm_lv"
FPS = 200.0
SHEET_PATTERNS = ("SAMM_LongVideos*.xls*", "SAMM_LongVideos*.csv", "SAMM*Long*.xls*")
FRAMES_DIRS = ("SAMM_longvideos", "SAMM_LongVideos", "SAMM_longvideos_crop", ".")
ROLES = {
    "subject": ("Subject",),
    "clip": ("Filename",),
    "inducement": ("Inducement Code",),
    "onset": ("Onset", "Onset Frame"),
    "apex": ("Apex", "Apex Frame"),
    "offset": ("Offset", "Offset Frame"),
    "duration": ("Duration",),
    "type": ("Type",),
    "aus": ("Action Units", "AU"),
    "notes": ("Notes",),
}
REQUIRED = ("subject", "clip", "onset", "offset", "type")
VIDEO_FOLDER = re.compile(r"\d+_\d+")


class SammLongVideos(LongVideoSheet):
    dataset = DATASET
    fps = FPS

    def __init__(self, report: Report, frames_root: Path, emotions_by_name: Mapping[str, str]):
        super().__init__(report)
        self.frames_root = frames_root
        self.emotions_by_name = emotions_by_name

    def video_of(self, record: Record) -> VideoRef:
        name = record.text("clip")
        parts = name.split("_")
        if len(parts) < 3:
            raise record.error(f"Filename {name!r} is not <subject>_<video>_<n>")
        subject = canonical_id(record.text("subject") or parts[0], "", 3)
        if canonical_id(parts[0], "", 3) != subject:
            raise record.error(f"Filename {name!r} does not start with subject {subject}")
        video = f"{subject}_{parts[1]}"
        folder = self.frames_root / video
        if not folder.is_dir():
            raise record.error(f"no folder {video} in {self.frames_root}")
        return VideoRef(video, subject, folder)

    def videos_on_disk(self) -> list[VideoRef]:
        return [
            VideoRef(p.name, canonical_id(p.name.split("_")[0], "", 3), p)
            for p in sorted(self.frames_root.iterdir())
            if p.is_dir() and VIDEO_FOLDER.fullmatch(p.name)
        ]

    def event_emotion(self, record: Record, kind: str) -> str:
        return self.emotions_by_name.get(record.text("clip"), "") if kind == "micro" else ""


def _micro_emotions(root: Path, sheet: str | Path, report: Report) -> dict[str, str]:
    """Filename -> emotion from a SAMM micro-expression FACS-codes sheet (the ``samm`` reader's
    columns and spellings)."""
    path = find_file(root, sheet, (), "SAMM micro-expression sheet", report)
    table = read_table(path, samm.ROLES, ("clip", "emotion"), ("clip",), report)
    emotions = Emotions(samm.EMOTIONS, path)
    found = {}
    for record in table.records:
        with report.guard():
            found[record.text("clip")] = emotions(record.text("emotion"), record)
    emotions.flush(report)
    return found


@register_videos(DATASET, "SAMM Long Videos sheet (V1-V3) + SAMM_longvideos/<video>/ frames")
@reporting
def load_samm_lv(
    root: Path,
    sheet: str | Path | None = None,
    sheet_name: str | None = None,
    frames_dir: str | Path | None = None,
    columns: Mapping[str, str | int] | None = None,
    emotion_sheet: str | Path | None = None,
    verify_images: VerifyImages = "keyframes",
    fps: float | None = None,
    report: Report | None = None,
) -> list[Video]:
    """SAMM Long Videos, every macro and micro row as an Event (emotion only with
    ``emotion_sheet=``)."""
    path = find_file(root, sheet, SHEET_PATTERNS, "SAMM Long Videos sheet", report)
    frames_root = find_dir(root, frames_dir, FRAMES_DIRS, "SAMM Long Videos frames")
    table = read_table(path, ROLES, REQUIRED, ("clip", "onset"), report, columns, sheet_name)
    by_name = _micro_emotions(root, emotion_sheet, report) if emotion_sheet else {}
    reader = SammLongVideos(report, frames_root, by_name)
    videos = reader.videos(table.records, path, verify_images, fps)
    if by_name:
        micro = [r for r in table.records if "micro" in r.text("type").lower()]
        matched = sum(r.text("clip") in by_name for r in micro)
        report.note(
            path, None, f"emotions of {matched} of {len(micro)} micro rows from {emotion_sheet}"
        )
    return videos
