"""Long-video annotation sheets -> Videos with their coded events (MEGC's spotting task).

Shared by the CAS(ME)^2, SAMM Long Videos and CAS(ME)^3 long-clip readers. Each sheet row codes
one expression (onset, apex, offset, type, emotion) inside a long recording; a reader maps the
row to its video folder (:meth:`LongVideoSheet.video_of`) and everything from there is here, so
the three make the same repairs (docs/datasets.md, "Long videos"):

* a frame cell that is not a whole number (SAMM-LV's ``566.4``) -> rounded to the nearest;
* apex ``-1`` or ``0`` ("not annotated") or ``/``, empty -> left uncoded (``Event.apex`` None);
* apex outside onset..offset (CAS(ME)^2 rows with offset < apex) -> left uncoded: the
  onset..offset interval is what MEGC scores, so it is kept as coded;
* offset 0 -> the apex, and a key frame missing on disk -> the nearest (``coded_sheet.locate``);
* onset before the first frame on disk (SAMM-LV's onset 0) -> the first frame; offset after
  the last frame -> the last frame.

Frame numbers in the sheets are the numbers in the file names; events hold indices into the
video's frames, sorted numerically.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from microexpr.datasets.coded_sheet import (
    FrameList,
    VerifyImages,
    check_images,
    image_problem,
    images_to_check,
    locate,
    verify_option,
)
from microexpr.datasets.problems import Report
from microexpr.datasets.sheets import MISSING, Emotions, Record, parse_aus
from microexpr.errors import DataError
from microexpr.samples import Event, Video

NOT_ANNOTATED = (-1, 0)  # apex cells that mean "not annotated" (SAMM-LV -1, CAS(ME)^2 0)


@dataclass(frozen=True)
class VideoRef:
    """Where a coded row's video lives: its id, subject and frame folder."""

    id: str
    subject: str
    folder: Path


def expression_type(text: str, record: Record) -> str:
    """``micro`` or ``macro`` from the databases' spellings (``micro-expression``,
    ``Micro - 1/2``, ``Macro``, ``Macro-expression``)."""
    lowered = text.lower()
    if "micro" in lowered:
        return "micro"
    if "macro" in lowered:
        return "macro"
    raise record.error(f"expression type {text!r} is neither micro nor macro")


def frame_cell(record: Record, role: str, report: Report) -> int | None:
    """A frame number; a fraction is rounded (repair), "not coded" is None, text an error."""
    text = record.text(role)
    if text.lower() in MISSING:
        return None
    try:
        value = float(text)
    except ValueError:
        raise record.error(f"{role} {text!r} is not a frame number") from None
    if value.is_integer():
        return int(value)
    rounded = math.floor(value + 0.5)
    report.repair(record.file, record.row, f"{role} {text} is not a whole frame: read as {rounded}")
    return rounded


def _clamp_to_disk(
    frames: FrameList, onset: int, offset: int, record: Record, report: Report
) -> tuple[int, int]:
    """Onset before the first frame -> first; offset after the last -> last (0 stays 0)."""
    first, last = frames.numbers[0], frames.numbers[-1]
    if onset < first <= offset:
        report.repair(
            record.file,
            record.row,
            f"onset {onset} is before the first frame {first} in {frames.folder}: "
            f"onset set to {first}",
        )
        onset = first
    if offset > last >= onset:
        report.repair(
            record.file,
            record.row,
            f"offset {offset} is after the last frame {last} in {frames.folder}: "
            f"offset set to {last}",
        )
        offset = last
    return onset, offset


