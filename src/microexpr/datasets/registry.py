"""Readers by name: ``load("casme2", root)`` -> list of Samples."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from microexpr.registry import Registry
from microexpr.samples import Sample, Video

Reader = Callable[..., list[Sample]]
# What a reader's samples hold: coded clips of frames, still images (one frame each), or
# preprocessed flow images (``Sample.path``, with the apex face as the one frame if present).
Provides = Literal["clips", "images", "flow_images"]


@dataclass(frozen=True)
class ReaderEntry:
    """A reader, its one-line description and what its samples hold."""

    read: Reader
    description: str
    provides: Provides = "clips"


READERS: Registry[ReaderEntry] = Registry("dataset")


def register(
    name: str, description: str = "", provides: Provides = "clips"
) -> Callable[[Reader], Reader]:
    """Decorator: make a reader function available to :func:`load` under ``name``."""

    def wrap(fn: Reader) -> Reader:
        text = description or (fn.__doc__ or "").strip().splitlines()[0]
        READERS.add(name, ReaderEntry(fn, text, provides))
        return fn

    return wrap


def load(name: str, root: str | Path, **kwargs) -> list[Sample]:
    """Read database ``name`` from ``root`` (its own layout and annotation files); an option
    the reader does not take is a ValueError naming it and the known ones."""
    reader = READERS.get(name).read
    check_options(name, reader, kwargs)
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{name}: data folder {root} does not exist")
    return reader(root, **kwargs)


def check_options(name: str, reader: Callable, options: dict) -> None:
    """Refuse option names ``reader`` does not take (``-o colums.onset=3``), before reading."""
    parameters = inspect.signature(reader).parameters
    try:
        inspect.signature(reader).bind_partial(None, **options)
    except TypeError as err:
        known = ", ".join(p for p in list(parameters)[1:] if parameters[p].kind != p.VAR_KEYWORD)
        raise ValueError(f"{name} reader: {err}; its options are {known}") from None


def names() -> dict[str, str]:
    """Registered readers with a one-line description each."""
    return {name: entry.description for name, entry in READERS.items()}


# Long-video databases (MEGC spotting): readers yield whole recordings with their events.
VideoReader = Callable[..., list[Video]]
VIDEO_READERS: Registry[ReaderEntry] = Registry("long-video dataset")


def register_videos(name: str, description: str = "") -> Callable[[VideoReader], VideoReader]:
    """Decorator: make a long-video reader available to :func:`load_videos` under ``name``."""

    def wrap(fn: VideoReader) -> VideoReader:
        text = description or (fn.__doc__ or "").strip().splitlines()[0]
        VIDEO_READERS.add(name, ReaderEntry(fn, text))
        return fn

    return wrap


def load_videos(name: str, root: str | Path, **kwargs) -> list[Video]:
    """Read long-video database ``name`` from ``root`` (its own layout and sheets)."""
    reader = VIDEO_READERS.get(name).read
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{name}: data folder {root} does not exist")
    return reader(root, **kwargs)
