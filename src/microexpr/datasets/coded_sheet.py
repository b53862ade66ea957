"""Clip folders -> Samples: frame listing, onset/apex/offset as indices, image checks.

Shared by every reader of a database that codes clips in a sheet (CASME, CASME II, SAMM,
CAS(ME)^3, MMEW) through :class:`CodedSheet`, and by the SMIC and CK+ readers through the
frame and timing helpers. The documented repairs all live here, so every database makes the
same ones and docs/datasets.md lists them once:

* frames are ordered by the last number in their file name (img2 before img10), whatever
  the padding; two files with the same number are an error;
* a key frame missing on disk but inside the clip's frame range -> the nearest frame;
* a folder numbered 1..N while the sheet gives absolute numbers, with N = offset-onset+1 ->
  the folder is taken as onset..offset;
* apex not coded (``/``, ``\\``, empty) -> middle of onset..offset (``meta["apex_source"]``);
* offset 0 ("not coded", as in SAMM-LV and CAS(ME)^3) -> the apex (as MEAN's loader does);
* onset 0 or apex 0 where the folder has no frame 0 (CAS(ME)^3 spNO.216/e) -> the first frame
  on disk, or the apex not coded;
* an apex outside onset..offset (CAS(ME)^3 spNO.149/d) -> not used: the middle of
  onset..offset;
* apex equal to onset or offset is kept and noted; offset before onset, or a frame outside the
  folder's range are errors: the row is skipped with its reason (``on_error="skip"``, the
  default) or stops the read (``on_error="raise"``);
* a frame that does not decode, or a truncated JPEG or PNG (which OpenCV would read as a
  partial picture): an error at a key frame, and left out of the clip (repair) elsewhere;
* the frames folder is found at any depth below the root when no documented place holds the
  sheet's subjects and exactly one folder does.
"""

from __future__ import annotations

import bisect
import functools
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, get_args

import cv2
import numpy as np

from microexpr.datasets.problems import Report, reporting
from microexpr.datasets.registry import register
from microexpr.datasets.sheets import (
    Emotions,
    Record,
    canonical_id,
    find_dir,
    find_file,
    parse_aus,
    read_table,
    subfolders,
)
from microexpr.errors import DataError
from microexpr.samples import Sample

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
VerifyImages = Literal["none", "keyframes", "all"]


def frame_number(path: Path) -> int | None:
    """The frame number in a file name: its last run of digits (``reg_img46`` -> 46,
    ``006_05562`` -> 5562, ``S005_001_00000011`` -> 11)."""
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else None


@dataclass(frozen=True)
class FrameList:
    """A clip folder's images in numeric order, with their frame numbers."""

    folder: Path
    paths: tuple[Path, ...]
    numbers: tuple[int, ...]

    @classmethod
    def scan(cls, folder: Path, where: Record | None = None) -> FrameList:
        """Images of ``folder`` sorted by frame number (directory order is arbitrary)."""

        def error(reason: str) -> DataError:
            if where is not None:
                return where.error(f"{folder}: {reason}")
            return DataError(folder, reason)

        if not folder.is_dir():
            raise error("clip folder not found")
        numbered = []
        for path in folder.iterdir():
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            number = frame_number(path)
            if number is None:
                raise error(f"image {path.name!r} has no frame number in its name")
            numbered.append((number, path.name, path))
        if not numbered:
            raise error("no images in the clip folder")
        numbered.sort()
        for (a, name_a, _), (b, name_b, _) in zip(numbered, numbered[1:], strict=False):
            if a == b:
                raise error(f"{name_a!r} and {name_b!r} have the same frame number {a}")
        return cls(folder, tuple(p for _, _, p in numbered), tuple(n for n, _, _ in numbered))

    def gaps(
        self, first: int | None = None, last: int | None = None, limit: int | None = None
    ) -> list[int]:
        """Frame numbers missing between ``first`` and ``last`` (default: the folder's), at
        most ``limit`` of them (frame numbers can be camera counters in the billions)."""
        first = self.numbers[0] if first is None else first
        last = self.numbers[-1] if last is None else last
        inside = self.numbers[bisect.bisect_left(self.numbers, first) :]
        missing, previous = [], first - 1
        for number in [*inside[: bisect.bisect_right(inside, last)], last + 1]:
            for gap in range(previous + 1, number):
                if limit is not None and len(missing) >= limit:
                    return missing
                missing.append(gap)
            previous = number
        return missing

    def count_missing(self, first: int, last: int) -> int:
        """How many frame numbers of ``first..last`` have no file."""
        present = bisect.bisect_right(self.numbers, last) - bisect.bisect_left(self.numbers, first)
        return max(last - first + 1 - present, 0)


