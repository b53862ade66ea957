"""Fixed-length resampling (linear, TIM) and Eulerian magnification."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from microexpr.preprocess import faces, magnify, temporal


def ramp_clip(n: int = 5) -> np.ndarray:
    """(n, 4, 6) float clip whose pixel values grow linearly in time."""
    return np.stack([np.full((4, 6), 10.0 * t) for t in range(n)])


def test_linear_resampling_keeps_the_ends_and_interpolates_between():
    clip = ramp_clip()
    out = temporal.resample(clip, 9, "linear")
    assert out.shape == (9, 4, 6)
    np.testing.assert_allclose(out[:, 0, 0], np.linspace(0, 40, 9))
    np.testing.assert_array_equal(temporal.resample(clip, 5), clip)
    as_uint8 = temporal.resample(clip.astype(np.uint8), 3)
    assert as_uint8.dtype == np.uint8 and list(as_uint8[:, 0, 0]) == [0, 20, 40]


def test_tim_curve_passes_through_every_input_frame():
    rng = np.random.default_rng(0)
    clip = rng.uniform(0, 255, (7, 8, 9, 3))
    np.testing.assert_allclose(temporal.resample(clip, 7, "tim"), clip, atol=1e-8)
    frames = clip.astype(np.uint8)
    np.testing.assert_array_equal(temporal.resample(frames, 7, "tim"), frames)


def test_tim_reproduces_motion_on_its_own_curve_and_survives_repeated_frames():
    # A clip that moves along one of the path graph's eigencurves is reproduced exactly
    # at any time, so 4 frames interpolate to the same curve sampled 10 times.
    n, k = 4, 1
    base = np.random.default_rng(1).normal(size=(2, 30))
    curve = lambda t: np.sin(np.pi * k * t + np.pi * (n - k) / (2 * n))  # noqa: E731
    times = np.arange(1, n + 1) / n
    clip = np.stack([base[0] + curve(t) * base[1] for t in times])
    dense = 1 / n + np.linspace(0, 1, 10) * (1 - 1 / n)
    expected = np.stack([base[0] + curve(t) * base[1] for t in dense])
    np.testing.assert_allclose(temporal.resample(clip, 10, "tim"), expected, atol=1e-8)
    repeated = np.repeat(clip[:2], 3, axis=0)  # rank-deficient: no error, finite output
    assert np.isfinite(temporal.resample(repeated, 8, "tim")).all()
    with pytest.raises(ValueError, match="linear' or 'tim"):
        temporal.resample(clip, 4, "cubic")


def translating_clip(amplitude: float, frames: int = 40, side: int = 128) -> np.ndarray:
    """Smooth texture moving horizontally by amplitude * sin(2 pi t / 20) px (2 cycles)."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (side, side)).astype(np.float32), (0, 0), 6)
    texture = cv2.normalize(texture, None, 30, 220, cv2.NORM_MINMAX)
    out = []
    for t in range(frames):
        shift = amplitude * np.sin(2 * np.pi * 2 * t / frames)
        matrix = np.float32([[1, 0, shift], [0, 1, 0]])
        out.append(cv2.warpAffine(texture, matrix, (side, side), borderMode=cv2.BORDER_REFLECT))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def displacement(a: np.ndarray, b: np.ndarray) -> float:
    """Horizontal shift from a to b (ECC registration), away from the border."""
    inner = (slice(24, -24), slice(24, -24))
    return -faces.register_to(a[inner], b[inner], "translation")[0, 2]


def test_magnification_enlarges_a_small_motion_about_alpha_times():
    clip = translating_clip(amplitude=1.0)
    peak, trough = 5, 15  # sin = +1 and -1 for 2 cycles over 40 frames
    before = displacement(clip[trough], clip[peak])
    out = magnify.magnify(clip, fps=40.0, alpha=5.0, low_hz=1.0, high_hz=4.0)
    after = displacement(out[trough], out[peak])
    assert out.shape == clip.shape and out.dtype == np.uint8
    assert before == pytest.approx(2.0, abs=0.1)
    assert 3.0 * before < after < 7.0 * before  # (1 + alpha) = 6 for the amplified levels
    unchanged = magnify.magnify(clip, fps=40.0, alpha=0.0)
    assert np.abs(unchanged.astype(int) - clip).max() <= 1


def test_magnification_ignores_motion_outside_the_band_and_handles_colour():
    clip = translating_clip(amplitude=1.0)  # 2 Hz at 40 fps
    out = magnify.magnify(clip, fps=40.0, alpha=10.0, low_hz=6.0, high_hz=10.0)
    assert np.abs(out.astype(int) - clip).mean() < 1.0
    colour = np.repeat(clip[..., None], 3, axis=3)
    for temporal_filter in ("ideal", "butterworth"):
        for pyramid in ("laplacian", "gaussian"):
            out = magnify.magnify(
                colour, 40.0, 5.0, 1.0, 4.0, temporal_filter=temporal_filter, pyramid=pyramid
            )
            assert out.shape == colour.shape and out.dtype == np.uint8


def test_level_gains_follow_the_wavelength_bound():
    gains = magnify.level_gains(6, 256, 256, alpha=10.0, lambda_c=16.0)
    assert gains[0] == 0.0 and gains[-1] == 0.0  # finest and coarsest bands left alone
    assert all(0 < g <= 10.0 for g in gains[1:-1])
    assert gains[1] < gains[2]  # fine bands attenuated below alpha
    assert min(magnify.level_gains(6, 256, 256, alpha=0.5, lambda_c=16.0)) == 0.0  # never < 0
    assert magnify.max_levels(128, 96) == 4
