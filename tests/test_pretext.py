"""Self-supervised pretraining inside each fold (``train.pretext``): the rotation pretext on
the fold's training images only, its weights starting the fold, and the configs it cannot
serve refused."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from test_pretrain import SMALL_SSSNET

from microexpr.config import ConfigError, load_config
from microexpr.inputs import model_inputs
from microexpr.recipe import resolve
from microexpr.synth.replicas.flow_images import write_flat
from microexpr.train import experiment
from microexpr.train.experiment import run_experiment
from microexpr.train.pretext import rotated_copies

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PRETEXT_SSSNET = [*SMALL_SSSNET, "train.pretext.epochs=1"]


def test_rotated_copies_turn_every_image_four_ways():
    images = torch.arange(2 * 3 * 3, dtype=torch.float32).view(2, 1, 3, 3)
    turned, labels = rotated_copies(images)
    assert turned.shape == (8, 1, 3, 3) and labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert torch.equal(turned[:2], images)
    # a quarter turn counter-clockwise: the top row becomes the left column, read upwards
    assert turned[2, 0, :, 0].tolist() == images[0, 0, 0].flip(0).tolist()
    assert torch.equal(turned[4], images[0].flip(-1).flip(-2))  # half a turn
    with pytest.raises(ValueError, match="square"):
        rotated_copies(torch.zeros(1, 1, 3, 4))


def test_each_fold_pretrains_on_its_training_images_and_starts_from_them(
    tmp_path, flow_records, monkeypatch
):
    write_flat(flow_records, tmp_path / "data")
    cfg = load_config(CONFIGS / "sssnet.yaml", [f"data.root={tmp_path / 'data'}", *PRETEXT_SSSNET])
    seen: list[torch.Tensor] = []
    reports = []
    real_state, real_load = experiment.pretext_state, experiment.models.load_weights

    def spy_state(plan, images, *args):
        seen.append(images.clone())
        return real_state(plan, images, *args)

    def spy_load(model, name, state):
        reports.append(real_load(model, name, state))
        return reports[-1]

    monkeypatch.setattr(experiment, "pretext_state", spy_state)
    monkeypatch.setattr(experiment.models, "load_weights", spy_load)
    out = tmp_path / "run"
    metrics = run_experiment(cfg, out, False, max_folds=1, save_model=False)

    assert len(seen) == 1  # one fold, one pretext
    test_images = _images_of(out, tmp_path / "data")
    assert len(seen[0]) == len(flow_records) - metrics["overall"]["n"]
    for image in test_images:  # no test image reached the pretext
        assert not any(torch.equal(image, row) for row in seen[0])
    report = reports[0]
    assert report.dropped_head == {"fc.weight": (4, 3), "fc.bias": (4, 3)}  # turns vs classes
    assert report.reinitialised == ["fc.weight", "fc.bias"] and not report.mismatched


def _images_of(run_dir: Path, data_root: Path) -> list[torch.Tensor]:
    """The model inputs of the run's test samples, built the way the run built them."""
    plan = resolve(
        load_config(CONFIGS / "sssnet.yaml", [f"data.root={data_root}", *PRETEXT_SSSNET])
    )
    tested = set(pd.read_csv(run_dir / "predictions.csv", dtype=str)["sample_id"])
    samples = experiment.load_samples(plan)
    inputs = model_inputs(samples, plan, run_dir / "cache", None, False)
    return [inputs.images[i] for i, s in enumerate(inputs.samples) if s.id in tested]


@pytest.mark.parametrize(
    ("config", "overrides", "message"),
    [
        ("classical_hoof_svm.yaml", [], "fitted by scikit-learn"),
        ("seed003_casme2.yaml", [], "reads clips"),
    ],
)
def test_a_pretext_is_refused_where_no_network_reads_images(config, overrides, message):
    cfg = load_config(CONFIGS / config, ["train.pretext.epochs=1", *overrides])
    with pytest.raises(ConfigError, match=message):
        resolve(cfg)


def test_a_pretext_keeps_ststnet_off_the_stacked_engine():
    plain = resolve(load_config(CONFIGS / "composite_ststnet.yaml"))
    pretext = resolve(load_config(CONFIGS / "composite_ststnet.yaml", ["train.pretext.epochs=2"]))
    assert (plain.engine, pretext.engine) == ("stacked", "per_fold")
