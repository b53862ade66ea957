"""Issue 14: no test subject's data reaches model selection, and the leakage gap diagnostic.

The leak tests plant a marker (a constant flow image, which no other synthetic sample is) in
the samples of one outer fold's test side only, run that fold through the project's own
path, and record what training, the plateau schedule's validation split, the inner
selection and scoring see. The marker may be scored once, by the outer fold, and nowhere
else.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from microexpr import datasets
from microexpr.config import ConfigError, ExperimentConfig, config_from
from microexpr.evaluate import leakage
from microexpr.protocols import PROTOCOLS, Fold, make_folds
from microexpr.recipe import resolve
from microexpr.samples import subject_key
from microexpr.synth.replicas.flow_images import write_flat
from microexpr.train import experiment, sweep, trainer

SUBJECT_WISE = {"loso", "composite_loso", "cross_dataset"}


def _protocol_options(samples) -> dict[str, dict]:
    """Options that make every registered protocol run on the synthetic composite."""
    names = sorted({s.dataset for s in samples})
    return {
        "loso": {},
        "composite_loso": {},
        "kfold": {"k": 3},
        "holdout": {"key": "clip", "train_values": ["clip0", "clip1"], "test_values": ["clip3"]},
        "cross_dataset": {"train_datasets": names[:-1], "test_datasets": names[-1:]},
    }


def _config(root: Path, protocol: dict, **train) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {
            "data": {"root": str(root)},
            "model": {"name": "ststnet"},
            "train": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "device": "cpu", **train},
            "protocol": protocol,
            "engine": "per_fold",
        }
    )


def _is_marker(x: torch.Tensor) -> torch.Tensor:
    """Per sample: every channel constant over the image (only the planted samples are)."""
    flat = x.flatten(2).float()
    return (flat.amax(-1) == flat.amin(-1)).all(-1)


def _plant(root: Path, protocol: str, options: dict) -> tuple[Fold, list]:
    """Overwrite the first fold's test images with the marker; return the fold and samples."""
    samples = datasets.load("flow_images", root)
    fold = make_folds(protocol, samples, **options)[0]
    for i in fold.test:
        cv2.imwrite(str(samples[i].path), np.full((28, 28, 3), (40, 90, 200), np.uint8))
    return fold, samples


class Seen:
    """What selection and training are handed, recorded by wrapping the project's own calls."""

    def __init__(self, monkeypatch):
        self.trained = 0  # marker samples among training inputs
        self.scored = 0  # marker samples among scored inputs
        self.fit_subjects: list[set] = []  # subjects of every fit's training part
        self.val_subjects: list[set] = []  # subjects of every plateau validation split
        self.stacked_train: list[set] = []
        self.subject_of: list[str] = []  # set by a stacked test: subject of each sample
        fit, train_fold, predict = experiment.fit, experiment.train_fold, experiment.predict_proba
        split, stacked = trainer.validation_split, experiment.train_folds_stacked

        def fit_spy(plan, inputs, targets, fold, subjects, *args, **kwargs):
            self.fit_subjects.append({subjects[i] for i in fold.train})
            return fit(plan, inputs, targets, fold, subjects, *args, **kwargs)

        def train_spy(model, train_set, *args, **kwargs):
            self.trained += int(_is_marker(train_set[0]).sum())
            return train_fold(model, train_set, *args, **kwargs)

        def predict_spy(model, data, *args, **kwargs):
            self.scored += int(_is_marker(data).sum())
            return predict(model, data, *args, **kwargs)

        def split_spy(n, fraction, seed, labels=None, groups=None):
            fit_idx, val = split(n, fraction, seed, labels, groups)
            self.val_subjects.append({groups[i] for i in val})
            return fit_idx, val

        def stacked_spy(images, targets, folds, *args, **kwargs):
            self.stacked_train += [{self.subject_of[i] for i in f.train} for f in folds]
            return stacked(images, targets, folds, *args, **kwargs)

        monkeypatch.setattr(experiment, "fit", fit_spy)
        monkeypatch.setattr(experiment, "train_fold", train_spy)
        monkeypatch.setattr(experiment, "predict_proba", predict_spy)
        monkeypatch.setattr(trainer, "validation_split", split_spy)
        monkeypatch.setattr(experiment, "train_folds_stacked", stacked_spy)


