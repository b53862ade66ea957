"""Class-balanced losses (``train.class_weight: balanced``): the weights are scikit-learn's,
counted on each fold's own training samples; losses that take none, and the stacked engine,
which implements plain cross-entropy only, refuse or step aside."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from test_pretrain import SMALL_SSSNET
from torch.nn import functional as F

from microexpr.config import (
    AugmentConfig,
    ConfigError,
    DataConfig,
    ExperimentConfig,
    TrainConfig,
    load_config,
)
from microexpr.losses import balanced_class_weights, create_loss
from microexpr.recipe import resolve
from microexpr.synth.replicas.flow_images import write_flat
from microexpr.train import experiment
from microexpr.train.experiment import run_experiment

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_balanced_weights_are_scikit_learns_and_need_every_class():
    assert balanced_class_weights([0, 0, 0, 1, 2, 2], 3) == pytest.approx([2 / 3, 2.0, 1.0])
    with pytest.raises(ValueError, match=r"\[1\] have no training samples"):
        balanced_class_weights([0, 2, 2], 3)


def test_weighted_cross_entropy_weighs_each_class():
    logits, target = torch.randn(6, 3), torch.tensor([0, 0, 0, 1, 2, 2])
    weight = [2 / 3, 2.0, 1.0]
    loss = create_loss("cross_entropy", 3, weight=weight)
    expected = F.cross_entropy(logits, target, weight=torch.tensor(weight))
    torch.testing.assert_close(loss(logits, target), expected)
    assert not torch.allclose(loss(logits, target), F.cross_entropy(logits, target))


def test_each_fold_weighs_its_own_training_labels(tmp_path, flow_records, monkeypatch):
    # every subject's last clip relabelled by subject, so subjects' class counts differ
    subjects = sorted({r[0] for r in flow_records})
    classes = ("negative", "positive", "surprise")
    flow_records = [
        (r[0], r[1], classes[subjects.index(r[0]) % 3] if r[1] == "clip3" else r[2], r[3])
        for r in flow_records
    ]
    write_flat(flow_records, tmp_path / "data")
    overrides = [f"data.root={tmp_path / 'data'}", *SMALL_SSSNET, "train.class_weight=balanced"]
    cfg = load_config(CONFIGS / "sssnet.yaml", overrides)
    seen: list[torch.Tensor] = []
    real_train = experiment.train_fold

    def spy_train(model, train_set, cfg, num_classes, criterion=None, **kwargs):
        seen.append(criterion.weight.clone())
        return real_train(model, train_set, cfg, num_classes, criterion=criterion, **kwargs)

    monkeypatch.setattr(experiment, "train_fold", spy_train)
    out = tmp_path / "run"
    run_experiment(cfg, out, False, max_folds=1, save_model=False)
    tested = set(pd.read_csv(out / "predictions.csv", dtype=str)["subject"])
    assert resolve(cfg).classes == classes
    assert len(tested) == 1
    training = [r[2] for r in flow_records if r[0] not in tested]
    expected = balanced_class_weights([classes.index(e) for e in training], len(classes))
    assert len(seen) == 1 and seen[0].tolist() == pytest.approx(expected)
    everyone = balanced_class_weights([classes.index(r[2]) for r in flow_records], len(classes))
    assert seen[0].tolist() != pytest.approx(everyone)  # the test subject's labels were not counted


def test_losses_without_weights_refuse_and_weighted_ststnet_trains_per_fold():
    data = DataConfig(root="x")
    with pytest.raises(ConfigError, match="focal takes no class weights"):
        resolve(
            ExperimentConfig(data=data, train=TrainConfig(loss="focal", class_weight="balanced"))
        )
    weighted = TrainConfig(class_weight="balanced")
    assert resolve(ExperimentConfig(data=data, train=weighted)).engine == "per_fold"
    smoothed = TrainConfig(loss_kwargs={"label_smoothing": 0.1}, augment=AugmentConfig(hflip=0.5))
    assert resolve(ExperimentConfig(data=data, train=smoothed)).engine == "per_fold"
    assert resolve(ExperimentConfig(data=data)).engine == "stacked"
