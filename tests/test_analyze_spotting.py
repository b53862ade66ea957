"""Training-free spotting in long videos: the face track, the interval rules on signals made
by hand, and the default spotter on a synthetic long video with planted micro-expressions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from microexpr.analyze import SPOTTERS, Analyzer, AnalyzeSettings, MotionSignal, settings_from
from microexpr.analyze.spotting import find_intervals, noise_units, region_masks, spot
from microexpr.analyze.track import track_face
from microexpr.errors import DataError
from microexpr.evaluate.spotting import spotting_scores
from microexpr.synth.long_videos import generate_long_videos, long_video_truth

FPS = 30.0


@pytest.fixture(scope="module")
def long_video():
    """4 s at 30 fps, 160 x 160: two planted micro-expressions, sensor noise."""
    return generate_long_videos(
        1, 1, seconds=4.0, fps=FPS, size=160, micro=2, macro=0, distractors=("noise",), seed=3
    )[0]


@pytest.fixture(scope="module")
def track(long_video):
    return track_face(long_video.frames, long_video.fps)


def signal_of(*scores: np.ndarray, windows=(15,)) -> MotionSignal:
    return MotionSignal(tuple(windows), np.array(scores, float), {})


# --- the face track ------------------------------------------------------------------------


def test_the_track_holds_an_aligned_face_in_every_frame(track, long_video):
    assert len(track) == len(long_video.frames) and track.found.all() and not track.lost.any()
    assert track.faces.shape == (len(track), 112, 112) and track.faces.dtype == np.uint8
    assert track.confidence.min() > 0.8
    # brightness-normalised: every face has the same mean inside the face
    means = [f[40:90, 30:80].mean() for f in track.faces]
    assert np.ptp(means) < 10


def test_landmarks_stay_in_the_original_frames_pixels(long_video):
    big = [np.repeat(np.repeat(f, 2, axis=0), 2, axis=1) for f in long_video.frames[:8]]
    small = track_face(long_video.frames[:8], FPS)
    large = track_face(big, FPS, AnalyzeSettings(track_side=160))  # tracked at 160 px
    assert large.frame_size == (320, 320)
    assert np.abs(large.landmarks / 2 - small.landmarks).mean() < 1.5


def test_a_face_lost_mid_video_is_flagged_and_found_again(long_video):
    frames = list(long_video.frames[:60])
    for i in range(20, 30):
        frames[i] = np.full_like(frames[i], 127)
    track = track_face(frames, FPS)
    assert track.found[:20].all() and not track.found[20:30].any()
    assert track.lost[20] and track.lost.sum() == 1
    assert track.found[36:].all()  # re-detected within redetect_every_s
    assert np.isnan(track.landmarks[25]).all() and track.confidence[25] == 0
    assert "no face tracked in" in track.notes[0]


def test_a_video_without_a_face_is_one_error():
    frames = [np.full((120, 160, 3), 90, np.uint8)] * 10
    with pytest.raises(DataError, match="blank.mp4: no face found in any of its 10 frames"):
        track_face(frames, FPS, source="blank.mp4")


# --- intervals from a signal -----------------------------------------------------------------


def test_noise_units_measure_distance_from_the_usual_level():
    rng = np.random.default_rng(0)
    raw = rng.normal(3.0, 0.5, 2000)
    raw[100] = 8.0
    z = noise_units(raw)
    assert abs(np.median(z)) < 0.05 and 9 < z[100] < 11
    assert np.isnan(noise_units(np.array([np.nan, 1.0, 2.0]))[0])


def test_an_interval_runs_while_the_score_stays_up_and_ends_on_still_frames():
    score = np.zeros(100)
    score[40:45] = [3, 6, 9, 5, 2.5]  # above extend (2) on 40-44, above threshold on 41-43
    score[70] = 3.5  # above extend only: no interval
    (interval,) = find_intervals(signal_of(score), FPS, AnalyzeSettings())
    assert (interval.onset, interval.apex, interval.offset) == (39, 42, 45)
    assert interval.score == 9 and interval.type == "micro" and interval.window == 15


def test_the_type_follows_the_duration():
    score = np.zeros(200)
    score[20:33] = 8  # 15 frames with the still ends: 0.5 s, micro
    score[100:115] = 8  # 17 frames: macro
    kinds = [i.type for i in find_intervals(signal_of(score), FPS, AnalyzeSettings())]
    assert kinds == ["micro", "macro"]
    longest = AnalyzeSettings(max_s=0.55)
    assert len(find_intervals(signal_of(score), FPS, longest)) == 1


def test_frames_without_a_score_split_an_interval():
    score = np.zeros(60)
    score[20:30] = 8
    score[25] = np.nan
    found = find_intervals(signal_of(score), FPS, AnalyzeSettings())
    assert [(i.onset, i.offset) for i in found] == [(19, 25), (25, 30)]


def test_the_longer_window_wins_an_overlap():
    long, short = np.zeros(100), np.zeros(100)
    long[30:50] = 6
    short[35:40] = 20  # inside the long one: dropped
    short[80:83] = 7  # on its own: kept
    found = find_intervals(signal_of(long, short, windows=(60, 15)), FPS, AnalyzeSettings())
    assert [(i.onset, i.window) for i in found] == [(29, 60), (79, 15)]


def test_an_interval_must_start_and_end_at_rest():
    score = np.zeros(100)
    score[40:43] = 6
    before, after = np.zeros((1, 100)), np.zeros((1, 100))
    signal = MotionSignal((15,), score[None], {}, before, after)
    assert len(find_intervals(signal, FPS, AnalyzeSettings())) == 1
    before[0, 39] = 7  # the face moved more just before the onset than at the apex
    assert find_intervals(signal, FPS, AnalyzeSettings()) == []


def test_settings_are_checked_with_the_key_named():
    assert settings_from(["analyze.threshold=5"]).threshold == 5
    with pytest.raises(ValueError, match="analyze.KEY"):
        settings_from(["train.epochs=3"])
    with pytest.raises(ValueError, match="thresold"):
        settings_from(["analyze.thresold=5"])
    with pytest.raises(ValueError, match="analyze.method: unknown spotter 'softnet'"):
        Analyzer(method="softnet")
    with pytest.raises(ValueError, match="analyze.regions: unknown"):
        Analyzer(regions=("cheek",))
    assert {"region_flow", "region_difference", "frame_difference"} <= set(SPOTTERS)
    assert AnalyzeSettings().windows(30.0, 300) == (60, 15)
    assert AnalyzeSettings().windows(30.0, 120) == (30, 15)  # halved for a short video
    assert AnalyzeSettings().windows(30.0, 50) == (15,)


def test_regions_leave_out_the_eyes(track):
    masks = region_masks(track, AnalyzeSettings().regions)
    assert set(masks) == set(AnalyzeSettings().regions)
    for x, y in track.reference[[37, 38, 43, 44]]:
        assert not any(m[int(y), int(x)] for m in masks.values())
    with pytest.raises(ValueError, match="unknown.*'cheek'"):
        region_masks(track, ("cheek",))


# --- the default spotter ---------------------------------------------------------------------


def test_region_flow_finds_the_planted_micro_expressions(track, long_video):
    signal, intervals = spot(track, AnalyzeSettings())
    assert signal.scores.shape == (len(signal.windows), len(track))
    pred = pd.DataFrame(
        [
            {"subject": long_video.subject_id, "video": long_video.name, "onset": i.onset,
             "offset": i.offset, "type": i.type, "score": i.score}
            for i in intervals
        ]
    )  # fmt: skip
    table = spotting_scores(pred, long_video_truth([long_video])).table
    assert table.loc["micro", "tp"] == 2 and table.loc["micro", "fp"] == 0
    for event, interval in zip(long_video.events, intervals, strict=True):
        assert event.onset <= interval.apex <= event.offset
