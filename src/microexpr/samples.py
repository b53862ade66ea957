"""The one record every reader yields and every later stage consumes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path


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
