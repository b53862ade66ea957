"""Face detection, landmarks, alignment, crops and clip registration (preprocess.faces)."""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import pytest

from microexpr.preprocess import faces

COMPOSITE_FACES = (
    Path(__file__).resolve().parents[1]
    / "../shared/data/megc2019_composite/combined_datasets_whole"
)


@functools.cache
def astronaut_face() -> np.ndarray:
    """A 160x160 BGR crop around the face in scikit-image's astronaut photograph."""
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[40:200, 140:300].copy()


@functools.cache
def astronaut_landmarks() -> np.ndarray:
    marks = faces.detect_landmarks(astronaut_face())
    assert marks is not None
    return marks


def test_landmarks_found_on_a_face_and_not_on_a_blank_image():
    marks = astronaut_landmarks()
    assert marks.shape == (68, 2) and marks.dtype == np.float32
    # Anatomical order top to bottom, and the eyes on either side of the nose.
    assert marks[17:27, 1].mean() < marks[36:48, 1].mean() < marks[33, 1] < marks[48:68, 1].mean()
    assert marks[36:42, 0].mean() < marks[30, 0] < marks[42:48, 0].mean()
    assert faces.detect_landmarks(np.full((64, 64, 3), 128, np.uint8)) is None


def test_gray_and_bgr_inputs_give_the_same_landmarks():
    gray = cv2.cvtColor(astronaut_face(), cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(faces.detect_landmarks(gray), astronaut_landmarks())


def test_alignment_levels_the_eyes_at_the_requested_distance():
    rotated = cv2.warpAffine(
        astronaut_face(),
        cv2.getRotationMatrix2D((80, 80), 12, 1.0),
        (160, 160),
        borderMode=cv2.BORDER_REPLICATE,
    )
    marks = faces.detect_landmarks(rotated)
    image, aligned = faces.align_face(rotated, marks, size=128, eye_distance=0.4, eye_height=0.35)
    left, right = faces.eye_centres(aligned)
    assert image.shape == (128, 128, 3)
    assert abs(left[1] - right[1]) < 1e-3
    assert np.hypot(*(right - left)) == pytest.approx(0.4 * 128, abs=1e-3)
    assert (left + right)[0] / 2 == pytest.approx(64, abs=1e-3)
    assert (left + right)[1] / 2 == pytest.approx(0.35 * 128, abs=1e-3)


def test_crops_extend_past_the_border_and_centre_their_region():
    image, marks = astronaut_face(), astronaut_landmarks()
    box = (-20.0, -10.0, 60.0, 70.0)
    crop = faces.crop_box(image, box)
    assert crop.shape == (80, 80, 3)
    np.testing.assert_array_equal(crop[10:, 20:], image[:70, :60])
    mouth = faces.crop_region(image, marks, "mouth", margin=0.25, size=64)
    assert mouth.shape == (64, 64, 3)
    x0, y0, x1, y1 = faces.region_box(marks, "mouth")
    centre = marks[48:68].min(0) / 2 + marks[48:68].max(0) / 2
    assert (x0 + x1) / 2 == pytest.approx(centre[0]) and (y0 + y1) / 2 == pytest.approx(centre[1])
    with pytest.raises(KeyError, match="unknown region"):
        faces.region_box(marks, "ears")


def shifted(image: np.ndarray, dx: float, dy: float, angle: float = 0.0) -> np.ndarray:
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    matrix[:, 2] += (dx, dy)
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE)


def test_registration_recovers_a_small_rigid_motion():
    face = astronaut_face()
    moved = shifted(face, 2.5, -1.5, angle=2.0)
    matrix = faces.register_to(face, moved)
    back = faces.Alignment(matrix, (160, 160)).apply(moved)
    centre = (slice(30, 130), slice(30, 130))
    before = np.abs(moved[centre].astype(float) - face[centre]).mean()
    after = np.abs(back[centre].astype(float) - face[centre]).mean()
    assert after < before / 4
    dx, dy = faces.register_to(face, shifted(face, 1.3, 0.6), "translation")[:, 2]
    assert (dx, dy) == pytest.approx((-1.3, -0.6), abs=0.05)


def test_fourier_translation_moves_content_without_smoothing_it():
    image = astronaut_face()[..., 1].astype(np.float32)
    moved = faces.fourier_translate(image, 3, 2)
    np.testing.assert_allclose(
        moved[8:-8, 8:-8], np.roll(image, (2, 3), (0, 1))[8:-8, 8:-8], atol=1e-3
    )
    # Sub-pixel: agrees with a Lanczos shift on a smooth image (away from the border) ...
    rng = np.random.default_rng(0)
    smooth = cv2.GaussianBlur(rng.uniform(0, 1000, (96, 96)).astype(np.float32), (0, 0), 4)
    lanczos = cv2.warpAffine(
        smooth,
        np.float32([[1, 0, 0.37], [0, 1, -0.81]]),
        (96, 96),
        flags=cv2.INTER_LANCZOS4,
        borderMode=cv2.BORDER_REFLECT,
    )
    span = float(smooth.max() - smooth.min())
    error = np.abs(faces.fourier_translate(smooth, 0.37, -0.81) - lanczos)[16:-16, 16:-16]
    assert error.max() < 0.01 * span
    # ... and, unlike bilinear resampling, keeps the noise level whatever the fraction.
    noise = rng.normal(0, 10, (96, 96)).astype(np.float32)
    half = faces.fourier_translate(noise, 0.5, 0.5)[16:-16, 16:-16]
    assert half.std() == pytest.approx(10, rel=0.1)
    bilinear = cv2.warpAffine(noise, np.float32([[1, 0, 0.5], [0, 1, 0.5]]), (96, 96))
    assert bilinear[16:-16, 16:-16].std() < 6


def test_stabilise_removes_drift_and_keeps_the_reference():
    face = astronaut_face()
    clip = [face, shifted(face, 0.8, 0.3), shifted(face, 1.6, 0.6)]
    for motion in ("euclidean", "translation"):
        out = faces.stabilise(clip, reference=0, motion=motion)
        np.testing.assert_array_equal(out[0], face)
        centre = (slice(30, 130), slice(30, 130))
        before = np.abs(clip[2][centre].astype(float) - face[centre]).mean()
        assert np.abs(out[2][centre].astype(float) - face[centre]).mean() < before / 2
    with pytest.raises(ValueError, match="motion"):
        faces.stabilise(clip, motion="affine")


def test_track_landmarks_hold_and_per_frame():
    face = astronaut_face()
    clip = [face, shifted(face, 3, 0)]
    held = faces.track_landmarks(clip, mode="hold")
    np.testing.assert_array_equal(held[0], held[1])
    followed = faces.track_landmarks(clip, mode="per_frame")
    assert np.median(followed[1, :, 0] - followed[0, :, 0]) == pytest.approx(3, abs=1.0)
    assert faces.track_landmarks([np.zeros((48, 48), np.uint8)]) is None


@pytest.mark.slow
@pytest.mark.skipif(not COMPOSITE_FACES.is_dir(), reason="real composite faces not present")
def test_landmarks_on_at_least_95_percent_of_the_composite_faces():
    files = sorted(COMPOSITE_FACES.glob("*.jpg"))
    assert len(files) == 442
    found = sum(faces.detect_landmarks(cv2.imread(str(f))) is not None for f in files)
    assert found >= 0.95 * len(files)
