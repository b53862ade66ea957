"""Every setting of video analysis in one schema: ``--set analyze.KEY=VALUE`` on the command
line, keyword arguments of :class:`~microexpr.analyze.Analyzer` in Python. Unknown keys and
out-of-range values are refused with the key named (docs/analyze.md lists them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from microexpr.config import parse_overrides, validate

# seed 002's ten regions (preprocess/spotting.py) without the two beside the eyes (a blink
# moves the lids far more than any micro-expression moves anything, and it is no expression),
# and three cells its layout lacks (analyze/spotting.py, region_boxes).
DEFAULT_REGIONS = (
    "right_lip_corner",
    "left_lip_corner",
    "chin",
    "right_nose",
    "left_nose",
    "centre_brow",
    "right_brow",
    "left_brow",
    "upper_lip",
    "lower_lip",
    "nose_bridge",
)


class AnalyzeSettings(BaseModel):
    """Spotting: ``method`` (a registered spotter, ``microexpr.analyze.SPOTTERS``),
    ``window_s`` (the comparison distance k in seconds, the longest micro-expression; k =
    round(window_s x fps) frames), ``macro_window_s`` (a second, longer k for
    macro-expressions; 0 turns it off), ``threshold`` (a peak must exceed the video's own
    noise by this many robust standard deviations), ``extend`` (an interval runs while the
    signal stays above this many), ``combine`` (regions -> one signal: ``max``, ``top2``
    mean of the two highest, ``mean``), ``regions`` (names from seed 002's layout),
    ``flow`` (``dis``, ``farneback`` or ``tvl1``), ``micro_max_s`` (longest micro-expression:
    the type boundary), ``min_s`` / ``max_s`` (shortest and longest interval kept),
    ``spotter`` (the saved spotter file ``method=learned`` reads: ``microexpr spot``'s
    ``spotter.json``).

    Tracking: ``track_side`` (longer frame side used for tracking), ``face_size`` (side of the
    aligned face the spotters read), ``eye_distance`` / ``eye_height`` (its framing, fractions
    of the side), ``min_confidence`` (landmark fit below which the track is lost),
    ``redetect_every_s`` / ``verify_every_s`` (detector runs while lost / confirmations while
    tracking; 0: never confirm).

    Recognition: ``crop_margin`` (the face crop given to the model: the landmarks' box grown
    by this fraction on every side), ``crop_side`` (its largest side in pixels).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = "region_flow"
    window_s: float = Field(0.5, gt=0)
    macro_window_s: float = Field(2.0, ge=0)
    threshold: float = Field(4.0, gt=0)
    extend: float = Field(2.0, ge=0)
    combine: str = "max"
    regions: tuple[str, ...] = DEFAULT_REGIONS
    flow: str = "dis"
    micro_max_s: float = Field(0.5, gt=0)
    min_s: float = Field(0.0, ge=0)
    max_s: float = Field(4.5, gt=0)
    spotter: str | None = None  # saved learned spotter (method learned; analyze/learned.py)

    track_side: int = Field(640, ge=64)
    face_size: int = Field(112, ge=32)
    eye_distance: float = Field(0.40, gt=0, lt=1)
    eye_height: float = Field(0.27, gt=0, lt=1)
    min_confidence: float = Field(0.3, ge=0, le=1)
    redetect_every_s: float = Field(0.2, gt=0)
    verify_every_s: float = Field(1.0, ge=0)

    crop_margin: float = Field(0.4, ge=0)
    crop_side: int = Field(256, ge=32)

    def window(self, fps: float) -> int:
        """k in frames at ``fps`` (at least 2)."""
        return max(2, round(self.window_s * fps))

    def windows(self, fps: float, frames: int) -> tuple[int, ...]:
        """The comparison distances in frames, longest first. The macro one is halved until
        the video holds four of it (as the MEGC 2020 baseline halves its k for short videos)
        and left out when that leaves it no longer than the micro one."""
        micro = self.window(fps)
        macro = round(self.macro_window_s * fps)
        while macro > micro and frames < 4 * macro:
            macro //= 2
        return (macro, micro) if macro > micro else (micro,)


def settings_from(pairs: list[str] | None = None, **values) -> AnalyzeSettings:
    """Settings from ``analyze.KEY=VALUE`` pairs (``--set``) and keyword values."""
    overrides = parse_overrides(pairs or [])
    other = sorted(set(overrides) - {"analyze"})
    if other:
        raise ValueError(f"--set {other[0]}...: analyze takes analyze.KEY=VALUE settings")
    raw = {**values, **overrides.get("analyze", {})}
    return validate(AnalyzeSettings, raw, "analyze settings")