def test_every_protocol_is_covered(tmp_path, flow_records):
    samples = datasets.load("flow_images", write_flat(flow_records, tmp_path).parent)
    assert set(_protocol_options(samples)) == set(PROTOCOLS.names())  # a new one needs a case


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS.names()))
def test_no_protocol_lets_a_test_subject_reach_training_or_the_plateau_split(
    tmp_path, flow_records, monkeypatch, protocol
):
    root = write_flat(flow_records, tmp_path / "data").parent
    options = _protocol_options(datasets.load("flow_images", root))[protocol]
    fold, samples = _plant(root, protocol, options)
    tested = {subject_key(samples[i]) for i in fold.test}
    seen = Seen(monkeypatch)
    cfg = _config(root, {"name": protocol, "options": options}, plateau={"val_fraction": 0.3})
    metrics = experiment.run_experiment(
        cfg, tmp_path / "out", False, max_folds=1, cache=tmp_path / "cache", save_model=False
    )
    assert metrics["overall"]["n"] == len(fold.test)
    assert seen.trained == 0 and seen.scored == len(fold.test)  # scored once, by its fold
    assert seen.val_subjects and seen.fit_subjects  # the plateau split ran
    if protocol in SUBJECT_WISE:
        assert not any(tested & s for s in seen.fit_subjects + seen.val_subjects)


def test_the_inner_selection_never_sees_the_outer_test_subject(tmp_path, flow_records, monkeypatch):
    root = write_flat(flow_records, tmp_path / "data").parent
    fold, samples = _plant(root, "loso", {})
    tested = {subject_key(samples[i]) for i in fold.test}
    inner = {"folds": 2, "grid": {"train.lr": [1e-3, 1e-2]}}
    seen = Seen(monkeypatch)
    cfg = _config(root, {"name": "loso", "inner": inner}, plateau={"val_fraction": 0.3})
    out = tmp_path / "out"
    metrics = experiment.run_experiment(
        cfg, out, False, max_folds=1, cache=tmp_path / "cache", save_model=False
    )
    assert metrics["overall"]["n"] == len(fold.test)
    assert seen.trained == 0 and seen.scored == len(fold.test)
    # 2 candidates x 2 inner folds, then the chosen one on all training subjects
    assert len(seen.fit_subjects) == 5
    assert not any(tested & s for s in seen.fit_subjects + seen.val_subjects)
    record = json.loads((out / "sweep.json").read_text())
    assert set(record["chosen"]) == {fold.name}
    assert record["chosen"][fold.name] in record["candidates"]
    assert json.loads((out / "config.json").read_text())["protocol"]["inner"]["folds"] == 2


def test_the_stacked_engine_trains_each_fold_without_its_test_subject(
    tmp_path, flow_records, monkeypatch
):
    root = write_flat(flow_records, tmp_path / "data").parent
    samples = datasets.load("flow_images", root)
    seen = Seen(monkeypatch)
    seen.subject_of = [subject_key(s) for s in samples]
    cfg = _config(root, {"name": "loso"}).model_copy(update={"engine": "stacked"})
    experiment.run_experiment(
        cfg, tmp_path / "out", False, max_folds=3, cache=tmp_path / "cache", save_model=False
    )
    folds = make_folds("loso", samples)[:3]
    assert len(seen.stacked_train) == 3
    for fold, trained in zip(folds, seen.stacked_train, strict=True):
        assert not trained & {subject_key(samples[i]) for i in fold.test}


def test_inner_folds_split_only_the_outer_training_subjects(tmp_path, flow_records):
    samples = datasets.load("flow_images", write_flat(flow_records, tmp_path).parent)
    for outer in make_folds("loso", samples):
        tested = {subject_key(samples[i]) for i in outer.test}
        for fold in sweep.inner_folds(outer, samples, 3):
            assert not tested & {subject_key(samples[i]) for i in fold.train + fold.test}


def test_an_inner_grid_cannot_change_data_or_protocol():
    with pytest.raises(ConfigError, match="cannot change protocol"):
        config_from({"protocol": {"inner": {"grid": {"protocol.name": ["kfold"]}}}})
    grid = sweep.grid_from_config({"train.lr": [1e-4, 5e-5], "train.shuffle": [True]})
    assert sweep.candidates(grid) == [
        ["train.lr=0.0001", "train.shuffle=true"],
        ["train.lr=5e-05", "train.shuffle=true"],
    ]


# --- the leakage diagnostic (train.record_epochs) ---


def _run(root: Path, out: Path, record_epochs: int, **extra) -> dict:
    cfg = ExperimentConfig.model_validate(
        {
            "data": {"root": str(root)},
            "model": {"name": "rcn_a"},  # dropout: any stray draw from the RNG shows
            "train": {
                "epochs": 4,
                "batch_size": 8,
                "lr": 1e-2,
                "optimizer": "sgd",
                "shuffle": True,
                "device": "cpu",
                "record_epochs": record_epochs,
            },
            "protocol": {"name": "composite_loso"},
            **extra,
        }
    )
    return experiment.run_experiment(
        cfg, out, False, max_folds=2, cache=out.parent / "cache", save_model=False
    )


