"""Readers by name: ``load("casme2", root)`` -> list of Samples."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from microexpr.samples import Sample

Reader = Callable[..., list[Sample]]
_READERS: dict[str, Reader] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register(name: str, description: str = "") -> Callable[[Reader], Reader]:
    """Decorator: make a reader function available to :func:`load` under ``name``."""

    def wrap(fn: Reader) -> Reader:
        if name in _READERS:
            raise ValueError(f"dataset reader {name!r} registered twice")
        _READERS[name] = fn
        _DESCRIPTIONS[name] = description or (fn.__doc__ or "").strip().splitlines()[0]
        return fn

    return wrap


def load(name: str, root: str | Path, **kwargs) -> list[Sample]:
    """Read database ``name`` from ``root`` (its own layout and annotation files)."""
    if name not in _READERS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(_READERS))}")
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{name}: data folder {root} does not exist")
    return _READERS[name](root, **kwargs)


def names() -> dict[str, str]:
    """Registered readers with a one-line description each."""
    return dict(sorted(_DESCRIPTIONS.items()))