class LongVideoSheet:
    """A long-video database: subclasses name their files and map a row to its video."""

    dataset: str = ""
    fps: float | None = None
    emotions: frozenset[str] | None = None  # None: the sheet codes no emotion
    names_expressions = True  # the clip column names each expression (not CAS(ME)^3's letter)

    def __init__(self, report: Report):
        self.report = report
        self.frame_lists: dict[Path, FrameList] = {}
        self._emotions: Emotions | None = None

    # hooks ------------------------------------------------------------------------------
    def video_of(self, record: Record) -> VideoRef:
        """The video a coded row belongs to (an error when its folder is missing)."""
        raise NotImplementedError

    def videos_on_disk(self) -> list[VideoRef]:
        """Every video folder of the database, coded or not (for spotting, a video without
        expressions still counts its false positives)."""
        return []

    def event_type(self, record: Record) -> str:
        """``micro`` or ``macro``: the row's type column by default."""
        return expression_type(record.text("type"), record)

    def event_emotion(self, record: Record, kind: str) -> str:
        """The row's emotion as the database spells it after normalisation, or ``""``."""
        text = record.text("emotion") if self._emotions is not None else ""
        return self._emotions(text, record) if text else ""

    # reading ----------------------------------------------------------------------------
    def frames_of(self, ref: VideoRef, record: Record | None = None) -> FrameList:
        if ref.folder not in self.frame_lists:
            self.frame_lists[ref.folder] = FrameList.scan(ref.folder, record)
        return self.frame_lists[ref.folder]

    def event(self, record: Record, frames: FrameList, verify: VerifyImages) -> Event:
        """One coded row as an Event with indices into ``frames`` (the repairs above)."""
        report = self.report
        onset = frame_cell(record, "onset", report)
        apex = frame_cell(record, "apex", report)
        offset = frame_cell(record, "offset", report)
        kind = self.event_type(record)
        if apex in NOT_ANNOTATED:
            report.repair(record.file, record.row, f"apex {apex} (not annotated): left uncoded")
            apex = None
        elif apex is None:
            report.note(record.file, record.row, "apex not coded: left uncoded")
        if onset is None:
            raise record.error("onset not coded")
        if offset is not None and offset != 0:
            onset, offset = _clamp_to_disk(frames, onset, offset, record, report)
        end = apex if offset == 0 else offset
        if apex is not None and end is not None and not onset <= apex <= end:
            report.repair(
                record.file,
                record.row,
                f"apex {apex} outside onset..offset {onset}..{end}: left uncoded, interval kept",
            )
            apex = None
        timing = locate(frames, onset, apex, offset, record, report, why_no_apex=None)
        if verify == "keyframes":  # "all" decodes each video once, in videos()
            check_images(images_to_check(frames, timing, "keyframes"), record)
        aus = parse_aus(record.text("aus")) if "aus" in record.cells else ()
        return Event(
            timing.onset,
            None if apex is None else timing.apex,
            timing.offset,
            kind,
            self.event_emotion(record, kind),
            aus,
        )

    def videos(
        self, records: list[Record], sheet: Path, verify: VerifyImages, fps: float | None
    ) -> list[Video]:
        """Group the rows' events by video (sorted by onset), add the uncoded videos on disk."""
        verify = verify_option(verify)
        self._emotions = Emotions(self.emotions, sheet) if self.emotions is not None else None
        found: dict[str, tuple[VideoRef, list[Event], list[int]]] = {}
        names: dict[tuple[str, str], int] = {}
        for record in records:
            with self.report.guard():
                ref = self.video_of(record)
                frames = self.frames_of(ref, record)
                event = self.event(record, frames, verify)
                entry = found.setdefault(ref.id, (ref, [], []))
                entry[1].append(event)
                entry[2].append(record.row)
                if self.names_expressions:
                    self._note_repeated_name(ref, record, names)
        if self._emotions is not None:
            self._emotions.flush(self.report)
        uncoded = []
        for ref in self.videos_on_disk():
            if ref.id not in found:
                with self.report.guard():
                    self.frames_of(ref)
                    found[ref.id] = (ref, [], [])
                    uncoded.append(ref.id)
        if uncoded:
            shown = ", ".join(uncoded[:10]) + (" ..." if len(uncoded) > 10 else "")
            self.report.note(sheet, None, f"{len(uncoded)} videos have no coded event: {shown}")
        videos = []
        for video_id in sorted(found):
            ref, events, rows = found[video_id]
            frames = self.frame_lists[ref.folder]
            if verify == "all":
                with self.report.guard():
                    _check_all(frames)
            videos.append(
                Video(
                    id=ref.id,
                    dataset=self.dataset,
                    subject=ref.subject,
                    frames=frames.paths,
                    fps=fps or self.fps,
                    events=tuple(sorted(events, key=lambda e: (e.onset, e.offset))),
                    meta={
                        "folder": str(ref.folder),
                        "sheet": str(sheet),
                        "rows": ",".join(map(str, rows)),
                    },
                )
            )
        return videos

    def _note_repeated_name(
        self, ref: VideoRef, record: Record, names: dict[tuple[str, str], int]
    ) -> None:
        """SAMM-LV codes ``037_4_1`` twice (a micro and a macro): both are kept, noted."""
        name = record.cells.get("clip", "")
        key = (ref.id, name)
        if name and key in names:
            self.report.note(
                record.file, record.row, f"{name!r} also coded on row {names[key]}; both kept"
            )
        names.setdefault(key, record.row)


def _check_all(frames: FrameList) -> None:
    """Every frame of a video is a whole image (``verify_images="all"``)."""
    for path in frames.paths:
        reason = image_problem(path)
        if reason is not None:
            raise DataError(path, f"cannot read image: {reason}")


# ----------------------------------------------------------------------------- check


@dataclass
class VideoCheck:
    """What ``microexpr datasets check`` shows for a long-video database."""

    videos: list[Video]
    report: Report
    counts: Mapping[str, Counter] = field(default_factory=dict)

    def __post_init__(self) -> None:
        events = [e for v in self.videos for e in v.events]
        self.counts = {
            "subject": Counter(v.subject for v in self.videos),
            "type": Counter(e.type for e in events),
            "emotion": Counter(f"{e.type} {e.emotion or '(none)'}" for e in events),
        }


def check_videos(name: str, root: str | Path, verify_images: str = "all", **options) -> VideoCheck:
    """Read long-video database ``name`` collecting every problem, decoding every frame by
    default (as ``problems.check`` does for clip databases)."""
    from microexpr.datasets.registry import load_videos

    report = Report(collect_errors=True)
    if not Path(root).is_dir():
        report.record(DataError(root, "database folder not found"))
        return VideoCheck([], report)
    try:
        videos = load_videos(name, root, report=report, verify_images=verify_images, **options)
    except DataError as error:
        report.record(error)
        videos = []
    return VideoCheck(videos, report)
