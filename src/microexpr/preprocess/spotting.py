"""Apex spotting inside a known onset..offset interval.

:func:`find_apex` is the method seed 002 (section 3.2) takes from Quang et al., "CapsuleNet
for micro-expression recognition" (FG 2019): 10 facial regions placed from the 68 landmarks
(:func:`spotting_regions`, laid out as in the authors' public code: both lip corners, chin,
both sides of the nose wing, both outer eye corners, and three cells along the brows, each
cell half a mouth-width wide); for each frame i and reference j

    f(i, j) = (|F_i - F_j| + 1) / (|F_i - F_(i-3)| + 1),     M_i = f(i, onset) + f(i, offset),

computed per pixel on gray levels and averaged over each region's pixels, then over the 10
regions (the "per-pixel mean" of the paper and of the authors' code); the apex is argmax M_i.
The numerator is the change from neutral, the denominator the change over the last 3 frames
(the local noise and velocity): the apex is far from both ends and momentarily still.

Head drift would make every frame differ from the onset, so frames are first registered to
the onset by a translation (ECC) applied in the Fourier domain
(:func:`microexpr.preprocess.faces.stabilise` with ``motion="translation"``): bilinear
resampling would blur each frame, and average its noise, by an amount that depends on its
sub-pixel shift, which these pixel-difference ratios pick up as motion. The regions are
placed once, from the onset's landmarks; the reference code re-detects landmarks on every
frame, whose jitter is as large as the expression. Two further choices, both options: a
light Gaussian blur (sigma 1 px) before differencing, against sensor noise, and a centred
denominator that removes the paper's lag of about gap/2 frames (see :func:`apex_scores`).

:func:`find_apex_flow` is the usual baseline: the frame whose optical flow from the onset is
largest inside the same regions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np

from microexpr.preprocess import faces
from microexpr.preprocess.faces import Box, to_gray
from microexpr.preprocess.flow import compute_flow, magnitude

GAP = 3  # the paper's F_(i-3)


def spotting_regions(landmarks: np.ndarray) -> dict[str, Box]:
    """The 10 regions of Quang et al. (boxes x0, y0, x1, y1), from iBUG-68 landmarks."""
    p = np.asarray(landmarks, np.float64)
    w = max((p[54, 0] - p[48, 0]) / 2.0, 2.0)  # cell width: half the mouth width

    def square(centre: np.ndarray) -> Box:
        return (centre[0] - w / 2, centre[1] - w / 2, centre[0] + w / 2, centre[1] + w / 2)

    brow = (p[19] + p[24]) / 2.0
    return {
        "right_lip_corner": square(p[48]),
        "left_lip_corner": square(p[54]),
        "chin": (p[8, 0] - w / 2, p[8, 1] - w, p[8, 0] + w / 2, p[8, 1]),
        "right_nose": (p[31, 0] - w, p[48, 1] - 1.5 * w, p[31, 0], p[48, 1] - w / 2),
        "left_nose": (p[35, 0], p[54, 1] - 1.5 * w, p[35, 0] + w, p[54, 1] - w / 2),
        "right_eye": (p[36, 0] - w, p[36, 1] - w / 2, p[36, 0], p[36, 1] + w / 2),
        "left_eye": (p[45, 0], p[45, 1] - w / 2, p[45, 0] + w, p[45, 1] + w / 2),
        "centre_brow": square(brow),
        "right_brow": (brow[0] - 1.5 * w, brow[1] - w / 2, brow[0] - w / 2, brow[1] + w / 2),
        "left_brow": (brow[0] + w / 2, brow[1] - w / 2, brow[0] + 1.5 * w, brow[1] + w / 2),
    }


def _slices(boxes: dict[str, Box], shape: tuple[int, ...]) -> list[tuple[slice, slice]]:
    """Integer pixel windows of the boxes, clipped to the image; empty ones dropped."""
    h, w = shape[:2]
    out = []
    for x0, y0, x1, y1 in boxes.values():
        c0, c1 = int(np.clip(round(x0), 0, w)), int(np.clip(round(x1), 0, w))
        r0, r1 = int(np.clip(round(y0), 0, h)), int(np.clip(round(y1), 0, h))
        if c1 > c0 and r1 > r0:
            out.append((slice(r0, r1), slice(c0, c1)))
    return out or [(slice(0, h), slice(0, w))]


Denominator = Literal["previous", "centred"]


def _prepare(
    frames: Sequence[np.ndarray],
    onset: int,
    offset: int | None,
    landmarks: np.ndarray | None,
    stabilise: bool,
    blur: float = 0.0,
) -> tuple[list[np.ndarray], int, list[tuple[slice, slice]]]:
    """Gray float frames registered to the onset and smoothed, the offset index, and the
    region windows. No landmarks given and none found on the onset: the whole frame is one
    region.
    """
    if len(frames) == 0:
        raise ValueError("no frames")
    last = len(frames) - 1 if offset is None else offset
    if not 0 <= onset <= last < len(frames):
        raise ValueError(f"need 0 <= onset <= offset < {len(frames)}, got {onset}, {offset}")
    gray = [to_gray(f).astype(np.float32) for f in frames]
    if stabilise:
        gray = faces.stabilise(gray, reference=onset, motion="translation")
    if blur > 0:
        gray = [cv2.GaussianBlur(g, (0, 0), blur) for g in gray]
    if landmarks is None:
        landmarks = faces.detect_landmarks(np.clip(gray[onset], 0, 255).astype(np.uint8))
    if landmarks is None:
        windows = [(slice(None), slice(None))]
    else:
        windows = _slices(spotting_regions(landmarks), gray[onset].shape)
    return gray, last, windows


def apex_scores(
    frames: Sequence[np.ndarray],
    onset: int = 0,
    offset: int | None = None,
    landmarks: np.ndarray | None = None,
    gap: int = GAP,
    denominator: Denominator = "centred",
    blur: float = 1.0,
    stabilise: bool = True,
) -> np.ndarray:
    """M_i for every frame (``nan`` outside onset..offset and where it cannot be computed).

    ``landmarks``: (68, 2) of the onset frame; detected there when ``None``.
    ``denominator``: ``previous`` is the paper's |F_i - F_(i-gap)|, whose change vanishes
    about gap/2 frames after the apex, so its argmax lands late (2 frames, measured on
    synthetic clips); ``centred`` averages |F_(i+1) - F_(i+1-gap)| and |F_(i+2) - F_(i+2-gap)|
    for gap 3 (in general the two windows of length ``gap`` whose centres flank i), which
    removes that lag. ``blur``: Gaussian sigma (px) applied to every frame first, which
    damps sensor noise in the per-pixel ratios. Frames outside onset..offset, when the clip
    has them, serve as neighbours of the first and last frames.
    """
    gray, last, windows = _prepare(frames, onset, offset, landmarks, stabilise, blur)
    if denominator == "previous":
        pairs = [(0, -gap)]
    elif denominator == "centred":
        pairs = [(gap // 2, gap // 2 - gap), (gap - gap // 2, -(gap // 2))]
    else:
        raise ValueError(f"denominator must be 'previous' or 'centred', not {denominator!r}")
    lo = max(onset, -min(b for _, b in pairs))
    hi = min(last, len(gray) - 1 - max(a for a, _ in pairs))
    scores = np.full(len(gray), np.nan)
    on = [gray[onset][r, c] for r, c in windows]
    off = [gray[last][r, c] for r, c in windows]
    for i in range(lo, hi + 1):
        total = 0.0
        for k, (r, c) in enumerate(windows):
            cur = gray[i][r, c]
            change = sum(np.abs(gray[i + a][r, c] - gray[i + b][r, c]) for a, b in pairs)
            denom = change / len(pairs) + 1.0
            ratio = (np.abs(cur - on[k]) + 1.0) / denom + (np.abs(cur - off[k]) + 1.0) / denom
            total += float(ratio.mean())
        scores[i] = total / len(windows)
    return scores


def find_apex(
    frames: Sequence[np.ndarray],
    onset: int = 0,
    offset: int | None = None,
    landmarks: np.ndarray | None = None,
    gap: int = GAP,
    denominator: Denominator = "centred",
    blur: float = 1.0,
    stabilise: bool = True,
) -> int:
    """Index of the apex frame in ``frames`` (between ``onset`` and ``offset``, inclusive).

    ``frames``: HxWx3 BGR or HxW gray uint8. Options as :func:`apex_scores`. A clip too short
    for the frame differences returns the middle of the interval.
    """
    scores = apex_scores(frames, onset, offset, landmarks, gap, denominator, blur, stabilise)
    if np.all(np.isnan(scores)):
        last = len(frames) - 1 if offset is None else offset
        return (onset + last) // 2
    return int(np.nanargmax(scores))


def flow_scores(
    frames: Sequence[np.ndarray],
    onset: int = 0,
    offset: int | None = None,
    landmarks: np.ndarray | None = None,
    method: str = "farneback",
    stabilise: bool = True,
) -> np.ndarray:
    """Mean flow magnitude from the onset to each frame inside the 10 regions (``nan`` outside
    onset..offset)."""
    gray, last, windows = _prepare(frames, onset, offset, landmarks, stabilise)
    gray = [np.clip(np.round(g), 0, 255).astype(np.uint8) for g in gray]
    scores = np.full(len(gray), np.nan)
    for i in range(onset, last + 1):
        speed = magnitude(compute_flow(gray[onset], gray[i], method))
        scores[i] = float(np.mean([speed[r, c].mean() for r, c in windows]))
    return scores


def find_apex_flow(
    frames: Sequence[np.ndarray],
    onset: int = 0,
    offset: int | None = None,
    landmarks: np.ndarray | None = None,
    method: str = "farneback",
    stabilise: bool = True,
) -> int:
    """Baseline apex: the frame of largest optical flow from the onset in the regions."""
    return int(np.nanargmax(flow_scores(frames, onset, offset, landmarks, method, stabilise)))
