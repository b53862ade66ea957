"""The one record every reader yields and every later stage consumes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Sample:
    """One labelled expression: a clip of frames, a single precomputed file, or both.

    ``label`` is the emotion name as the database spells it after normalisation (lower case);
    a taxonomy in :mod:`microexpr.labels` maps it to a class index. ``onset``, ``apex`` and
    ``offset`` are indices into ``frames`` (not absolute frame numbers), ``None`` when unknown.
    """

    id: str
    dataset: str
    subject: str
    label: str
    frames: tuple[Path, ...] = ()
    path: Path | None = None
    onset: int | None = None
    apex: int | None = None
    offset: int | None = None
    aus: tuple[str, ...] = ()
    fps: float | None = None
    meta: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def with_label(self, label: str) -> Sample:
        """Copy with another label (used when a taxonomy renames classes)."""
        return replace(self, label=label)


def subject_key(sample: Sample) -> str:
    """Subject identity across databases: the same id in two databases is two people."""
    return f"{sample.dataset}/{sample.subject}"


@dataclass(frozen=True)
class Event:
    """One coded expression inside a long video: frame indices into the video's frames
    (``offset`` inclusive), its type by the database's coding (``micro`` or ``macro``) and
    emotion as the database spells it after normalisation (``""`` when not coded)."""

    onset: int
    apex: int | None
    offset: int
    type: str = "micro"
    emotion: str = ""
    aus: tuple[str, ...] = ()


@dataclass(frozen=True)
class Video:
    """One long recording of one face, as long-video readers yield it (MEGC's spotting task):
    its frames on disk (or ``path``, a video file) and every coded expression in it."""

    id: str
    dataset: str
    subject: str
    frames: tuple[Path, ...] = ()
    path: Path | None = None
    fps: float | None = None
    events: tuple[Event, ...] = ()
    meta: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


def truth_table(videos: list[Video]) -> pd.DataFrame:
    """Every coded event of ``videos`` in MEGC's columns (subject, video, onset, apex, offset,
    type, emotion), as ``evaluate.spotting.spotting_scores`` takes them."""
    import pandas as pd

    rows = [
        {
            "subject": v.subject,
            "video": v.id,
            "onset": e.onset,
            "apex": e.apex,
            "offset": e.offset,
            "type": e.type,
            "emotion": e.emotion,
        }
        for v in videos
        for e in v.events
    ]
    columns = ["subject", "video", "onset", "apex", "offset", "type", "emotion"]
    return pd.DataFrame(rows, columns=columns)
