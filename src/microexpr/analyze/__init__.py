"""Video analysis: spot micro- and macro-expressions in long recordings and, with a model
bundle, label each one (MEGC's spot-then-recognise). ``microexpr analyze`` on the command
line; in Python :class:`Analyzer` (docs/analyze.md)."""

from microexpr.analyze.analyzer import Analysis, Analyzer
from microexpr.analyze.settings import AnalyzeSettings, settings_from
from microexpr.analyze.spotting import SPOTTERS, Interval, MotionSignal
from microexpr.analyze.video import open_video

__all__ = [
    "SPOTTERS",
    "Analysis",
    "AnalyzeSettings",
    "Analyzer",
    "Interval",
    "MotionSignal",
    "open_video",
    "settings_from",
]
