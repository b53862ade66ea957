"""Resample a clip to a fixed number of frames: linear blending, or the temporal
interpolation model (TIM) of Zhou, Zhao and Pietikainen (CVPR 2011), which Pfister et al.
(ICCV 2011) brought to micro-expressions and many clip models since use.

TIM in brief: the n frames are nodes of a path graph; the graph Laplacian's non-constant
eigenvectors are samples of the continuous curves y_k(t) = sin(pi k t + pi (n - k) / (2 n)),
k = 1..n-1, t in [1/n, 1] (frame i sits at t = i / n). A linear map W sends each frame's
PCA coordinates to its point on that curve; any t on the curve then maps back to an image:
x(t) = U W^-T y(t) + mean. The curve passes through every input frame, so resampling to
the same n positions returns the input. The published code (``trainPGM`` / ``synPGM``)
takes the Laplacian's eigenvectors numerically and rescales them to the analytic curves
(its vector ``m``); using the analytic curves directly, as here, gives the same map.
Written here because no maintained library offers it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Method = Literal["linear", "tim"]


def _as_array(frames: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    array = np.asarray(frames)
    if array.ndim < 2:
        raise ValueError(f"expected a clip of shape (T, H, W[, C]), got {array.shape}")
    if len(array) == 0:
        raise ValueError("empty clip")
    return array


def _restore_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.round(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def resample_linear(frames: Sequence[np.ndarray] | np.ndarray, n: int) -> np.ndarray:
    """``n`` frames at evenly spaced times from the first to the last frame, each a blend of
    its two nearest input frames. Keeps the input dtype."""
    clip = _as_array(frames)
    positions = np.linspace(0.0, len(clip) - 1, n)
    low = np.floor(positions).astype(int)
    high = np.minimum(low + 1, len(clip) - 1)
    weight = (positions - low).reshape(-1, *([1] * (clip.ndim - 1)))
    values = clip[low].astype(np.float64) * (1 - weight) + clip[high].astype(np.float64) * weight
    return _restore_dtype(values, clip.dtype)


def _curve(n: int, t: np.ndarray) -> np.ndarray:
    """(len(t), n - 1): the path graph's Laplacian eigencurves y_k(t), k = 1..n-1."""
    k = np.arange(1, n)
    return np.sin(np.pi * np.outer(t, k) + np.pi * (n - k) / (2.0 * n))


def resample_tim(frames: Sequence[np.ndarray] | np.ndarray, n: int) -> np.ndarray:
    """``n`` frames from the TIM curve at evenly spaced positions from the first to the last
    input frame. Keeps the input dtype (integer output is rounded and clipped).

    Frames that are linear combinations of others (e.g. repeated frames) make the PCA
    rank-deficient; least squares then gives the minimum-norm map instead of failing as the
    published code does.
    """
    clip = _as_array(frames)
    count = len(clip)
    if count == 1:
        return np.repeat(clip, n, axis=0)
    x = clip.reshape(count, -1).astype(np.float64)
    mean = x.mean(axis=0)
    u, s, vt = np.linalg.svd((x - mean).T, full_matrices=False)
    u, q = u[:, : count - 1], (s[: count - 1, None] * vt[: count - 1])  # q: (n-1, n) coords
    y = _curve(count, np.arange(1, count + 1) / count)  # (n, n-1): curve points of the frames
    # W solves q^T W = y in least squares: W = (q q^T)^-1 q y.
    w = np.linalg.lstsq(q.T, y, rcond=None)[0]
    t = 1.0 / count + np.linspace(0.0, 1.0, n) * (1.0 - 1.0 / count)
    coords = np.linalg.lstsq(w.T, _curve(count, t).T, rcond=None)[0]  # (n-1, n_out)
    values = (u @ coords).T + mean
    return _restore_dtype(values.reshape(n, *clip.shape[1:]), clip.dtype)


def resample(
    frames: Sequence[np.ndarray] | np.ndarray, n: int, method: Method = "linear"
) -> np.ndarray:
    """Clip resampled to ``n`` frames by ``linear`` or ``tim``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if method == "linear":
        return resample_linear(frames, n)
    if method == "tim":
        return resample_tim(frames, n)
    raise ValueError(f"method must be 'linear' or 'tim', not {method!r}")