def test_recording_epochs_leaves_the_honest_predictions_bit_for_bit(tmp_path, flow_records):
    root = write_flat(flow_records, tmp_path / "data").parent
    off = _run(root, tmp_path / "off", 0)
    on = _run(root, tmp_path / "on", 1)
    for name in ("predictions.csv",):
        assert (tmp_path / "on" / name).read_bytes() == (tmp_path / "off" / name).read_bytes()
    assert on["overall"] == off["overall"]
    assert not (tmp_path / "off" / leakage.FILE).exists()
    folds = sorted((tmp_path / "on" / "folds").glob("*.epochs.csv"))
    assert len(folds) == 2
    honest = pd.read_csv(tmp_path / "on" / "predictions.csv", dtype={"sample_id": str})
    classes = ("negative", "positive", "surprise")
    for path in folds:
        record = leakage.read_epochs(path, classes)
        assert sorted(record) == [1, 2, 3, 4]
        name = path.name.removesuffix(".epochs.csv")
        rows = honest[honest["fold"] == name]
        last = record[4][[f"p_{c}" for c in classes]].to_numpy()
        np.testing.assert_array_equal(last.argmax(1), rows["y_pred"].to_numpy())
        np.testing.assert_allclose(last, rows[[f"p_{c}" for c in classes]].to_numpy())
    diagnostic = json.loads((tmp_path / "on" / leakage.FILE).read_text())
    assert diagnostic["label"].startswith("NOT A RESULT")
    selected, plain = diagnostic["best_epoch_per_subject"], diagnostic["honest_last_epoch"]
    assert plain["Full"]["uf1"] == pytest.approx(on["overall"]["uf1"])
    assert selected["Full"]["accuracy"] >= plain["Full"]["accuracy"]  # per-fold best >= last
    report = (tmp_path / "on" / "report.md").read_text()
    assert leakage.LABEL in report
    metrics = json.loads((tmp_path / "on" / "metrics.json").read_text())
    assert "best_epoch_per_subject" not in json.dumps({k: v for k, v in metrics.items()})


def test_recording_every_nth_epoch_keeps_the_last():
    assert [e for e in range(10) if trainer.recorded_epoch(e, 10, 4)] == [3, 7, 9]
    assert not any(trainer.recorded_epoch(e, 10, 0) for e in range(10))


def test_per_subject_best_epoch_takes_the_later_epoch_on_a_tie(tmp_path):
    classes = ("a", "b")
    from microexpr import atomicio

    rows = pd.DataFrame(
        {"fold": "s1", "sample_id": ["x", "y"], "dataset": "d", "y_true": [0, 1], "y_pred": [1, 1]}
    )
    record = pd.DataFrame(
        {
            "epoch": [1, 1, 2, 2, 3, 3],
            "sample_id": ["x", "y"] * 3,
            "p_a": [0.9, 0.9, 0.1, 0.1, 0.8, 0.2],  # epoch 1: 1/2, 2: 1/2, 3: 2/2
            "p_b": [0.1, 0.1, 0.9, 0.9, 0.2, 0.8],
        }
    )
    atomicio.write_text(tmp_path / "s1.epochs.csv", record.to_csv(index=False))
    result = leakage.best_epoch_selection(rows, classes, tmp_path, {"s1": ["s1"]})
    assert result["chosen_epoch"] == {"s1": 3}
    assert result["best_epoch_per_subject"]["Full"]["accuracy"] == 1.0
    assert result["honest_last_epoch"]["Full"]["accuracy"] == 0.5
    record = record[record["epoch"] < 3]  # epochs 1 and 2 tie: the later one, as <= keeps
    atomicio.write_text(tmp_path / "s1.epochs.csv", record.to_csv(index=False))
    assert leakage.best_epoch_selection(rows, classes, tmp_path, {})["chosen_epoch"] == {"s1": 2}


def test_recording_needs_the_per_fold_engine():
    cfg = {"train": {"record_epochs": 5, "device": "cpu"}, "model": {"name": "ststnet"}}
    assert resolve(ExperimentConfig.model_validate(cfg)).engine == "per_fold"  # auto falls back
    with pytest.raises(ConfigError, match="record_epochs"):
        resolve(ExperimentConfig.model_validate({**cfg, "engine": "stacked"}))
