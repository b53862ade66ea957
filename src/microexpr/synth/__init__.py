"""Synthetic micro-expressions with exact ground truth, and the writers that lay them out as
each database does, so tests, demos and users without the licensed data can run everything.

Data flows one way: this package writes what :mod:`microexpr.datasets` reads, using the
readers' constants; no reader imports it.
"""

from microexpr.synth.generator import SyntheticClip, generate_clips, synthetic_flow_images
from microexpr.synth.layouts import LAYOUTS, LONG_LAYOUTS, write_long_synthetic, write_synthetic
from microexpr.synth.long_videos import (
    LongVideo,
    generate_long_videos,
    iter_long_videos,
    long_video_truth,
    write_long_video,
)
from microexpr.synth.replicas import WRITERS, write_layout, write_long_layout

__all__ = [
    "LAYOUTS",
    "LONG_LAYOUTS",
    "WRITERS",
    "LongVideo",
    "SyntheticClip",
    "generate_clips",
    "generate_long_videos",
    "iter_long_videos",
    "long_video_truth",
    "synthetic_flow_images",
    "write_layout",
    "write_long_layout",
    "write_long_synthetic",
    "write_long_video",
    "write_synthetic",
]
