"""CAS(ME)^2 part A long videos (22 subjects, 30 fps), macro and micro rows.

Layout (docs/datasets.md, "CAS(ME)^2")::

    <root>/CAS(ME)^2code_final.xlsx        (or code_final.xlsx, ...(Updated).xlsx, .xls)
      worksheet CASFEcode_final: no header; subject index, <video name>_<n>, onset, apex,
        offset, AUs, estimated emotion, type, self-reported emotion
      worksheet naming rule1: subject number, folder (s15), subject index (one row per code row)
      worksheet naming rule2: video code (text 0101), video name (disgust1)
    <root>/rawpic/s15/15_0101disgustingteeth/img001.jpg

A row's folder: the subject index goes through ``naming rule1`` to ``s15``; the part of the
second column before ``_`` goes through ``naming rule2`` to the code ``0101``; the video folder
is the one in ``s15/`` named ``15_0101...``. Video ids are ``s15_0101``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from microexpr.datasets.coded_sheet import DirIndex, VerifyImages
from microexpr.datasets.long_video_sheet import LongVideoSheet, VideoRef
from microexpr.datasets.problems import Report, reporting
from microexpr.datasets.registry import register_videos
from microexpr.datasets.sheets import (
    RawRow,
    Record,
    canonical_id,
    find_dir,
    find_file,
    read_sheets,
    read_table,
)
from microexpr.errors import DataError
from microexpr.samples import Video

DATASET = "casme_sq"
FPS = 30.0
EMOTIONS = frozenset({"negative", "positive", "surprise", "others"})
SHEET_PATTERNS = ("CAS(ME)^2code_final*.xls*", "CAS(ME)2code_final*.xls*", "code_final*.xls*")
FRAMES_DIRS = ("rawpic", "rawpic_crop", "cropped", ".")
CODE_SHEET, SUBJECT_SHEET, VIDEO_SHEET = "CASFEcode_final", "naming rule1", "naming rule2"
# The code sheet has no header: its columns by position (0-based), as every public loader
# reads it (SoftNet-SpotME load_label.py).
POSITIONS = {
    "subject": 0,
    "clip": 1,
    "onset": 2,
    "apex": 3,
    "offset": 4,
    "aus": 5,
    "emotion": 6,
    "type": 7,
    "self_report": 8,
}
# Header names, for a copy of the sheet that someone gave a header row.
ROLES = {
    "subject": ("Subject", "participant"),
    "clip": ("Filename", "video_name_&_expression_number", "video"),
    "onset": ("Onset", "OnsetFrame"),
    "apex": ("Apex", "ApexFrame"),
    "offset": ("Offset", "OffsetFrame"),
    "aus": ("AUs", "AU", "Action Units"),
    "emotion": ("Estimated Emotion", "extimated_emotion", "emotion"),
    "type": ("Type", "expression_type", "Expression type"),
    "self_report": ("self-reported_emotion", "Self-report", "self report"),
}
REQUIRED = ("subject", "clip", "onset", "offset", "type")
KEY = ("subject", "clip", "onset")
VIDEO_FOLDER = re.compile(r"0*(\d+)_(\d{4})")


def _sheet(sheets: Mapping[str, list[RawRow]], name: str, position: int) -> tuple[str, list]:
    """A worksheet by name (case and spaces ignored), else by position, as public loaders do."""
    wanted = name.replace(" ", "").lower()
    for title, rows in sheets.items():
        if title.replace(" ", "").lower() == wanted:
            return title, rows
    titles = list(sheets)
    if position < len(titles):
        return titles[position], sheets[titles[position]]
    raise KeyError(name)


def _positional_records(
    path: Path, rows: list[RawRow], columns: Mapping[str, str | int], report: Report
) -> list[Record]:
    """Rows of the header-less code sheet; ``columns`` moves a role to another column."""
    names = [role for role, value in columns.items() if not isinstance(value, int)]
    if names:
        raise ValueError(
            f"{path.name} has no header row: give column numbers for {names} (columns.onset=2)"
        )
    unknown = set(columns) - set(POSITIONS)
    if unknown:
        raise ValueError(f"unknown column roles {sorted(unknown)}; roles are {sorted(POSITIONS)}")
    positions = {**POSITIONS, **columns}
    records = []
    for raw in rows:
        if not any(raw.cells):
            continue
        cells = {r: raw.cells[c] if c < len(raw.cells) else "" for r, c in positions.items()}
        record = Record(path, raw.number, cells)
        missing = [k for k in KEY if not cells[k]]
        if missing:
            with report.guard():
                raise record.error(f"row has no {', '.join(missing)}")
            continue
        records.append(record)
    return records


def _subject_folders(path: Path, rows: list[RawRow], title: str) -> dict[str, str]:
    """``naming rule1``: subject index -> folder id (``1`` -> ``s15``). The sheet repeats the
    pair once per code row; two folders for one index is an error."""
    found: dict[str, tuple[str, int]] = {}
    for raw in rows:
        cells = [*raw.cells, "", "", ""][:3]
        if not cells[2]:
            continue
        folder = canonical_id(cells[1] or cells[0], "s", 2)
        index = canonical_id(cells[2], "", 1)
        if index in found and found[index][0] != folder:
            raise DataError(
                path,
                f"sheet {title!r}: subject index {index} is {found[index][0]} on row "
                f"{found[index][1]} but {folder} here",
                raw.number,
            )
        found.setdefault(index, (folder, raw.number))
    return {index: folder for index, (folder, _) in found.items()}


def _video_codes(path: Path, rows: list[RawRow], title: str, report: Report) -> dict[str, str]:
    """``naming rule2``: video name -> 4-digit code (``disgust1`` -> ``0101``). A code saved
    as a number (``101``) is padded back."""
    codes = {}
    for raw in rows:
        code, name = [*raw.cells, "", ""][:2]
        if not code or not name:
            continue
        if code.isdigit() and len(code) < 4:
            padded = code.zfill(4)
            report.repair(path, raw.number, f"sheet {title!r}: video code {code} read as {padded}")
            code = padded
        codes[name.lower()] = code
    return codes


class CasmeSqVideos(LongVideoSheet):
    dataset = DATASET
    fps = FPS
    emotions = EMOTIONS

    def __init__(
        self,
        report: Report,
        frames_root: Path,
        subjects: Mapping[str, str],
        codes: Mapping[str, str],
    ):
        super().__init__(report)
        self.frames_root = frames_root
        self.subjects = subjects
        self.codes = codes
        self.subject_dirs = DirIndex(lambda text: canonical_id(text, "s", 2))

    def video_of(self, record: Record) -> VideoRef:
        index = canonical_id(record.text("subject"), "", 1)
        if index not in self.subjects:
            raise record.error(f"subject index {index} is not in the sheet {SUBJECT_SHEET!r}")
        subject = self.subjects[index]
        name = record.text("clip").split("_")[0].lower()
        if name not in self.codes:
            known = ", ".join(sorted(self.codes))
            raise record.error(f"video {name!r} is not in {VIDEO_SHEET!r} (known: {known})")
        code = self.codes[name]
        subject_dir = self.subject_dirs.find(self.frames_root, subject)
        if subject_dir is None:
            raise record.error(f"no folder for subject {subject} in {self.frames_root}")
        for child in sorted(subject_dir.iterdir()):
            match = VIDEO_FOLDER.match(child.name)
            if child.is_dir() and match and match.group(2) == code:
                return VideoRef(f"{subject}_{code}", subject, child)
        raise record.error(f"no folder {subject[1:]}_{code}* in {subject_dir}")

    def videos_on_disk(self) -> list[VideoRef]:
        refs = []
        for subject_dir in sorted(p for p in self.frames_root.iterdir() if p.is_dir()):
            subject = canonical_id(subject_dir.name, "s", 2)
            if not re.fullmatch(r"s\d+", subject):
                continue
            for child in sorted(subject_dir.iterdir()):
                match = VIDEO_FOLDER.match(child.name)
                if child.is_dir() and match:
                    refs.append(VideoRef(f"{subject}_{match.group(2)}", subject, child))
        return refs


def _code_records(
    path: Path,
    sheets: Mapping[str, list[RawRow]],
    sheet_name: str | None,
    columns: Mapping[str, str | int],
    report: Report,
) -> list[Record]:
    """The code rows: by header names when the sheet has a header (and ``columns`` gives
    names), else by position."""
    title = sheet_name or _sheet(sheets, CODE_SHEET, 0)[0]
    if title not in sheets:
        raise DataError(path, f"no sheet {title!r}; sheets are {list(sheets)}")
    if not any(isinstance(value, int) for value in columns.values()):
        try:
            return read_table(path, ROLES, REQUIRED, KEY, report, columns, title).records
        except DataError:
            pass  # no header row: the distributed sheet
    return _positional_records(path, sheets[title], columns, report)


@register_videos(DATASET, "CAS(ME)^2 code_final sheet + rawpic/sNN/NN_<code>*/ frames")
@reporting
def load_casme_sq(
    root: Path,
    sheet: str | Path | None = None,
    sheet_name: str | None = None,
    frames_dir: str | Path | None = None,
    columns: Mapping[str, str | int] | None = None,
    verify_images: VerifyImages = "keyframes",
    fps: float | None = None,
    report: Report | None = None,
) -> list[Video]:
    """CAS(ME)^2 long videos, every macro and micro row as an Event (estimated emotion)."""
    path = find_file(root, sheet, SHEET_PATTERNS, "CAS(ME)^2 code sheet", report)
    frames_root = find_dir(root, frames_dir, FRAMES_DIRS, "CAS(ME)^2 frames")
    sheets = read_sheets(path)
    records = _code_records(path, sheets, sheet_name, dict(columns or {}), report)
    try:
        subject_title, subject_rows = _sheet(sheets, SUBJECT_SHEET, 1)
        video_title, video_rows = _sheet(sheets, VIDEO_SHEET, 2)
    except KeyError as missing:
        raise DataError(
            path, f"no sheet {missing} (it maps the code rows to folders); sheets: {list(sheets)}"
        ) from None
    subjects = _subject_folders(path, subject_rows, subject_title)
    codes = _video_codes(path, video_rows, video_title, report)
    reader = CasmeSqVideos(report, frames_root, subjects, codes)
    return reader.videos(records, path, verify_images, fps)
