"""The clip pipeline of the 3-D models: fixed length, seed S3's x10 copies, flow clips."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from microexpr import models
from microexpr.config import ExperimentConfig
from microexpr.inputs import (
    ClipConfig,
    ClipDataset,
    clip_span,
    clip_variants,
    fixed_length,
    flow_clip,
    load_clips,
    transform_clip,
)
from microexpr.samples import Sample

STEP = 8


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
    train = ClipDataset([clip], targets, 8, 3, True, ClipConfig(), scaling="raw")
    torch.manual_seed(0)
    starts = {int(train[0][0][0, 0, 0, 0]) // STEP for _ in range(40)}
    assert len(starts) > 5 and min(starts) >= 0 and max(starts) <= 22
    test = ClipDataset([clip], targets, 8, 3, False, ClipConfig(), apexes=[25], scaling="raw")
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
    data = ClipDataset([clip, clip], torch.tensor([0, 1]), 4, 3, True, cfg, scaling="raw")
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
    test = ClipDataset([clip], torch.tensor([0]), 4, 3, False, cfg)
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
    data = ClipDataset([clip], torch.tensor([0]), 4, 3, False, ClipConfig(), scaling="unit")
    x = data[0][0]
    assert x.shape == (3, 4, 12, 12)
    assert torch.equal(x[0], x[2]) and float(x.max()) == pytest.approx(3 * STEP / 255)


def test_clip_span_uses_onset_offset_for_expression():
    frames = tuple(f"f{i}.jpg" for i in range(10))
    sample = Sample("a", "x", "s1", "happiness", frames, onset=2, apex=5, offset=7)
    assert clip_span(sample, "expression") == (frames[2:8], 3)
    assert clip_span(sample, "all") == (frames, 5)


def test_flow_clip_is_fixed_length_and_normalised():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (40, 40), dtype=np.uint8)
    frames = np.stack([np.roll(base, t // 2, axis=1) for t in range(6)])[..., None]
    flow = flow_clip(frames.repeat(3, axis=3), 4, ClipConfig(), size=20)
    assert flow.shape == (4, 20, 20, 3) and flow.dtype == np.float16
    assert float(np.abs(flow[..., :2]).max()) == pytest.approx(1.0, abs=1e-3)
    assert float(flow[-1, 10, 10, 0]) > 0.5  # onset reference: the shift so far, rightwards


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


def test_load_clips_reads_frames_and_flow(frame_samples):
    cfg = ClipConfig(num_frames=4, span="expression")
    frames, apexes = load_clips(frame_samples, models.info("c3d_vgg"), cfg, size=24)
    assert all(f.dtype == np.uint8 and f.shape == (5, 24, 24, 3) for f in frames)
    assert apexes == [2, 2]
    flows, _ = load_clips(frame_samples, models.info("ms_resnet3d50"), cfg, size=16)
    assert all(f.shape == (4, 16, 16, 3) and f.dtype == np.float16 for f in flows)
    with pytest.raises(ValueError, match="not a clip"):
        load_clips(frame_samples, models.info("ststnet"), cfg)


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
    x = ClipDataset([clip], torch.tensor([0]), 6, 3, False, cfg, scaling="raw")[0][0]
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


def _synthetic_experiment(
    tmp_path, model: str, subjects: int, clips: int, epochs: int, planted: bool = True, **clip
):
    from microexpr.datasets.replicas import write_layout
    from microexpr.datasets.synthetic import generate_clips
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
    tiny = {
        "c3d_vgg": {"widths": (4, 4, 8, 8, 8, 8, 8, 8), "hidden": 16, "conv_drop": 0.0},
        "ms_resnet3d50": {"layers": (1, 1, 1, 1), "widths": (4, 8, 8, 8), "stem_width": 6},
    }[model]
    cfg = ExperimentConfig.model_validate(
        {
            "data": {"name": "casme2", "root": str(root), "taxonomy": "casme2-3"},
            "model": {"name": model, "options": tiny, "input_size": 24, "scaling": "unit"},
            "clip": {"num_frames": 6, "flow_size": 48, **clip},
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
    return run_experiment(cfg, tmp_path / "out", progress=False), tmp_path / "out"


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
