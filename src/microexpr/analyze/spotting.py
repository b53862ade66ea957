"""Spotting expressions in a long recording, without training: motion signals and intervals.

A spotter (``SPOTTERS``, by name) turns a :class:`~microexpr.analyze.track.FaceTrack` into a
:class:`MotionSignal`: per frame, how strongly an expression seems to peak there, in units
of the video's own noise. :func:`find_intervals` turns that into intervals, the same way for
every spotter, so a learned per-frame score (a later task: SoftNet-style apex scores
regressed from region flow) plugs in as one more registry entry.

``region_flow`` (the default) follows the MEGC 2020 baseline's main-directional maximal
difference (He et al., FG 2020; HeyingGithub/Baseline-project-for-MEGC2020_spotting,
``MDMD_codes/MDMD.m``: flow magnitude against the frame k earlier minus the flow magnitude
across the whole 2k window, so a movement that comes and goes stands out and a slow drift or
a held expression does not), on the regions of seed 002 (Quang et al.'s layout,
``preprocess/spotting.py``) that expressions move plus three cells its layout lacks
(:func:`region_boxes`), with the eyes left out against blinks (this project's choice: MDMD
divides the whole face into 6 x 6 blocks and keeps the top third). MDMD's own second step,
a contrast of each frame against frames k-1 either side and a threshold between the mean and
the maximum of the video, is replaced by the interval rules below. For frame i, window k and
each region r:

    A_r(i) = mean |flow(i-k -> i)|,   B_r(i) = mean |flow(i-k -> i+k)|   (over r's pixels)
    S_r(i) = min(A_r(i), A_r(i+k)) - B_r(i)

Flow is DIS between aligned faces whose eye zone is painted still (flow spreads an eyelid's
motion well past the lid), less the affine motion that fits it best over the face (the rigid
motion the alignment left). An expression whose onset and offset both lie within k of frame
i gives S_r(i) = its displacement at i (both differences see it, the 2k one does not); a head
turn, a held expression or a slow change moves the 2k difference as much and scores about
zero; the A_r(i+k) term stops the first half of an expression that stays from counting. Near
either end of the video the first or last frame stands in for i-k or i+k. Each region's S_r
is put in noise units (minus its median, over 1.4826 x its median absolute deviation over the
video), and the regions combine by their maximum. k comes from the frame rate: round(window_s
x fps) frames with window_s the longest micro-expression (0.5 s), and a second k of
macro_window_s (2 s) for macro-expressions, halved until the video holds four of it.

``region_difference`` is seed 002's region difference function
(:func:`microexpr.preprocess.spotting.apex_scores`) slid over the video: at frame i, with
onset i-k and offset i+k, M_i (high at an apex that is still and far from both ends).
``frame_difference`` is the baseline: mean absolute grey-level difference of the whole
aligned face, differenced as ``region_flow`` is.

:func:`find_intervals`: frames whose score exceeds ``threshold`` seed an interval; it runs
while the score stays above ``extend``, and its onset and offset are the last frames before
and after the run (the still frames a coder marks as onset and offset). The apex is the
highest frame. An interval whose face moved more in the k frames before its onset, or after
its offset, than at its apex is the top of a longer movement and is dropped (the spotter's
``before`` / ``after`` signals, when it gives them). Intervals of several windows are merged,
the longest window first, an interval overlapping one of a longer window being dropped. Type:
``micro`` when it lasts at most ``micro_max_s`` (MEGC's 0.5 s), else ``macro``. Frames without
a tracked face have no score, so no interval crosses them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from microexpr.analyze.settings import AnalyzeSettings
from microexpr.analyze.track import FaceTrack
from microexpr.preprocess import faces
from microexpr.preprocess.flow import FLOW_METHODS, flow_pairs
from microexpr.preprocess.spotting import apex_scores, spotting_regions
from microexpr.registry import Registry

MAD_TO_SIGMA = 1.4826  # a normal distribution's standard deviation per median absolute deviation


@dataclass
class MotionSignal:
    """What a spotter measured: ``windows`` (k of each scale, frames, longest first),
    ``scores`` (scales, T) in noise units (NaN where not measured), ``regions`` (region
    name -> (T,) motion at the last, shortest window, in the spotter's own units) and,
    optionally, ``before`` / ``after`` (scales, T): how much the face moved in the k frames
    up to / from each frame, in noise units (an interval must start and end at rest).
    """

    windows: tuple[int, ...]
    scores: np.ndarray
    regions: dict[str, np.ndarray]
    before: np.ndarray | None = None
    after: np.ndarray | None = None

    @property
    def score(self) -> np.ndarray:
        """(T,) the highest score of any window at each frame (NaN where none)."""
        if np.isnan(self.scores).all():
            return self.scores[0]
        with np.errstate(invalid="ignore"):
            return np.fmax.reduce(self.scores, axis=0)


@dataclass(frozen=True)
class Interval:
    """One spotted interval: frame indices (offset inclusive), its score (noise units),
    ``micro`` or ``macro``, and the window k (frames) that found it."""

    onset: int
    apex: int
    offset: int
    score: float
    type: str
    window: int

    def frames(self) -> int:
        return self.offset - self.onset + 1


SignalFn = Callable[[FaceTrack, AnalyzeSettings], MotionSignal]
SPOTTERS: Registry[SignalFn] = Registry("spotter")


def _noise_units(raw: np.ndarray) -> np.ndarray:
    """:func:`noise_units` of each column of a (T, R) array."""
    return np.column_stack([noise_units(raw[:, j]) for j in range(raw.shape[1])])


def noise_units(raw: np.ndarray) -> np.ndarray:
    """``raw`` minus its median over its finite values, over 1.4826 x their median absolute
    deviation: how far above the video's usual level each frame is, in standard deviations
    of that level's spread (NaN stays NaN)."""
    finite = raw[np.isfinite(raw)]
    if finite.size == 0:
        return raw.astype(np.float64)
    centre = float(np.median(finite))
    spread = MAD_TO_SIGMA * float(np.median(np.abs(finite - centre)))
    return (raw - centre) / (spread if spread > 1e-9 else 1.0)


# --------------------------------------------------------------------------------------------
# Regions and flow
# --------------------------------------------------------------------------------------------


# How far around the eyelid landmarks a blink moves the skin, in inter-ocular distances: the
# part of any region this close to an eyelid is left out.
EYE_MARGIN = 0.3
_EYELIDS = (37, 38, 40, 41, 43, 44, 46, 47)


def eye_zone(track: FaceTrack) -> np.ndarray:
    """Boolean mask of the aligned face's pixels within ``EYE_MARGIN`` of an eyelid."""
    side = track.faces.shape[1]
    ys, xs = np.mgrid[0:side, 0:side]
    left, right = faces.eye_centres(track.reference)
    reach = EYE_MARGIN * float(np.linalg.norm(right - left))
    zone = np.zeros((side, side), bool)
    for x, y in track.reference[list(_EYELIDS)]:
        zone |= (xs - x) ** 2 + (ys - y) ** 2 < reach**2
    return zone


def region_boxes(landmarks: np.ndarray) -> dict[str, faces.Box]:
    """seed 002's ten regions and three more cells of the same size where its layout has none
    but expressions move: the upper lip's and lower lip's centres (AU10, 24, 25) and the nose
    bridge (AU9)."""
    p = np.asarray(landmarks, np.float64)
    half = max((p[54, 0] - p[48, 0]) / 2.0, 2.0) / 2  # half a cell: a quarter mouth width
    cells = {"upper_lip": p[51], "lower_lip": p[57], "nose_bridge": p[28]}
    extra = {n: (c[0] - half, c[1] - half, c[0] + half, c[1] + half) for n, c in cells.items()}
    return spotting_regions(p) | extra


def check_settings(settings: AnalyzeSettings) -> None:
    """Refuse an unknown spotter, flow method, region or combination before any video."""
    if settings.method not in SPOTTERS:
        raise ValueError(f"analyze.method: {SPOTTERS.unknown(settings.method)}")
    if settings.method == "learned":
        from microexpr.analyze.learned import spotter_for  # it builds on this module

        spotter_for(settings)  # a missing or damaged spotter file fails before any video
    _check_flow(settings.flow)
    known = region_boxes(np.zeros((68, 2)))
    unknown = sorted(set(settings.regions) - set(known))
    if unknown:
        raise ValueError(f"analyze.regions: unknown {unknown}; known: {sorted(known)}")
    combine(np.zeros((1, 1)), settings.combine)


def region_masks(track: FaceTrack, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Boolean masks, over the aligned face, of the named regions (:func:`region_boxes`), less
    the eye zone (:func:`eye_zone`)."""
    boxes = region_boxes(track.reference)
    unknown = sorted(set(names) - set(boxes))
    if unknown:
        raise ValueError(f"analyze.regions: unknown {unknown}; known: {sorted(boxes)}")
    side = track.faces.shape[1]
    ys, xs = np.mgrid[0:side, 0:side]
    near_eye = eye_zone(track)
    out = {}
    for name in names:
        x0, y0, x1, y1 = boxes[name]
        mask = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1) & ~near_eye
        if mask.any():
            out[name] = mask
    if not out:
        raise ValueError("analyze.regions: every region falls outside the aligned face")
    return out


@functools.cache
def _dis() -> cv2.DISOpticalFlow:
    """DIS's ultrafast preset refined down to half resolution (its finest scale 1; the preset
    stops at a quarter, which misses most of a micro-expression's sub-pixel motion)."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    dis.setFinestScale(1)
    return dis


def fast_flow(prev: np.ndarray, nxt: np.ndarray, method: str = "dis") -> np.ndarray:
    """(H, W, 2) flow between gray faces: ``dis`` (OpenCV's DIS, :func:`_dis`, about 0.5 ms
    at 112 x 112) or a :data:`~microexpr.preprocess.flow.FLOW_METHODS` name, through
    ``flow_pairs`` (``tvl1`` runs in PyTorch on a CUDA GPU when there is one)."""
    if method == "dis":
        return _dis().calc(prev, nxt, None)
    return flow_pairs([prev], [nxt], method)[0]


def _check_flow(method: str) -> None:
    if method != "dis" and method not in FLOW_METHODS:
        known = ", ".join(["dis", *FLOW_METHODS.names()])
        raise ValueError(f"analyze.flow: unknown flow method {method!r}; known: {known}")


class ResidualFlow:
    """Flow between two aligned faces less the affine motion that fits it best over the face
    (least squares): the rigid motion the alignment left, landmark jitter mostly."""

    def __init__(self, track: FaceTrack, method: str):
        _check_flow(method)
        self.method = method
        self.mask = faces.roi_mask(track.faces.shape[1:], track.reference) > 0
        side = track.faces.shape[1]
        ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
        self.grid = np.dstack([xs, ys, np.ones_like(xs)])  # (x, y, 1) per pixel
        self.fit = np.linalg.pinv(self.grid[self.mask].astype(np.float64)).astype(np.float32)

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        flow = fast_flow(first, second, self.method)
        affine = self.fit @ flow[self.mask]  # (3, 2): flow ~ (x, y, 1) @ affine
        return flow - self.grid @ affine


class _RegionMotion:
    """Mean residual flow speed per region between two faces whose eye zones are painted out
    (flow spreads an eyelid's motion well beyond the lid; painted still, a blink moves
    nothing)."""

    def __init__(self, track: FaceTrack, names: tuple[str, ...], method: str):
        self.flow = ResidualFlow(track, method)
        self.regions = region_masks(track, names)
        self.eyes = eye_zone(track)

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        first, second = first.copy(), second.copy()
        first[self.eyes] = second[self.eyes] = 128
        residual = self.flow(first, second)
        speed = np.hypot(residual[..., 0], residual[..., 1])
        return np.array([speed[m].mean() for m in self.regions.values()])


@dataclass
class Differenced:
    """(T, R) per region: ``score`` S(i) = min(A(i), A(i+k)) - B(i), and ``before`` A(i) and
    ``after`` A(i+k), the change over the k frames up to and from frame i."""

    score: np.ndarray
    before: np.ndarray
    after: np.ndarray


def differenced(
    track: FaceTrack, k: int, measure: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> Differenced:
    """S(i) = min(A(i), A(i+k)) - B(i) with A(i) = measure(face i-k, face i) and
    B(i) = measure(face i-k, face i+k). Near either end of the video the frame i-k or i+k is
    replaced by the first or last frame (a recording starts and ends at rest far more often
    than not), so every frame gets a score; NaN where a face it needs is missing."""
    n, found = len(track), track.found
    probe = measure(track.faces[0], track.faces[0])
    a = np.full((n + 1, probe.size), np.nan)  # a[i] = A(i); row n: A past the last frame
    b = np.full((n, probe.size), np.nan)
    for i in range(1, n):
        start, end = max(i - k, 0), min(i + k, n - 1)
        if found[start] and found[i]:
            a[i] = measure(track.faces[start], track.faces[i])
        if end > i and found[start] and found[end]:
            b[i] = measure(track.faces[start], track.faces[end])
    after = np.full((n, probe.size), np.nan)
    for i in range(n - 1):  # A(i + k), or from i to the last frame near the end
        end = min(i + k, n - 1)
        after[i] = a[i + k] if i + k < n else _change(track, measure, i, end, probe.size)
    with np.errstate(invalid="ignore"):
        return Differenced(np.minimum(a[:n], after) - b, a[:n], after)


def _change(track: FaceTrack, measure, first: int, last: int, size: int) -> np.ndarray:
    if track.found[first] and track.found[last]:
        return measure(track.faces[first], track.faces[last])
    return np.full(size, np.nan)


def combine(z: np.ndarray, how: str) -> np.ndarray:
    """(T, R) region scores -> (T,): ``max``, ``top2`` (mean of the two highest) or ``mean``."""
    if how == "max":
        return np.max(z, axis=1)
    if how == "top2":
        return np.sort(z, axis=1)[:, -2:].mean(axis=1)
    if how == "mean":
        return np.mean(z, axis=1)
    raise ValueError(f"analyze.combine: {how!r}; use max, top2 or mean")


def region_flow_parts(
    track: FaceTrack, settings: AnalyzeSettings
) -> tuple[tuple[int, ...], tuple[str, ...], list[Differenced]]:
    """The windows (longest first), the region names measured (those of ``settings.regions``
    that fall on the face) and, per window, each region's differenced flow speed: what
    ``region_flow`` scores and the learned spotter (``analyze/learned.py``) reads."""
    motion = _RegionMotion(track, settings.regions, settings.flow)
    windows = settings.windows(track.fps, len(track))
    return windows, tuple(motion.regions), [differenced(track, k, motion) for k in windows]


@SPOTTERS.register("region_flow")
def region_flow(track: FaceTrack, settings: AnalyzeSettings) -> MotionSignal:
    """Differenced flow speed in the expression regions (the module docstring)."""
    windows, names, all_parts = region_flow_parts(track, settings)
    scores, regions = [], {}
    before, after = [], []
    for parts in all_parts:
        scores.append(combine(_noise_units(parts.score), settings.combine))
        before.append(np.max(_noise_units(parts.before), axis=1))
        after.append(np.max(_noise_units(parts.after), axis=1))
        regions = dict(zip(names, parts.score.T, strict=True))
    return MotionSignal(windows, np.array(scores), regions, np.array(before), np.array(after))


@SPOTTERS.register("frame_difference")
def frame_difference(track: FaceTrack, settings: AnalyzeSettings) -> MotionSignal:
    """Baseline: the whole aligned face's mean absolute grey-level change, differenced."""
    mask = faces.roi_mask(track.faces.shape[1:], track.reference) > 0

    def change(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return np.array([cv2.absdiff(p, q)[mask].mean()])

    windows = settings.windows(track.fps, len(track))
    parts = [differenced(track, k, change) for k in windows]

    def units(name: str) -> np.ndarray:
        return np.array([noise_units(getattr(p, name)[:, 0]) for p in parts])

    raw = {"face": parts[-1].score[:, 0]}
    return MotionSignal(windows, units("score"), raw, units("before"), units("after"))


@SPOTTERS.register("region_difference")
def region_difference(track: FaceTrack, settings: AnalyzeSettings) -> MotionSignal:
    """seed 002's M_i with onset i-k and offset i+k, in noise units."""
    windows = settings.windows(track.fps, len(track))
    n, scores = len(track), []
    for k in windows:
        raw = np.full(n, np.nan)
        for i in range(k, n - k):
            if track.found[i - k : i + k + 1].all():
                window = track.faces[i - k : i + k + 1]
                raw[i] = apex_scores(window, 0, 2 * k, track.reference, stabilise=False)[k]
        scores.append(noise_units(raw))
    return MotionSignal(windows, np.array(scores), {"face": raw})


@SPOTTERS.register("learned")
def learned(track: FaceTrack, settings: AnalyzeSettings) -> MotionSignal:
    """A spotter fitted by ``microexpr spot`` (``analyze.spotter``: its ``spotter.json``):
    SoftNet-style apex scores regressed from this module's region flow (``analyze/learned.py``)."""
    from microexpr.analyze.learned import learned_signal

    return learned_signal(track, settings)


# --------------------------------------------------------------------------------------------
# Intervals
# --------------------------------------------------------------------------------------------


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) of every run of True."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def intervals_of(
    score: np.ndarray,
    window: int,
    fps: float,
    settings: AnalyzeSettings,
    before: np.ndarray | None = None,
    after: np.ndarray | None = None,
) -> list[Interval]:
    """Intervals of one window's score (the module docstring), by onset."""
    n = len(score)
    with np.errstate(invalid="ignore"):
        above, high = score > settings.extend, score > settings.threshold
    out = []
    for first, last in _runs(above):
        if not high[first : last + 1].any():
            continue
        onset, offset = max(first - 1, 0), min(last + 1, n - 1)
        seconds = (offset - onset + 1) / fps
        if not settings.min_s <= seconds <= settings.max_s:
            continue
        apex = first + int(np.nanargmax(score[first : last + 1]))
        if before is not None and not _at_rest(before[onset], after[offset], score[apex]):
            continue
        kind = "micro" if seconds <= settings.micro_max_s else "macro"
        out.append(Interval(onset, apex, offset, float(score[apex]), kind, window))
    return out


def _at_rest(lead: float, trail: float, peak: float) -> bool:
    """The face moved less in the k frames before the onset, and in the k frames after the
    offset, than at the apex: otherwise the interval is the top of a longer movement (the
    apex of a slow macro-expression looks like a short one at a short window)."""
    return not (lead >= peak or trail >= peak)  # NaN (unmeasured) passes


def find_intervals(signal: MotionSignal, fps: float, settings: AnalyzeSettings) -> list[Interval]:
    """Every window's intervals merged (longest window first; one overlapping an interval of
    a longer window is dropped), by onset."""
    kept: list[Interval] = []
    for s, window in enumerate(signal.windows):
        before = None if signal.before is None else signal.before[s]
        after = None if signal.after is None else signal.after[s]
        longer = list(kept)
        for interval in intervals_of(signal.scores[s], window, fps, settings, before, after):
            if not any(_overlap(interval, k) for k in longer):
                kept.append(interval)
    return sorted(kept, key=lambda i: i.onset)


def _overlap(a: Interval, b: Interval) -> bool:
    return a.onset <= b.offset and b.onset <= a.offset


def spot(track: FaceTrack, settings: AnalyzeSettings) -> tuple[MotionSignal, list[Interval]]:
    """The settings' spotter's signal over ``track`` and its intervals."""
    signal = SPOTTERS.get(settings.method)(track, settings)
    return signal, find_intervals(signal, track.fps, settings)
