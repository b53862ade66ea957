"""Optical flow wrappers, strain, and the u/v/strain encodings (preprocess.flow)."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
from test_preprocess_faces import astronaut_face, astronaut_landmarks

from microexpr.preprocess import flow
from microexpr.spec import FLOW_IMAGE_CHANNELS


def planted_pair(shift: np.ndarray, sigma: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut face and a copy whose lip corners (landmarks 48, 54) moved by ``shift``
    (x, y, image coordinates) and its mirror image: a Gaussian bump of displacement at each
    corner, applied by backward mapping, out(x) = in(x - d(x))."""
    face, marks = astronaut_face(), astronaut_landmarks()
    h, w = face.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    field = np.zeros((h, w, 2), np.float32)
    for index, direction in ((48, np.array([-1.0, 1.0])), (54, np.array([1.0, 1.0]))):
        cx, cy = marks[index]
        bump = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
        field += bump[..., None] * (shift * direction).astype(np.float32)
    moved = cv2.remap(face, xs - field[..., 0], ys - field[..., 1], cv2.INTER_CUBIC)
    return face, moved


def test_lip_corner_pull_gives_flow_up_and_outwards_at_the_corners():
    # AU12: corners pulled up (negative y) and outwards (image-left corner to the left).
    onset, apex = planted_pair(np.array([1.5, -1.5]))
    field = flow.tvl1(onset, apex)
    marks = astronaut_landmarks()
    for index, outward in ((48, -1.0), (54, 1.0)):
        x, y = np.round(marks[index]).astype(int)
        u, v = field[y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 2).mean(axis=0)
        assert u * outward > 0.5, f"landmark {index}: u={u:.2f} not outwards"
        assert v < -0.5, f"landmark {index}: v={v:.2f} not upwards"
    # Far from the mouth nothing moves.
    assert np.abs(field[10:30, 10:30]).max() < 0.3


def test_tvl1_wrapper_equals_opencv_on_the_same_pair():
    onset, apex = planted_pair(np.array([1.0, -1.0]))
    gray = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in (onset, apex)]
    expected = cv2.optflow.DualTVL1OpticalFlow_create().calc(gray[0], gray[1], None)
    np.testing.assert_array_equal(flow.tvl1(onset, apex), expected)
    tuned = cv2.optflow.DualTVL1OpticalFlow_create(nscales=3, warps=3)
    np.testing.assert_array_equal(
        flow.tvl1(*gray, nscales=3, warps=3), tuned.calc(gray[0], gray[1], None)
    )
    expected = cv2.calcOpticalFlowFarneback(gray[0], gray[1], None, 0.5, 3, 15, 3, 5, 1.2, 0)
    np.testing.assert_array_equal(flow.compute_flow(onset, apex, "farneback"), expected)
    with pytest.raises(KeyError, match="unknown flow method"):
        flow.compute_flow(onset, apex, "lucas")


def test_strain_matches_the_analytic_strain_of_a_quadratic_field():
    # u = a x^2 + b x y, v = c y^2 + d x: central differences are exact for quadratics.
    a, b, c, d = 0.01, -0.02, 0.015, 0.3
    ys, xs = np.mgrid[0:40, 0:50].astype(np.float64)
    field = np.dstack([a * xs**2 + b * xs * ys, c * ys**2 + d * xs])
    u_x, u_y, v_x, v_y = 2 * a * xs + b * ys, b * xs, d, 2 * c * ys
    expected = np.sqrt(u_x**2 + v_y**2 + 0.5 * (u_y + v_x) ** 2)
    strain = flow.optical_strain(field)
    np.testing.assert_allclose(strain[1:-1, 1:-1], expected[1:-1, 1:-1], rtol=1e-5, atol=1e-6)


def test_strain_matches_finite_differences_on_a_random_field():
    rng = np.random.default_rng(1)
    field = cv2.GaussianBlur(rng.normal(size=(30, 30, 2)).astype(np.float32), (0, 0), 2)
    strain = flow.optical_strain(field)
    u, v = field[..., 0].astype(np.float64), field[..., 1].astype(np.float64)
    for y, x in rng.integers(1, 29, size=(20, 2)):
        u_x, v_x = (u[y, x + 1] - u[y, x - 1]) / 2, (v[y, x + 1] - v[y, x - 1]) / 2
        u_y, v_y = (u[y + 1, x] - u[y - 1, x]) / 2, (v[y + 1, x] - v[y - 1, x]) / 2
        expected = np.sqrt(u_x**2 + v_y**2 + 0.5 * (u_y + v_x) ** 2)
        assert strain[y, x] == pytest.approx(expected, rel=1e-4)


