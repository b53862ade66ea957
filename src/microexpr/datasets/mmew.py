"""MMEW: micro-expression clips filed by emotion, coded in ``MMEW_Micro_Exp.xlsx``.

Layout (docs/datasets.md, "MMEW")::

    <root>/MMEW_Micro_Exp.xlsx
    <root>/Micro_Expression/<emotion>/<Filename>/<n>.jpg

Columns ``Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, Action Units, Estimated
Emotion, remarks``. The clip folder is looked up by its name under any emotion folder; when
that folder's emotion differs from the sheet's, the sheet wins and the report says so. The
folder names, frame names and 90 fps are unverified (docs/datasets.md marks them (U)).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from microexpr.datasets.coded_sheet import CodedSheet, coded_sheet_reader
from microexpr.datasets.problems import Report
from microexpr.datasets.sheets import Record, subfolders
from microexpr.errors import DataError
from microexpr.labels import normalise_emotion

FPS = 90.0  # (U)
EMOTIONS = frozenset({"happiness", "anger", "surprise", "disgust", "fear", "sadness", "others"})
ROLES = {
    "subject": ("Subject",),
    "clip": ("Filename",),
    "onset": ("OnsetFrame", "Onset Frame", "Onset"),
    "apex": ("ApexFrame", "Apex Frame", "Apex"),
    "offset": ("OffsetFrame", "Offset Frame", "Offset"),
    "aus": ("Action Units", "AU"),
    "emotion": ("Estimated Emotion", "Emotion"),
    "remarks": ("remarks", "Notes"),
}


@coded_sheet_reader("mmew", "MMEW sheet + Micro_Expression/<emotion>/<clip> frame folders")
class MmewSheet(CodedSheet):
    """MMEW micro-expression clips (taxonomy mmew-7)."""

    dataset = "mmew"
    fps = FPS
    emotions = EMOTIONS
    roles = ROLES
    subject_prefix, subject_width = "S", 2
    sheet_patterns = ("MMEW_Micro_Exp*.xls*", "MMEW*.xls*")
    frames_dirs = ("Micro_Expression", "Micro-Expression", ".")

    def __init__(self, report: Report):
        super().__init__(report)
        self._clips: dict[str, Path] | None = None

    def _index(self, frames_root: Path) -> dict[str, Path]:
        """Clip folders under every emotion folder, by lower-case name."""
        if self._clips is None:
            self._clips = {}
            for emotion_dir in sorted(p for p in frames_root.iterdir() if p.is_dir()):
                for clip_dir in sorted(p for p in emotion_dir.iterdir() if p.is_dir()):
                    key = clip_dir.name.lower()
                    if key in self._clips:
                        raise DataError(
                            frames_root,
                            f"clip {clip_dir.name!r} is in two emotion folders: "
                            f"{self._clips[key].parent.name}, {emotion_dir.name}",
                        )
                    self._clips[key] = clip_dir
        return self._clips

    def holds_frames(self, folder: Path, records: Sequence[Record]) -> bool:
        """Whether ``folder`` holds emotion folders with clip folders of the sheet's rows."""
        clips = {r.cells.get("clip", "").lower() for r in records}
        return any(
            clip.name.lower() in clips
            for emotion in subfolders(folder)
            for clip in subfolders(emotion)
        )

    def clip_folder(self, frames_root: Path, subject: str, clip: str, record: Record) -> Path:
        folder = self._index(frames_root).get(clip.lower())
        if folder is None:
            raise record.error(f"no folder {clip!r} under any emotion folder of {frames_root}")
        folder_emotion = normalise_emotion(folder.parent.name)
        sheet_emotion = normalise_emotion(record.text("emotion"))
        if folder_emotion != sheet_emotion:
            self.report.note(
                record.file,
                record.row,
                f"clip filed under {folder.parent.name!r} but the sheet says "
                f"{record.text('emotion')!r}; the sheet's emotion is used",
            )
        return folder

    def meta(self, record: Record) -> dict[str, str]:
        remarks = record.cells.get("remarks", "")
        return {"remarks": remarks} if remarks else {}


load_mmew = MmewSheet.load
