"""Apex spotting (seed 002's method and the flow baseline) on synthetic clips."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from microexpr.preprocess import spotting
from microexpr.synth import SyntheticClip, generate_clips


@functools.cache
def clips(drift: float) -> list[SyntheticClip]:
    """Happiness and surprise clips (AUs inside the 10 regions), 96 px, noise 1."""
    return generate_clips(
        2,
        2,
        size=96,
        seed=3,
        emotions=("happiness", "surprise"),
        drift=drift,
        noise=1.0,
        amplitude=(1.5, 3.0),
    )


def test_ten_regions_follow_the_landmarks():
    clip = clips(0.0)[0]
    regions = spotting.spotting_regions(clip.landmarks)
    assert len(regions) == 10
    for x0, y0, x1, y1 in regions.values():
        assert x1 > x0 and y1 > y0
    x0, y0, x1, y1 = regions["right_lip_corner"]
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == pytest.approx(tuple(clip.landmarks[48]), abs=1e-4)
    width = (clip.landmarks[54, 0] - clip.landmarks[48, 0]) / 2
    assert x1 - x0 == pytest.approx(width, abs=1e-4)
    assert regions["centre_brow"][3] < regions["chin"][1]  # brows above the chin


@pytest.mark.parametrize("drift", [0.0, 1.5])
def test_apex_found_within_two_frames_with_and_without_drift(drift):
    for clip in clips(drift):
        apex = spotting.find_apex(clip.frames, clip.onset, clip.offset, clip.landmarks)
        assert clip.onset <= apex <= clip.offset
        assert abs(apex - clip.apex) <= 2, (clip.aus, apex, clip.apex)


def test_scores_peak_near_the_apex_and_are_undefined_outside_the_interval():
    clip = clips(0.0)[1]
    scores = spotting.apex_scores(clip.frames, clip.onset, clip.offset, clip.landmarks)
    inside = scores[clip.onset + 3 : clip.offset - 2]
    assert np.isfinite(inside).all()
    assert np.isnan(scores[clip.offset + 1 :]).all()
    # Neutral frames score about 2 (both ratios about 1); the apex scores clearly more.
    assert scores[clip.onset + 3] < 2.2 < scores[clip.apex]


def test_published_denominator_lags_and_the_flow_baseline_agrees():
    clip = clips(0.0)[0]
    args = (clip.frames, clip.onset, clip.offset, clip.landmarks)
    published = spotting.find_apex(*args, denominator="previous", blur=0.0)
    assert 0 <= published - clip.apex <= 3  # |F_i - F_(i-3)| vanishes after the apex
    assert abs(spotting.find_apex_flow(*args) - clip.apex) <= 3


def test_landmarks_detected_when_not_given_and_bad_intervals_rejected():
    clip = clips(0.0)[0]
    apex = spotting.find_apex(clip.frames, clip.onset, clip.offset)
    assert abs(apex - clip.apex) <= 3
    with pytest.raises(ValueError, match="onset <= offset"):
        spotting.find_apex(clip.frames, 5, 2)
    short = clip.frames[:3]
    assert spotting.find_apex(short, 0, 2, clip.landmarks) == 1  # too short: the middle
