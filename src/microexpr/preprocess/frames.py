"""Reading a sample's frames, and which of them a recipe uses: its span and its apex.

The one place that decides the span (onset..offset, clamped to the frames on disk) and the
coded apex inside it, for training, the cache and inference alike. A frame is a file, or a
:class:`MemoryFrame` (a decoded video frame) when video analysis runs a pipeline on frames
it holds in memory; such samples never go through the feature cache.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from microexpr.errors import DataError
from microexpr.samples import Sample


@dataclass(frozen=True, eq=False)
class MemoryFrame(os.PathLike):
    """A BGR uint8 frame held in memory, standing where a frame file would in
    ``Sample.frames``; ``name`` (e.g. ``talk.mp4 frame 120``) is what error messages show."""

    name: str
    image: np.ndarray

    def __fspath__(self) -> str:
        return self.name

    def __str__(self) -> str:
        return self.name


def read_image(path: Path | MemoryFrame, gray: bool = False) -> np.ndarray:
    """BGR (or gray) uint8 image; a missing or unreadable file names itself."""
    if isinstance(path, MemoryFrame):
        return cv2.cvtColor(path.image, cv2.COLOR_BGR2GRAY) if gray else path.image
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(path, "missing or unreadable image")
    return image


def read_frames(paths: Sequence[Path], size: int | None = None, gray: bool = False) -> np.ndarray:
    """(T, H, W, C) uint8 frames, C = 1 (gray) or 3 (BGR), resized to size x size if given."""
    frames = []
    for path in paths:
        image = read_image(path, gray=gray)
        if size is not None and image.shape[:2] != (size, size):
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        frames.append(image.reshape(*image.shape[:2], -1))
    return np.stack(frames)


def span_of(sample: Sample, span: str) -> tuple[int, int]:
    """First and last index into ``sample.frames`` to use: onset..offset (``expression``,
    when both are coded; an offset past the last frame is clamped) or every frame."""
    if not sample.frames:
        raise DataError(sample.path or sample.id, "sample has no frames")
    first, last = 0, len(sample.frames) - 1
    if span == "expression" and sample.onset is not None and sample.offset is not None:
        first, last = min(sample.onset, last), min(sample.offset, last)
    return first, last


def coded_apex(sample: Sample, span: str, use_coded: bool = True) -> int | None:
    """The coded apex when it is used and lies inside the span after its first frame."""
    first, last = span_of(sample, span)
    apex = sample.apex if use_coded else None
    return apex if apex is not None and first < apex <= last else None


def still_frame(sample: Sample) -> Path:
    """The one frame a still-image model reads of a sample as the reader gives it: the coded
    apex, else the middle frame."""
    if not sample.frames:
        raise DataError(
            sample.path or sample.id, "sample has no frames (a face model needs its apex frame)"
        )
    index = sample.apex if sample.apex is not None else len(sample.frames) // 2
    return sample.frames[min(index, len(sample.frames) - 1)]