def test_flow_image_channels_are_strain_v_u_each_spanning_0_to_255():
    ys, xs = np.mgrid[0:56, 0:56].astype(np.float32)
    # u grows to the right, v shrinks downwards, strain sqrt((0.004 x)^2 + 0.03^2) grows with x
    field = np.dstack([0.002 * xs**2, -0.03 * ys])
    image = flow.encode_flow_image(field, size=28)
    assert image.shape == (28, 28, 3) and image.dtype == np.uint8
    assert FLOW_IMAGE_CHANNELS == ("strain", "v", "u")  # OpenCV's B, G, R
    for channel in range(3):
        assert image[..., channel].min() == 0 and image[..., channel].max() == 255
    assert np.all(np.diff(image[..., 2].astype(int), axis=1) >= 0)  # u: left to right
    assert np.all(np.diff(image[..., 1].astype(int), axis=0) <= 0)  # v: top to bottom
    assert np.all(np.diff(image[..., 0].astype(int), axis=1) >= 0)  # strain: left to right
    assert np.all(flow.minmax_uint8(np.full((4, 4), 3.0)) == 0)  # constant channel
    onset, apex = planted_pair(np.array([1.5, -1.5]))
    made = flow.flow_image(onset, apex, size=28)
    assert [made[..., c].min() for c in range(3)] == [0, 0, 0]
    assert [made[..., c].max() for c in range(3)] == [255, 255, 255]


def _strain_of(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Optical strain magnitude of a (u, v) pair by finite differences (any scale)."""
    exy = 0.5 * (np.gradient(u, axis=0) + np.gradient(v, axis=1))
    return np.sqrt(np.gradient(u, axis=1) ** 2 + np.gradient(v, axis=0) ** 2 + 2 * exy**2)


def test_composite_flow_images_hold_strain_v_u_as_opencv_reads_them(composite_root):
    """The published images store u, v, strain as R, G, B (the folder's ``norm_u_v_os``),
    not B, G, R: the channel FLOW_IMAGE_CHANNELS names strain is the one that matches the
    strain of the other two, and the project's encoder writes the same order."""
    files = sorted((composite_root / "STSNet_whole_norm_u_v_os").glob("*.png"))
    assert len(files) == 442
    s, v, u = (FLOW_IMAGE_CHANNELS.index(name) for name in ("strain", "v", "u"))
    named, best_other = [], []
    for path in files:
        image = cv2.imread(str(path)).astype(np.float64)

        def fit(iu, iv, istrain, image=image):
            made = _strain_of(image[..., iu], image[..., iv]).ravel()
            return np.corrcoef(made, image[..., istrain].ravel())[0, 1]

        named.append(fit(u, v, s))
        others = [p for p in itertools.permutations(range(3)) if p[2] != s]
        best_other.append(max(fit(*p) for p in others))
    named, best_other = np.array(named), np.array(best_other)
    assert np.median(named) > 0.7 and np.median(best_other) < 0.2
    assert (named > best_other).mean() > 0.95
    medians = np.array([np.median(cv2.imread(str(p))[..., s]) for p in files])
    assert (medians < 40).mean() > 0.9  # a non-negative magnitude, mostly near 0


def test_flow_sequence_from_onset_and_from_previous_frame():
    onset, apex = planted_pair(np.array([1.0, -1.0]))
    frames = [onset, apex, apex]
    from_onset = flow.flow_sequence(frames, "onset", "farneback", size=32)
    assert from_onset.shape == (2, 32, 32, 3) and from_onset.dtype == np.float32
    np.testing.assert_allclose(from_onset[0], from_onset[1])  # same pair twice
    velocity = flow.flow_sequence(frames, "previous", "farneback")
    assert np.abs(velocity[1, ..., :2]).mean() < 0.01  # no change between the last two
    with pytest.raises(ValueError, match="at least 2"):
        flow.flow_sequence([onset], "onset")