@dataclass(frozen=True)
class Timing:
    """Onset, apex and offset as indices into a FrameList, and where the apex came from."""

    onset: int
    apex: int
    offset: int
    apex_source: str  # "sheet" or "middle"


def _index(frames: FrameList, number: int, role: str, record: Record, report: Report) -> int | None:
    """Index of frame ``number``; the nearest frame when it is missing inside the range."""
    numbers = frames.numbers
    if number in numbers:
        return numbers.index(number)
    if not numbers[0] <= number <= numbers[-1]:
        return None
    nearest = min(range(len(numbers)), key=lambda i: (abs(numbers[i] - number), numbers[i]))
    report.repair(
        record.file,
        record.row,
        f"{role} frame {number} missing in {frames.folder}; used frame {numbers[nearest]}",
    )
    return nearest


def locate(
    frames: FrameList,
    onset: int | None,
    apex: int | None,
    offset: int | None,
    record: Record,
    report: Report,
    why_no_apex: str | None = "apex not coded",
) -> Timing:
    """Sheet frame numbers -> indices into ``frames`` with the documented repairs.

    ``why_no_apex``: the reason reported with the middle-of-clip repair (None: the caller
    reports it once for the whole database, as for SMIC).
    """
    if onset is None:
        raise record.error("onset not coded")
    numbers = frames.numbers
    if onset == 0 and numbers[0] > 0:
        report.repair(
            record.file,
            record.row,
            f"onset 0 (not coded; {frames.folder} starts at frame {numbers[0]}): "
            f"onset set to the first frame {numbers[0]}",
        )
        onset = numbers[0]
    if apex == 0 and numbers[0] > 0:
        report.repair(record.file, record.row, "apex 0 (not coded): treated as not coded")
        apex, why_no_apex = None, None
    if offset == 0 and apex is not None and apex > 0:
        report.repair(
            record.file, record.row, f"offset 0 (not coded): offset set to the apex {apex}"
        )
        offset = apex
    if offset is None or offset == 0:
        raise record.error("offset not coded and no apex to stand in for it")
    if offset < onset:
        raise record.error(f"offset {offset} before onset {onset}")
    if apex is not None and not onset <= apex <= offset:
        report.repair(
            record.file,
            record.row,
            f"apex {apex} outside onset..offset {onset}..{offset}: not used; "
            "apex set to the middle of onset..offset",
        )
        apex, why_no_apex = None, None

    inside = numbers[0] <= onset <= numbers[-1] and numbers[0] <= offset <= numbers[-1]
    if not inside and len(numbers) == offset - onset + 1:
        report.repair(
            record.file,
            record.row,
            f"{frames.folder} holds frames {numbers[0]}..{numbers[-1]} but the sheet gives "
            f"onset..offset {onset}..{offset}: its {len(numbers)} frames taken as onset..offset",
        )
        on, off = 0, len(numbers) - 1
        ap = None if apex is None else apex - onset
    else:
        idx = {
            role: None if n is None else _index(frames, n, role, record, report)
            for role, n in (("onset", onset), ("apex", apex), ("offset", offset))
        }
        for role, n in (("onset", onset), ("apex", apex), ("offset", offset)):
            if n is not None and idx[role] is None:
                raise record.error(
                    f"{role} frame {n} is outside the frames on disk "
                    f"({numbers[0]}..{numbers[-1]} in {frames.folder})"
                )
        on, ap, off = idx["onset"], idx["apex"], idx["offset"]
    missing = frames.count_missing(onset, offset) if inside else 0
    if missing:
        shown = ", ".join(map(str, frames.gaps(onset, offset, limit=5)))
        report.note(
            record.file,
            record.row,
            f"{missing} frames missing in onset..offset: {shown}" + (" ..." if missing > 5 else ""),
        )
    source = "sheet"
    if ap is None:
        ap = (on + off) // 2
        source = "middle"
        if why_no_apex:
            report.repair(
                record.file, record.row, f"{why_no_apex}: apex set to the middle of onset..offset"
            )
    elif apex in (onset, offset) and onset != offset:
        which = "onset" if apex == onset else "offset"
        report.note(record.file, record.row, f"apex equals the {which} ({apex}); kept")
    return Timing(on, ap, off, source)


