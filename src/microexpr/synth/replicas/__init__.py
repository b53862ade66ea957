"""Synthetic clips written in each database's own on-disk layout and annotation format.

One module per database, named as its reader in :mod:`microexpr.datasets`, so a writer sits
beside the reader it tests; :mod:`._common` holds what they share (frame planning, quirks,
sheet writing, truth records).

``write_layout(name, clips, out, **quirks)`` writes ``clips`` (from
:func:`microexpr.synth.generate_clips`, or anything with the same fields) as database ``name``
distributes it (docs/datasets.md) and returns the ground truth: one dict per sample the reader must
return, with ``id, dataset, subject, clip, label, onset, apex, offset, apex_source, aus,
n_frames`` (+ ``usage`` for FER2013). onset/apex/offset are indices into the frames written,
after the documented repairs, so ``load(name, out)`` must match them exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from microexpr.samples import Video
from microexpr.synth.long_videos import LONG_WRITERS, LongVideo
from microexpr.synth.replicas import (  # noqa: F401  (each module registers its writer)
    casme,
    casme2,
    casme3,
    casme3_lv,
    casme_sq,
    ckplus,
    composite,
    fer2013,
    mmew,
    samm,
    samm_lv,
    smic,
)
from microexpr.synth.replicas._common import COUNT_QUIRKS, WRITERS, ClipLike


def write_layout(name: str, clips: Sequence[ClipLike], out: str | Path, **quirks) -> list[dict]:
    """Write ``clips`` as database ``name`` lays them out; return the ground-truth records."""
    write = WRITERS.get(name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return write(list(clips), out, **quirks)


def write_long_layout(
    name: str, videos: Sequence[LongVideo], out: str | Path, **quirks
) -> list[Video]:
    """Write long ``videos`` (:func:`microexpr.synth.long_videos.generate_long_videos`) as
    long-video database ``name`` lays them out; return the Videos its reader must give back."""
    write = LONG_WRITERS.get(name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return write(list(videos), out, **quirks)


__all__ = [
    "COUNT_QUIRKS",
    "LONG_WRITERS",
    "WRITERS",
    "ClipLike",
    "write_layout",
    "write_long_layout",
]
