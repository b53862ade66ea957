"""The clip pipeline of the 3-D models: fixed length, seed S3's x10 copies, flow clips."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from microexpr.config import ClipConfig, ExperimentConfig
from microexpr.inputs import (
    ClipDataset,
    clip_variants,
    fixed_length,
    model_inputs,
    normalise_flow,
    transform_clip,
)
from microexpr.preprocess.frames import coded_apex, span_of
from microexpr.recipe import resolve
from microexpr.samples import Sample
from microexpr.spec import InputSpec

STEP = 8


def spec(num_frames: int, scaling: str = "raw", kind: str = "clip") -> InputSpec:
    return InputSpec(kind=kind, size=12, in_chans=3, scaling=scaling, num_frames=num_frames)


def clip_data(items, targets, num_frames, train, cfg=None, apexes=None, scaling="raw", kind="clip"):
    cfg = cfg or ClipConfig()
    return ClipDataset(
        items, targets, spec(num_frames, scaling, kind), cfg, "linear", train, apexes
    )


def ramp_clip(frames: int, size: int = 12, chans: int = 3) -> np.ndarray:
    """Frame t is filled with the value STEP t, so a frame tells where it came from."""
    return np.stack([np.full((size, size, chans), STEP * t, np.uint8) for t in range(frames)])


def test_seed_variants_are_ten_copies():
    variants = clip_variants(True, (5.0, -5.0, 10.0, -10.0))
    assert len(variants) == 10
    assert variants[0] == (False, 0.0) and variants[5] == (True, 0.0)
    assert {a for _, a in variants} == {0.0, 5.0, -5.0, 10.0, -10.0}
    assert clip_variants(False, (5.0,)) == [(False, 0.0)]


def test_fixed_length_windows_longer_and_resamples_shorter():
    clip = ramp_clip(20)
    window = fixed_length(clip, 16, 3, "window", "linear")
    assert [int(f[0, 0, 0]) for f in window] == [STEP * t for t in range(3, 19)]
    short = fixed_length(clip[:5], 16, 0, "window", "linear")
    assert short.shape == (16, 12, 12, 3) and short.dtype == np.uint8
    assert short[0, 0, 0, 0] == 0 and short[-1, 0, 0, 0] == 4 * STEP
    whole = fixed_length(clip, 16, 0, "resample", "linear")
    assert whole[0, 0, 0, 0] == 0 and whole[-1, 0, 0, 0] == 19 * STEP


def test_training_reads_draw_random_windows_and_test_reads_centre_on_apex():
    clip = ramp_clip(30)
    targets = torch.tensor([2])
    train = clip_data([clip], targets, 8, True)
    torch.manual_seed(0)
    starts = {int(train[0][0][0, 0, 0, 0]) // STEP for _ in range(40)}
    assert len(starts) > 5 and min(starts) >= 0 and max(starts) <= 22
    test = clip_data([clip], targets, 8, False, apexes=[25])
    x, y = test[0]
    assert x.shape == (3, 8, 12, 12) and int(y) == 2
    assert [int(v) // STEP for v in x[0, :, 0, 0]] == list(
        range(21, 29)
    )  # apex 25 centred, clamped


def test_expanded_set_applies_one_transform_to_every_frame():
    rng = np.random.default_rng(0)
    pattern = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    clip = np.stack([pattern] * 4)
    cfg = ClipConfig(expand=True)
    data = clip_data([clip, clip], torch.tensor([0, 1]), 4, True, cfg)
    assert len(data) == 20
    first_copies = [data[i][0] for i in range(2)]  # copy-major: both clips, original
    assert torch.equal(first_copies[0], first_copies[1])
    for index in range(len(data)):
        x = data[index][0]
        assert all(torch.equal(x[:, 0], x[:, t]) for t in range(1, 4))
    mirrored = data[2 * 5][0]  # copy 5 = mirror, no rotation
    expected = torch.from_numpy(pattern[:, ::-1].astype(np.float32).transpose(2, 0, 1).copy())
    assert torch.equal(mirrored[:, 0], expected)
    rotated = data[2 * 1][0]
    assert not torch.equal(rotated, first_copies[0])
    test = clip_data([clip], torch.tensor([0]), 4, False, cfg)
    assert len(test) == 1  # the test set is never expanded


def test_flow_vectors_follow_mirror_and_rotation():
    flow = np.zeros((2, 21, 21, 3), np.float32)
    flow[..., 0], flow[..., 2] = 1.0, 0.5  # uniform rightward motion, some strain
    mirrored = transform_clip(flow, True, 0.0, flow=True)
    assert np.allclose(mirrored[:, 10, 10], [-1.0, 0.0, 0.5])
    turned = transform_clip(flow, False, 90.0, flow=True)
    # OpenCV's positive angle turns the image anticlockwise on screen (y points down), so a
    # rightward motion becomes an upward one: v = -1.
    assert np.allclose(turned[:, 10, 10], [0.0, -1.0, 0.5], atol=1e-5)


def test_gray_frames_are_repeated_to_three_channels_and_scaled():
    clip = ramp_clip(4, chans=1)
    data = clip_data([clip], torch.tensor([0]), 4, False, scaling="unit")
    x = data[0][0]
    assert x.shape == (3, 4, 12, 12)
    assert torch.equal(x[0], x[2]) and float(x.max()) == pytest.approx(3 * STEP / 255)


def test_span_uses_onset_offset_for_expression_and_clamps_the_offset():
    frames = tuple(f"f{i}.jpg" for i in range(10))
    sample = Sample("a", "x", "s1", "happiness", frames, onset=2, apex=5, offset=7)
    assert span_of(sample, "expression") == (2, 7) and span_of(sample, "all") == (0, 9)
    assert coded_apex(sample, "expression") == 5 and coded_apex(sample, "all", False) is None
    past = Sample("b", "x", "s1", "happiness", frames, onset=2, apex=5, offset=40)
    assert span_of(past, "expression") == (2, 9)


def test_flow_clips_are_normalised_per_clip():
    flow = np.zeros((4, 6, 6, 3), np.float32)
    flow[..., 0], flow[-1, 3, 3, 1], flow[..., 2] = 2.0, -8.0, 0.25
    scaled = normalise_flow(flow)
    assert scaled.dtype == np.float16 and float(np.abs(scaled[..., :2]).max()) == 1.0
    assert float(scaled[0, 0, 0, 0]) == 0.25 and float(scaled[..., 2].max()) == 1.0
    assert not normalise_flow(np.zeros((2, 4, 4, 3))).any()  # no motion stays no motion


@pytest.fixture
def frame_samples(tmp_path):
    """Two clips of 7 moving-texture frames on disk, coded onset 1, apex 3, offset 5."""
    rng = np.random.default_rng(2)
    samples = []
    for k in range(2):
        base = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        folder = tmp_path / f"clip{k}"
        folder.mkdir()
        paths = []
        for t in range(7):
            paths.append(folder / f"img{t}.png")
            cv2.imwrite(str(paths[-1]), np.roll(base, t, axis=1))
        samples.append(Sample(f"c{k}", "x", f"s{k}", "happiness", tuple(paths), None, 1, 3, 5))
    return samples


def _clip_plan(model: str, size: int):
    return resolve(
        ExperimentConfig.model_validate(
            {
                "data": {"name": "casme2", "taxonomy": "casme2-5"},
                "model": {"name": model, "input_size": size, "options": TINY[model]},
                "preprocess": {"align": "none", "face_size": 32, "flow_method": "farneback"},
                "clip": {"num_frames": 4},
                "train": {"loss": "multi_head_ce" if model == "ms_resnet3d50" else "cross_entropy"},
            }
        )
    )


def test_plan_inputs_read_frame_and_flow_clips(frame_samples):
    plan = _clip_plan("c3d_vgg", 24)
    assert plan.preprocess.pipeline == "face_clip" and plan.preprocess.num_frames is None
    inputs = model_inputs(frame_samples, plan)
    assert all(c.dtype == np.uint8 and c.shape == (5, 24, 24, 3) for c in inputs.clips)
    assert inputs.apexes == [2, 2]  # coded apex 3, onset 1: position 2 in the span
    x, _ = inputs.subset([0])[0]
    assert x.shape == (3, 4, 24, 24) and float(x.max()) <= 1.0
    plan = _clip_plan("ms_resnet3d50", 16)
    assert plan.preprocess.pipeline == "flow_clip" and plan.input.scaling == "flow_max"
    flows = model_inputs(frame_samples, plan).clips
    assert all(f.shape == (4, 16, 16, 3) and f.dtype == np.float16 for f in flows)
    assert all(float(np.abs(f[..., :2]).max()) == pytest.approx(1.0, abs=1e-3) for f in flows)


def test_experiment_config_carries_clip_options():
    cfg = ExperimentConfig.model_validate(
        {"model": {"name": "c3d_vgg"}, "clip": {"expand": True, "num_frames": 8}}
    )
    assert cfg.clip.expand and cfg.clip.num_frames == 8
    with pytest.raises(ValueError, match="windw"):
        ExperimentConfig.model_validate({"clip": {"windw": 3}})


def test_subtract_first_leaves_the_motion_only():
    clip = ramp_clip(6)
    cfg = ClipConfig(subtract_first=True)
    x = clip_data([clip], torch.tensor([0]), 6, False, cfg)[0][0]
    assert torch.equal(x[:, 0], torch.zeros_like(x[:, 0]))
    assert float(x[0, 5, 0, 0]) == 5 * STEP


def _moving_texture_clips(subjects: int, clips: int) -> list[SimpleNamespace]:
    """Clips (as the replica writers read them) of a random texture that drifts right
    (happiness), up (surprise) or not at all (disgust): made in milliseconds."""
    rng = np.random.default_rng(3)
    steps = {"happiness": (0, 1), "surprise": (-1, 0), "disgust": (0, 0)}
    out = []
    for subject in range(1, subjects + 1):
        for k in range(clips):
            emotion = list(steps)[k % 3]
            base = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            dy, dx = steps[emotion]
            frames = [np.roll(base, (dy * t, dx * t), axis=(0, 1)) for t in range(8)]
            out.append(
                SimpleNamespace(
                    subject=subject,
                    emotion=emotion,
                    aus=("12",),
                    onset=1,
                    apex=4,
                    offset=6,
                    frames=frames,
                    fps=200.0,
                )
            )
    return out


TINY = {
    "c3d_vgg": {"widths": (4, 4, 8, 8, 8, 8, 8, 8), "hidden": 16, "conv_drop": 0.0},
    "ms_resnet3d50": {"layers": (1, 1, 1, 1), "widths": (4, 8, 8, 8), "stem_width": 6},
}


def _synthetic_experiment(
    tmp_path, model: str, subjects: int, clips: int, epochs: int, planted: bool = True, **clip
):
    scaling = "unit" if model == "c3d_vgg" else "flow_max"
    from microexpr.synth import generate_clips, write_layout
    from microexpr.train.experiment import run_experiment

    root = tmp_path / "casme2"
    emotions = ("happiness", "surprise", "disgust")
    made = (
        generate_clips(
            subjects, clips, size=48, n_frames=10, emotions=emotions, amplitude=(3.0, 4.5)
        )
        if planted
        else _moving_texture_clips(subjects, clips)
    )
    write_layout("casme2", made, root)
    cfg = ExperimentConfig.model_validate(
        {
            "data": {"name": "casme2", "root": str(root), "taxonomy": "casme2-3"},
            "model": {"name": model, "options": TINY[model], "input_size": 24, "scaling": scaling},
            # The moving textures have no face: the whole frame is the clip, as seed S3 reads.
            "preprocess": {"align": "none", "face_size": 48, "span": "all"},
            "clip": {"num_frames": 6, **clip},
            "train": {
                "epochs": epochs,
                "batch_size": 8,
                "lr": 1e-3,
                "loss": "multi_head_ce" if model == "ms_resnet3d50" else "cross_entropy",
                "shuffle": True,
                "device": "cpu",
            },
            "engine": "per_fold",
        }
    )
    out = tmp_path / "out"
    return run_experiment(cfg, out, progress=False, cache=tmp_path / "cache"), out


# Most of this test's time is importing the experiment stack (pandas, scikit-learn,
# matplotlib); the flow-clip variant also runs TV-L1, so it is the slow one.
@pytest.mark.parametrize(
    "model", ["c3d_vgg", pytest.param("ms_resnet3d50", marks=pytest.mark.slow)]
)
def test_clip_models_run_through_the_experiment_runner(tmp_path, model):
    import pandas as pd

    metrics, out = _synthetic_experiment(tmp_path, model, 2, 3, 1, planted=False, expand=True)
    table = pd.read_csv(out / "predictions.csv")
    assert len(table) == 6 and set(table["fold"]) == {"casme2-sub01", "casme2-sub02"}
    probs = table[[c for c in table.columns if c.startswith("p_")]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert metrics["overall"]["n"] == 6


@pytest.mark.slow
def test_ms_resnet3d_learns_planted_motion_leave_one_subject_out(tmp_path):
    metrics, _ = _synthetic_experiment(tmp_path, "ms_resnet3d50", 4, 6, 8, expand=True)
    assert metrics["overall"]["accuracy"] > 0.6  # chance is 1/3
