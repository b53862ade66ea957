"""Synthetic micro-expressions with exact ground truth, and the writers that lay them out as
each database does, so tests, demos and users without the licensed data can run everything.

Data flows one way: this package writes what :mod:`microexpr.datasets` reads, using the
readers' constants; no reader imports it.
"""

from microexpr.synth.generator import SyntheticClip, generate_clips, synthetic_flow_images
from microexpr.synth.layouts import LAYOUTS, write_synthetic
from microexpr.synth.replicas import WRITERS, write_layout

__all__ = [
    "LAYOUTS",
    "WRITERS",
    "SyntheticClip",
    "generate_clips",
    "synthetic_flow_images",
    "write_layout",
    "write_synthetic",
]