def image_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole image, or None. ``cv2.imread`` decodes a JPEG cut short as
    a partial picture (grey below the cut) with only a warning; ``cv2.imdecode`` refuses it in
    OpenCV 5 but not in every version, so a JPEG must also end with its end-of-image marker
    and a PNG with its IEND chunk."""
    try:
        data = path.read_bytes()
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if not data:
        return "empty file"
    if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is None:
        return "does not decode as an image"
    # In a JPEG's entropy-coded data every 0xFF is followed by 0x00 or a restart marker, so
    # an end-of-image marker in the last KiB means the file was not cut short.
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-1024:]:
        return "truncated JPEG (no end-of-image marker)"
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-16:]:
        return "truncated PNG (no IEND chunk)"
    return None


def check_images(paths: Sequence[Path], record: Record) -> None:
    """Every path is a whole, decodable image; the first that is not is the row's error."""
    for path in paths:
        reason = image_problem(path)
        if reason is not None:
            raise record.error(f"cannot read image {path}: {reason}")


def verify_option(value: str) -> VerifyImages:
    """``verify_images`` as given, or a ValueError: an unknown value must not check nothing."""
    if value not in get_args(VerifyImages):
        raise ValueError(f"verify_images={value!r}: one of {', '.join(get_args(VerifyImages))}")
    return value  # type: ignore[return-value]


def images_to_check(frames: FrameList, timing: Timing, verify: VerifyImages) -> list[Path]:
    """The frames ``verify`` asks to decode: ``all``, ``keyframes`` (onset, apex, offset) or
    ``none``."""
    if verify_option(verify) == "all":
        return list(frames.paths)
    if verify == "keyframes":
        return [frames.paths[i] for i in sorted({timing.onset, timing.apex, timing.offset})]
    return []


def checked_frames(
    frames: FrameList, timing: Timing, verify: VerifyImages, record: Record, report: Report
) -> tuple[FrameList, Timing]:
    """Decode the frames ``verify`` asks for. A key frame that fails is the row's error; any
    other frame that fails is left out of the clip with a repair, as a frame missing on disk
    would be, and the key frames' indices follow."""
    paths = images_to_check(frames, timing, verify)
    keys = {timing.onset, timing.apex, timing.offset}
    check_images([frames.paths[i] for i in sorted(keys)] if paths else [], record)
    bad = {}
    for i, path in enumerate(frames.paths if verify == "all" else ()):
        reason = None if i in keys else image_problem(path)
        if reason is not None:
            bad[i] = reason
            report.repair(record.file, record.row, f"frame {path} {reason}: left out of the clip")
    if not bad:
        return frames, timing
    kept = [i for i in range(len(frames.paths)) if i not in bad]
    position = {old: new for new, old in enumerate(kept)}
    fewer = FrameList(
        frames.folder,
        tuple(frames.paths[i] for i in kept),
        tuple(frames.numbers[i] for i in kept),
    )
    moved = {role: position[getattr(timing, role)] for role in ("onset", "apex", "offset")}
    return fewer, replace(timing, **moved)


def make_sample(
    dataset: str,
    subject: str,
    clip: str,
    label: str,
    frames: FrameList,
    timing: Timing,
    record: Record,
    report: Report,
    aus: tuple[str, ...] = (),
    fps: float | None = None,
    meta: Mapping[str, str] | None = None,
    sample_id: str | None = None,
) -> Sample:
    """A Sample whose meta names its source row and carries that row's findings."""
    findings = [p.reason for p in report.about(record.file, record.row) if p.kind != "error"]
    return Sample(
        id=sample_id or f"{subject}_{clip}",
        dataset=dataset,
        subject=subject,
        label=label,
        frames=frames.paths,
        onset=timing.onset,
        apex=timing.apex,
        offset=timing.offset,
        aus=aus,
        fps=fps,
        meta={
            "clip": clip,
            "folder": str(frames.folder),
            "source": f"{record.file}:{record.row}",
            "apex_source": timing.apex_source,
            **({"findings": "; ".join(findings)} if findings else {}),
            **(meta or {}),
        },
    )


