"""Synthetic clips: ground truth is exact, motion is where the AU table says, seeds reproduce."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from microexpr.labels import normalise_emotion
from microexpr.synth import generator
from microexpr.synth.generator import EMOTION_AUS, generate_clips, synthetic_flow_images

REAL_FACES = Path(__file__).resolve().parents[1] / "../shared/data/megc2019_composite"
REAL_FACES = REAL_FACES / "combined_datasets_whole"
STILL = {"noise": 0.0, "drift": 0.0, "blink_prob": 0.0, "flicker": 0.0}


@pytest.fixture(scope="module")
def clips() -> list[generator.SyntheticClip]:
    return generate_clips(3, 5, size=64, seed=7)


def test_clip_fields_are_consistent(clips):
    assert len(clips) == 15
    assert sorted({c.subject for c in clips}) == [1, 2, 3]
    for clip in clips:
        assert 0 <= clip.onset < clip.apex < clip.offset < len(clip.frames)
        assert clip.emotion == normalise_emotion(clip.emotion)
        assert clip.aus in EMOTION_AUS[clip.emotion]
        assert clip.fps == 200.0
        assert clip.landmarks.shape == (68, 2)
        assert (clip.landmarks >= 0).all() and (clip.landmarks < 64).all()
        assert all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in clip.frames)
        assert 0.3 <= clip.planted.max() <= 3.0 + 1e-5


def test_emotions_are_balanced_per_subject(clips):
    for subject in (1, 2, 3):
        emotions = [c.emotion for c in clips if c.subject == subject]
        assert sorted(emotions) == sorted(generator.CASME2_EMOTIONS)


def test_same_seed_same_clips_other_seed_other_clips(clips):
    again = generate_clips(3, 5, size=64, seed=7)
    assert [(c.emotion, c.aus, c.onset, c.apex, c.offset) for c in again] == [
        (c.emotion, c.aus, c.onset, c.apex, c.offset) for c in clips
    ]
    assert all(
        np.array_equal(a, b)
        for x, y in zip(again, clips, strict=True)
        for a, b in zip(x.frames, y.frames, strict=True)
    )
    other = generate_clips(3, 5, size=64, seed=8)
    assert not np.array_equal(other[0].frames[0], clips[0].frames[0])


def test_fewer_clips_leave_existing_ones_unchanged(clips):
    first = generate_clips(1, 5, size=64, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(first[0].frames, clips[0].frames, strict=True))


def test_landmark_indices_keep_their_meaning_in_mirrored_subjects():
    for clip in generate_clips(8, 1, size=48, seed=0):
        marks = clip.landmarks
        assert marks[36, 0] < marks[45, 0] and marks[48, 0] < marks[54, 0]  # image left first
        assert marks[19, 1] < marks[37, 1] < marks[51, 1] < marks[8, 1]  # brow, eye, lip, chin


def test_subjects_are_different_faces(clips):
    neutral = {c.subject: c.frames[0].astype(float) for c in clips}
    assert np.abs(neutral[1] - neutral[2]).mean() > 10
    assert np.abs(clips[0].landmarks - clips[-1].landmarks).max() > 1


def test_annotated_apex_is_frame_of_max_planted_displacement():
    for clip in generate_clips(2, 5, size=64, seed=3, **STILL):
        assert int(np.argmax(clip.planted)) == clip.apex
        assert clip.planted[clip.onset] == 0 and clip.planted[clip.offset] == 0
        # The image itself moves most at the apex: pixel change from the onset frame peaks there.
        onset = clip.frames[clip.onset].astype(float)
        change = [np.abs(f.astype(float) - onset).mean() for f in clip.frames]
        assert abs(int(np.argmax(change)) - clip.apex) <= 1


def test_lip_corner_puller_moves_corners_up_and_outwards():
    face = generate_clips(1, 1, size=96, seed=0, **STILL)[0]
    field = generator.au_field(face.landmarks, ("12",), 96)
    for corner, outward_sign in ((48, -1), (54, 1)):
        x, y = np.round(face.landmarks[corner]).astype(int)
        dx, dy = field[y, x]
        assert dy < -0.3 and np.sign(dx) == outward_sign
    assert np.linalg.norm(field, axis=2).max() == pytest.approx(1.0)


def test_one_sided_dimpler_moves_only_the_subjects_right():
    face = generate_clips(1, 1, size=96, seed=0, **STILL)[0]
    field = np.linalg.norm(generator.au_field(face.landmarks, ("R14",), 96), axis=2)
    (xr, yr), (xl, yl) = np.round(face.landmarks[[48, 54]]).astype(int)
    assert field[yr, xr] > 0.5 and field[yl, xl] < 0.05


def test_planted_motion_is_seen_by_optical_flow_at_the_apex():
    clip = generate_clips(1, 1, size=96, seed=2, emotions=["happiness"], **STILL)[0]
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    gray = [cv2.cvtColor(clip.frames[i], cv2.COLOR_BGR2GRAY) for i in (clip.onset, clip.apex)]
    flow = tvl1.calc(gray[0], gray[1], None)
    corners = np.round(clip.landmarks[[48, 54]]).astype(int)
    up_at_corners = [flow[cy, cx, 1] for cx, cy in corners]
    assert all(v < -0.2 for v in up_at_corners)
    assert np.median(np.abs(flow)) < 0.05  # the rest of the frame stays still


def test_fixed_frame_count_and_fps():
    clips = generate_clips(1, 2, size=48, seed=1, fps=100.0, n_frames=12)
    assert all(len(c.frames) == 12 and c.fps == 100.0 for c in clips)
    assert all(0 <= c.onset < c.apex < c.offset <= 11 for c in clips)


def test_nuisances_change_frames_but_not_truth():
    still = generate_clips(1, 1, size=48, seed=4, **STILL)[0]
    busy = generate_clips(1, 1, size=48, seed=4, noise=2.0, drift=1.0, blink_prob=1.0, flicker=0.05)
    busy = busy[0]
    assert (busy.onset, busy.apex, busy.offset) == (still.onset, still.apex, still.offset)
    assert np.abs(busy.frames[-1].astype(float) - still.frames[-1]).mean() > 1


def test_unknown_emotion_is_refused():
    with pytest.raises(ValueError, match="no AU table entry"):
        generate_clips(1, 1, emotions=["boredom"])


def test_flow_images_look_like_the_composite_ones():
    items = synthetic_flow_images(2, 3, seed=0)
    assert [i[0] for i in items] == ["s01"] * 3 + ["s02"] * 3
    assert len({i[1] for i in items}) == 6
    assert {i[2] for i in items} == {"negative", "positive", "surprise"}
    for *_, image in items:
        assert image.shape == (28, 28, 3) and image.dtype == np.uint8
        assert (image.reshape(-1, 3).min(0) <= 5).all() and (
            image.reshape(-1, 3).max(0) >= 250
        ).all()


def test_face_folder_groups_files_by_person(tmp_path):
    photo = cv2.cvtColor(__import__("skimage").data.astronaut(), cv2.COLOR_RGB2BGR)
    for name in ("a_1.jpg", "a_2.jpg", "b_1.jpg"):
        cv2.imwrite(str(tmp_path / name), photo)
    assert [Path(p).name for p in generator.face_sources(tmp_path)] == ["a_1.jpg", "b_1.jpg"]
    with pytest.raises(FileNotFoundError):
        generator.face_sources(tmp_path / "missing")


@pytest.mark.skipif(not REAL_FACES.is_dir(), reason="real composite faces not present")
def test_real_faces_give_different_people():
    sources = generator.face_sources(REAL_FACES)
    assert len(sources) == 68
    clips = generate_clips(3, 1, size=64, seed=0, faces=REAL_FACES)
    assert len(clips) == 3
    assert np.abs(clips[0].frames[0].astype(float) - clips[1].frames[0]).mean() > 10


@pytest.mark.slow
def test_loso_learns_planted_motion_and_not_shuffled_labels():
    """The class signal is the planted motion: LOSO well above chance, at chance when shuffled."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    items = synthetic_flow_images(8, 9, seed=11)
    features = np.stack([image.reshape(-1) / 255.0 for *_, image in items])
    labels = np.array([label for _, _, label, _ in items])
    groups = np.array([subject for subject, *_ in items])

    def uf1(y: np.ndarray) -> float:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        predicted = cross_val_predict(model, features, y, groups=groups, cv=LeaveOneGroupOut())
        return f1_score(y, predicted, average="macro")

    rng = np.random.default_rng(0)
    assert uf1(labels) > 0.7
    assert np.mean([uf1(rng.permutation(labels)) for _ in range(3)]) < 0.45
