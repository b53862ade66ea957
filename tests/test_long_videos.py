"""Synthetic long videos: planted events where the truth says, distractors present,
determinism, and the mp4 / frame-folder writers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from microexpr.synth.long_videos import (
    LongVideo,
    generate_long_videos,
    long_video_truth,
    write_long_video,
)

SMALL = {"seconds": 4.0, "fps": 30.0, "size": 96, "micro": 2, "macro": 1}


def _changes(video: LongVideo) -> np.ndarray:
    """Mean absolute change from frame t to t+1, per t."""
    frames = np.array(video.frames, np.float32)
    return np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))


def _inside_events(video: LongVideo) -> np.ndarray:
    """True for each frame pair (t, t+1) that touches a frame of an event."""
    touched = np.zeros(len(video.frames) - 1, bool)
    for e in video.events:
        touched[max(0, e.onset - 1) : e.offset + 1] = True
    return touched


@pytest.fixture(scope="module")
def clean() -> LongVideo:
    return generate_long_videos(1, 1, distractors=(), seed=3, **SMALL)[0]


def test_planted_motion_is_only_inside_the_truth_events(clean):
    changes = _changes(clean)
    inside = _inside_events(clean)
    assert [e.type for e in clean.events].count("micro") == 2
    assert [e.type for e in clean.events].count("macro") == 1
    assert np.all(changes[~inside] == 0)
    for e in clean.events:
        assert changes[max(0, e.onset - 1) : e.offset + 1].max() > 0.01, e
        span = clean.planted[e.onset : e.offset + 1]
        assert e.onset + int(np.argmax(span)) == e.apex  # apex = largest planted displacement


def test_events_do_not_overlap_and_have_micro_and_macro_durations():
    for video in generate_long_videos(3, 2, seconds=10.0, size=64, micro=4, macro=2, seed=1):
        events = video.events
        assert [e.onset for e in events] == sorted(e.onset for e in events)
        for a, b in zip(events, events[1:], strict=False):
            assert a.offset < b.onset
        for first, last in video.blinks:
            assert all(last < e.onset or first > e.offset for e in events)
        for e in events:
            seconds = (e.offset - e.onset + 1) / video.fps
            assert e.onset < e.apex < e.offset
            if e.type == "micro":
                assert seconds <= 1 / 3 + 1e-9
            else:
                assert 0.5 < seconds <= 4.0
        macro_peak = max(video.planted[e.apex] for e in events if e.type == "macro")
        micro_peak = max(video.planted[e.apex] for e in events if e.type == "micro")
        assert macro_peak > micro_peak


def test_same_seed_same_video_other_seed_other_video():
    a = generate_long_videos(1, 1, seed=5, **SMALL)[0]
    b = generate_long_videos(1, 1, seed=5, **SMALL)[0]
    c = generate_long_videos(1, 1, seed=6, **SMALL)[0]
    assert a.events == b.events and a.blinks == b.blinks
    assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames, strict=True))
    assert a.events != c.events


def test_a_video_does_not_change_when_more_are_asked_for():
    one = generate_long_videos(1, 1, seed=2, **SMALL)[0]
    more = generate_long_videos(2, 2, seed=2, **SMALL)
    assert more[0].name == one.name == "s01_v01"
    assert more[0].events == one.events
    assert np.array_equal(more[0].frames[40], one.frames[40])
    assert [v.name for v in more] == ["s01_v01", "s01_v02", "s02_v01", "s02_v02"]


def _only(distractor: str, **more) -> LongVideo:
    return generate_long_videos(1, 1, distractors=(distractor,), seed=3, **{**SMALL, **more})[0]


def test_blinks_move_the_eyelids_between_events():
    video = _only("blink", seconds=12.0)
    assert video.blinks
    marks = video.landmarks
    x0, y0 = np.floor(marks[36:48].min(0)).astype(int) - 3
    x1, y1 = np.ceil(marks[36:48].max(0)).astype(int) + 3
    first, last = video.blinks[0]
    change = np.abs(video.frames[(first + last) // 2].astype(np.float32) - video.frames[first - 1])
    eyes = np.zeros(change.shape[:2], bool)
    eyes[y0:y1, x0:x1] = True
    assert change[eyes].mean() > 0.5
    assert change[~eyes].mean() < 0.05 * change[eyes].mean()


def test_flicker_changes_the_global_brightness():
    video = _only("flicker")
    means = np.array([f.mean() for f in video.frames])
    assert means.max() - means.min() > 0.03 * means.mean()


def test_drift_moves_the_whole_face():
    video = _only("drift", seconds=8.0)
    gray = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).astype(np.float32) for f in video.frames]
    shifts = [np.hypot(*cv2.phaseCorrelate(gray[0], g)[0]) for g in gray[::10]]
    assert max(shifts) > 0.5


def test_noise_changes_every_frame(clean):
    video = _only("noise")
    changes = _changes(video)
    assert video.events == clean.events
    assert np.all(changes > 0.5)


def test_truth_table_has_megc_columns(clean):
    table = long_video_truth([clean])
    assert list(table.columns) == ["subject", "video", "onset", "apex", "offset", "type", "emotion"]
    assert table["video"].tolist() == ["s01_v01"] * 3
    assert table["onset"].tolist() == [e.onset for e in clean.events]


def test_too_many_events_and_unknown_distractors_are_refused():
    with pytest.raises(ValueError, match="need at least .* s with their gaps"):
        generate_long_videos(1, 1, seconds=2.0, size=32, micro=5, macro=2)
    with pytest.raises(ValueError, match="unknown distractor"):
        generate_long_videos(1, 1, size=32, distractors=("sneeze",))


def test_written_mp4_and_frame_folder_hold_every_frame(clean, tmp_path):
    mp4 = write_long_video(clean, tmp_path / "v.mp4")
    capture = cv2.VideoCapture(str(mp4))
    count = 0
    while capture.read()[0]:
        count += 1
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(30.0)
    capture.release()
    assert count == len(clean.frames)
    folder = write_long_video(clean, tmp_path / "frames", kind="frames")
    names = sorted(p.name for p in folder.iterdir())
    assert names[0] == "img00001.jpg" and len(names) == len(clean.frames)
    first = cv2.imread(str(folder / "img00001.jpg"))
    assert np.abs(first.astype(int) - clean.frames[0]).mean() < 3
    with pytest.raises(ValueError, match="kind"):
        write_long_video(clean, tmp_path / "x", kind="gif")