def unique(samples: list[Sample], report: Report) -> list[Sample]:
    """Drop (or raise on) repeated sample ids, naming both rows."""
    first: dict[str, Sample] = {}
    kept = []
    for sample in samples:
        if sample.id in first:
            file, _, row = sample.meta.get("source", "?:").rpartition(":")
            earlier = first[sample.id].meta.get("source", "?")
            report.fail(
                DataError(file, f"duplicate sample {sample.id!r} (first at {earlier})", _int(row))
            )
            continue
        first[sample.id] = sample
        kept.append(sample)
    return kept


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


class DirIndex:
    """Child folders of a folder by canonical id, so ``s1`` on disk matches ``s01`` in a sheet
    and ``6`` matches ``006``; two folders with the same canonical id are an error."""

    def __init__(self, canonical: Callable[[str], str]):
        self.canonical = canonical
        self._cache: dict[Path, dict[str, Path]] = {}

    def find(self, parent: Path, name: str) -> Path | None:
        if (parent / name).is_dir():
            return parent / name
        if parent not in self._cache:
            index: dict[str, Path] = {}
            children = sorted(p for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
            for child in children:
                key = self.canonical(child.name)
                if key in index:
                    raise DataError(
                        parent, f"folders {index[key].name!r} and {child.name!r} are the same id"
                    )
                index[key] = child
            self._cache[parent] = index
        return self._cache[parent].get(self.canonical(name))


# ----------------------------------------------------------------------------- coded sheets


class CodedSheet:
    """A database whose sheet codes one clip per row (subject, clip, onset, apex, offset, AUs,
    emotion). Subclasses give the names and override the hooks where their database differs."""

    dataset: str = ""
    fps: float | None = None
    emotions: frozenset[str] = frozenset()
    sheet_patterns: tuple[str, ...] = ()
    frames_dirs: tuple[str, ...] = (".",)
    roles: Mapping[str, tuple[str, ...]] = {}
    required: tuple[str, ...] = ("subject", "clip", "onset", "offset", "emotion")
    key: tuple[str, ...] = ("subject", "clip", "onset")
    missing_apex: str = "apex not coded"
    subject_prefix: str = ""  # canonical subject id: prefix + number padded to subject_width
    subject_width: int = 2

    def __init__(self, report: Report):
        self.report = report
        self.subject_dirs = DirIndex(self.subject_id)
        self.clip_dirs = DirIndex(str.lower)
        self.frame_lists: dict[Path, FrameList] = {}  # a clip can hold several expressions

    # hooks ------------------------------------------------------------------------------
    @classmethod
    def subject_id(cls, text: str) -> str:
        """The database's one spelling of a subject id (``1`` -> ``sub01`` for CASME II)."""
        return canonical_id(text, cls.subject_prefix, cls.subject_width)

    def clip_id(self, text: str, record: Record) -> str:
        return text

    def clip_folder(self, frames_root: Path, subject: str, clip: str, record: Record) -> Path:
        """``<frames_root>/<subject>/<clip>``, matching ids in any padding and clip names in
        any case."""
        subject_dir = self.subject_dirs.find(frames_root, subject)
        if subject_dir is None:
            raise record.error(f"no folder for subject {subject} in {frames_root}")
        clip_dir = self.clip_dirs.find(subject_dir, clip)
        if clip_dir is None:
            raise record.error(f"no folder {clip!r} in {subject_dir}")
        return clip_dir

    def numbers(self, record: Record) -> tuple[int | None, int | None, int | None]:
        return record.frame("onset"), record.frame("apex"), record.frame("offset")

    def keep(self, record: Record) -> bool:
        """False drops a row on purpose (the reader reports how many and why)."""
        return True

    def meta(self, record: Record) -> dict[str, str]:
        return {}

    def sample_id(self, subject: str, clip: str, record: Record) -> str:
        return f"{subject}_{clip}"

    def finish(self, samples: list[Sample], file: Path) -> list[Sample]:
        return unique(samples, self.report)

    # reading ----------------------------------------------------------------------------
    def holds_frames(self, folder: Path, records: Sequence[Record]) -> bool:
        """Whether ``folder`` holds subject folders of the sheet's rows (ids in any spelling)."""
        subjects = {self.subject_id(r.cells.get("subject", "")) for r in records}
        return any(self.subject_id(child.name) in subjects for child in subfolders(folder))

    def find_frames(
        self, root: Path, frames_dir: str | Path | None, records: Sequence[Record]
    ) -> Path:
        """``frames_dir``, else the first documented place that holds the sheet's subject
        folders, else the one folder below ``root`` (any depth) that does."""
        holds = functools.partial(self.holds_frames, records=records)
        what = f"{self.dataset} frames"
        return find_dir(root, frames_dir, self.frames_dirs, what, holds, holds, self.report)

    def read(
        self,
        root: Path,
        sheet: str | Path | None = None,
        sheet_name: str | None = None,
        frames_dir: str | Path | None = None,
        columns: Mapping[str, str | int] | None = None,
        verify_images: VerifyImages = "keyframes",
        fps: float | None = None,
    ) -> list[Sample]:
        report = self.report
        verify_option(verify_images)
        path = find_file(root, sheet, self.sheet_patterns, f"{self.dataset} sheet", report)
        table = read_table(
            path, self.roles, self.required, self.key, report, columns, sheet=sheet_name
        )
        frames_root = self.find_frames(root, frames_dir, table.records)
        emotions = Emotions(self.emotions, path)
        samples = []
        for record in table.records:
            if not self.keep(record):
                continue
            with report.guard():
                samples.append(self._sample(record, frames_root, emotions, verify_images, fps))
        emotions.flush(report)
        return self.finish(samples, path)

    def _sample(
        self,
        record: Record,
        frames_root: Path,
        emotions: Emotions,
        verify: VerifyImages,
        fps: float | None,
    ) -> Sample:
        subject = self.subject_id(record.text("subject"))
        clip = self.clip_id(record.text("clip"), record)
        label = emotions(record.text("emotion"), record)
        onset, apex, offset = self.numbers(record)
        folder = self.clip_folder(frames_root, subject, clip, record)
        if folder not in self.frame_lists:
            self.frame_lists[folder] = FrameList.scan(folder, record)
        frames = self.frame_lists[folder]
        timing = locate(frames, onset, apex, offset, record, self.report, self.missing_apex)
        frames, timing = checked_frames(frames, timing, verify, record, self.report)
        aus = parse_aus(record.text("aus")) if "aus" in self.roles else ()
        return make_sample(
            self.dataset,
            subject,
            clip,
            label,
            frames,
            timing,
            record,
            self.report,
            aus=aus,
            fps=fps or self.fps,
            meta=self.meta(record),
            sample_id=self.sample_id(subject, clip, record),
        )


def _reader_signature(load: Callable, cls: type[CodedSheet]) -> inspect.Signature:
    """``load``'s options plus those of ``cls``'s constructor, in place of ``**options``, so
    a config's reader options can be checked before anything runs."""
    own = [p for p in inspect.signature(load).parameters.values() if p.kind != p.VAR_KEYWORD]
    extra = [
        p.replace(kind=p.KEYWORD_ONLY)
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name not in ("self", "report") and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    return inspect.Signature(own + extra)


def coded_sheet_reader(name: str, description: str) -> Callable[[type[CodedSheet]], type]:
    """Class decorator: register ``load(root, **options)`` for a CodedSheet subclass (as
    ``cls.load``), so every sheet database takes the same options (docs/datasets.md).
    Options the subclass's constructor takes (CAS(ME)^3's ``expression_type``) pass through."""

    def wrap(cls: type[CodedSheet]) -> type[CodedSheet]:
        def load(
            root: Path,
            sheet: str | Path | None = None,
            sheet_name: str | None = None,
            frames_dir: str | Path | None = None,
            columns: Mapping[str, str | int] | None = None,
            verify_images: VerifyImages = "keyframes",
            fps: float | None = None,
            report: Report | None = None,
            **options,
        ) -> list[Sample]:
            return cls(report, **options).read(
                root, sheet, sheet_name, frames_dir, columns, verify_images, fps
            )

        load.__name__ = load.__qualname__ = f"load_{name}"
        load.__doc__ = cls.__doc__
        load.__signature__ = _reader_signature(load, cls)
        cls.load = staticmethod(register(name, description)(reporting(load)))
        return cls

    return wrap
