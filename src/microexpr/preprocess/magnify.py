"""Eulerian video magnification, linear version (Wu et al., SIGGRAPH 2012), as the seeds'
preprocessing names it ("amplification"): small motions become large enough to see and to
survive a CNN's pooling.

Each frame is decomposed into a spatial pyramid (Laplacian for motion, or a single Gaussian
level as in the reference's ``amplify_spatial_Gdown_*``); each pyramid coefficient is
band-pass filtered over time (ideal FFT mask, or the reference's difference of two
first-order Butterworth low-passes run causally); the band is multiplied by ``alpha`` and
added back. For Laplacian levels the reference's bound (its Fig. 6) is kept: a band of
representative wavelength lambda gets min(alpha, (lambda / delta / 8 - 1) * exaggeration)
with delta = lambda_c / 8 / (1 + alpha), the finest and coarsest bands get zero, and the
representative wavelength starts at diag / 3 for the coarsest band and halves per level.
One change: the bound is clamped at zero (the reference's formula turns negative, i.e.
inverts the motion, on fine bands when alpha is small).
Colour frames are processed in YIQ with the chroma bands scaled by ``chroma_attenuation``.

Written with OpenCV pyramids and NumPy/SciPy filters because no maintained Python library
implements the method. Defaults suit 100-200 fps micro-expression clips: a 0.5-10 Hz band
covers a 0.2-0.5 s facial movement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np
from scipy import signal
from skimage import color

TemporalFilter = Literal["ideal", "butterworth"]
Pyramid = Literal["laplacian", "gaussian"]


def laplacian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """``levels`` band-pass images, finest first; the last is the low-pass residual."""
    bands, current = [], image.astype(np.float32)
    for _ in range(levels - 1):
        down = cv2.pyrDown(current)
        up = cv2.pyrUp(down, dstsize=(current.shape[1], current.shape[0]))
        bands.append(current - up)
        current = down
    bands.append(current)
    return bands


def collapse_laplacian(bands: Sequence[np.ndarray]) -> np.ndarray:
    """Inverse of :func:`laplacian_pyramid`."""
    image = bands[-1]
    for band in reversed(bands[:-1]):
        image = cv2.pyrUp(image, dstsize=(band.shape[1], band.shape[0])) + band
    return image


def ideal_bandpass(values: np.ndarray, fps: float, low: float, high: float) -> np.ndarray:
    """Zero every temporal frequency outside [low, high] Hz (axis 0 is time)."""
    spectrum = np.fft.rfft(values, axis=0)
    freqs = np.fft.rfftfreq(len(values), d=1.0 / fps)
    keep = (freqs >= low) & (freqs <= high)
    spectrum[~keep] = 0
    return np.fft.irfft(spectrum, n=len(values), axis=0).astype(np.float32)


def butterworth_bandpass(values: np.ndarray, fps: float, low: float, high: float) -> np.ndarray:
    """Causal band-pass: first-order low-pass at ``high`` minus first-order low-pass at
    ``low``, both started at the first frame (so the first output is zero)."""

    def lowpass(cutoff: float) -> np.ndarray:
        b, a = signal.butter(1, cutoff, btype="low", fs=fps)
        zi = signal.lfilter_zi(b, a).reshape(-1, *([1] * (values.ndim - 1))) * values[:1]
        return signal.lfilter(b, a, values, axis=0, zi=zi)[0]

    return (lowpass(high) - lowpass(low)).astype(np.float32)


def _bandpass(values: np.ndarray, fps: float, low: float, high: float, kind: str) -> np.ndarray:
    if kind == "ideal":
        return ideal_bandpass(values, fps, low, high)
    if kind == "butterworth":
        return butterworth_bandpass(values, fps, low, high)
    raise ValueError(f"temporal filter must be 'ideal' or 'butterworth', not {kind!r}")


def level_gains(
    levels: int,
    height: int,
    width: int,
    alpha: float,
    lambda_c: float,
    exaggeration: float = 2.0,
) -> list[float]:
    """Amplification of each Laplacian level (finest first), by the reference's bound."""
    delta = lambda_c / 8.0 / (1.0 + alpha)
    wavelength = float(np.hypot(height, width)) / 3.0  # coarsest band's representative
    gains = [0.0] * levels
    for level in range(levels - 1, -1, -1):
        bound = (wavelength / delta / 8.0 - 1.0) * exaggeration
        if 0 < level < levels - 1:
            gains[level] = max(0.0, min(alpha, bound))
        wavelength /= 2.0
    return gains


def max_levels(height: int, width: int, smallest: int = 8) -> int:
    """Pyramid height that keeps the coarsest level at least ``smallest`` pixels."""
    return max(1, int(np.floor(np.log2(min(height, width) / smallest))) + 1)


def magnify(
    frames: Sequence[np.ndarray] | np.ndarray,
    fps: float,
    alpha: float = 10.0,
    low_hz: float = 0.5,
    high_hz: float = 10.0,
    lambda_c: float = 16.0,
    levels: int | None = None,
    temporal_filter: TemporalFilter = "ideal",
    pyramid: Pyramid = "laplacian",
    chroma_attenuation: float = 0.1,
    exaggeration: float = 2.0,
) -> np.ndarray:
    """Motion-magnified clip, same shape and dtype (uint8) as the input frames (BGR or gray).

    ``levels``: Laplacian levels (default: down to 8 px) or, for ``pyramid="gaussian"``, the
    number of pyDown steps (default 4) before filtering; ``lambda_c`` only applies to the
    Laplacian pyramid.
    """
    clip = np.asarray(frames)
    if clip.ndim not in (3, 4):
        raise ValueError(f"expected (T, H, W) or (T, H, W, 3) frames, got {clip.shape}")
    colour = clip.ndim == 4
    signal_clip = (
        np.stack([color.rgb2yiq(f[..., ::-1]) for f in clip]).astype(np.float32)
        if colour
        else clip.astype(np.float32) / 255.0
    )
    t, h, w = clip.shape[:3]
    if pyramid == "laplacian":
        n = levels or max_levels(h, w)
        bands = [laplacian_pyramid(f, n) for f in signal_clip]
        gains = level_gains(n, h, w, alpha, lambda_c, exaggeration)
        filtered = [
            _bandpass(np.stack([b[lv] for b in bands]), fps, low_hz, high_hz, temporal_filter)
            * gains[lv]
            for lv in range(n)
        ]
        delta = np.stack([collapse_laplacian([f[i] for f in filtered]) for i in range(t)])
    elif pyramid == "gaussian":
        steps = 4 if levels is None else levels
        small = []
        for frame in signal_clip:
            for _ in range(steps):
                frame = cv2.pyrDown(frame)
            small.append(frame)
        band = _bandpass(np.stack(small), fps, low_hz, high_hz, temporal_filter) * alpha
        delta = np.stack([cv2.resize(b, (w, h), interpolation=cv2.INTER_LINEAR) for b in band])
    else:
        raise ValueError(f"pyramid must be 'laplacian' or 'gaussian', not {pyramid!r}")
    if colour:
        delta = delta.reshape(t, h, w, 3)
        delta[..., 1:] *= chroma_attenuation
        out = np.stack([color.yiq2rgb(f)[..., ::-1] for f in signal_clip + delta]) * 255.0
    else:
        out = (signal_clip + delta.reshape(t, h, w)) * 255.0
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
