"""Issue 2: flow-image layouts, LOSO, metrics, resumable runs, STSTNet weights, demo, errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from microexpr import datasets, models
from microexpr.cli import app
from microexpr.config import DataConfig, ExperimentConfig, TrainConfig
from microexpr.datasets.problems import Report
from microexpr.errors import DataError
from microexpr.evaluate.metrics import scores
from microexpr.inference import predict_proba
from microexpr.models.flow_nets import StackedSTSTNet, ststnet
from microexpr.protocols import Fold, check_disjoint, loso
from microexpr.samples import subject_key
from microexpr.synth.replicas.flow_images import write_flat, write_per_subject
from microexpr.train import experiment
from microexpr.train.experiment import run_experiment
from microexpr.train.stacked import train_folds_stacked
from microexpr.train.trainer import train_fold


def _key(sample) -> tuple:
    return (sample.id, sample.dataset, sample.subject, sample.label, sample.meta["clip"])


def test_both_flow_layouts_give_identical_samples(tmp_path, flow_records):
    write_flat(flow_records, tmp_path / "flat")
    write_per_subject(flow_records, tmp_path / "per_subject")
    flat = sorted(datasets.load("flow_images", tmp_path / "flat"), key=_key)
    nested = sorted(datasets.load("flow_images", tmp_path / "per_subject"), key=_key)
    assert [_key(s) for s in flat] == [_key(s) for s in nested]
    assert len(flat) == len(flow_records)
    assert all(s.path.name.endswith(" .png") for s in flat)  # the published name, with a space
    for a, b in zip(flat, nested, strict=True):
        assert np.array_equal(cv2.imread(str(a.path)), cv2.imread(str(b.path)))
    assert {s.dataset for s in nested} == {"casme2", "smic", "samm"}


def test_loso_never_shares_a_subject(tmp_path, flow_records):
    samples = datasets.load("flow_images", write_flat(flow_records, tmp_path).parent)
    folds = loso(samples)
    assert len(folds) == len({subject_key(s) for s in samples})
    tested = sorted(i for f in folds for i in f.test)
    assert tested == list(range(len(samples)))  # every sample tested exactly once
    for fold in folds:
        train_subjects = {subject_key(samples[i]) for i in fold.train}
        test_subjects = {subject_key(samples[i]) for i in fold.test}
        assert len(test_subjects) == 1 and not train_subjects & test_subjects
    leaky = Fold("leak", folds[0].train + folds[0].test[:1], folds[0].test)
    with pytest.raises(ValueError, match="leak"):
        check_disjoint(samples, [leaky], by_subject=True)


def test_metrics_match_hand_computed_case():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0]
    # F1 per class: 2TP / (2TP + FP + FN) = 2/4, 4/5, 2/3; recall: 1/2, 2/2, 1/2.
    result = scores(y_true, y_pred)
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["uf1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert result["uar"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert result["n"] == 6


def test_metrics_on_a_subset_without_a_class_use_its_classes():
    assert scores([0, 0, 1], [0, 0, 1])["uf1"] == pytest.approx(1.0)


class PublishedSTSTNet(nn.Module):
    """STSTNet as the authors' main.py defines it (names and shapes), to check compatibility."""

    def __init__(self, in_channels=3, out_channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels=3, kernel_size=3, padding=2)
        self.conv2 = nn.Conv2d(in_channels, out_channels=5, kernel_size=3, padding=2)
        self.conv3 = nn.Conv2d(in_channels, out_channels=8, kernel_size=3, padding=2)
        self.relu = nn.ReLU()
        self.bn1 = nn.BatchNorm2d(3)
        self.bn2 = nn.BatchNorm2d(5)
        self.bn3 = nn.BatchNorm2d(8)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=3, padding=1)
        self.avgpool = nn.AvgPool2d(kernel_size=2, stride=2, padding=0)
        self.dropout = nn.Dropout(p=0.5)
        self.fc = nn.Linear(in_features=5 * 5 * 16, out_features=out_channels)

    def forward(self, x):
        parts = []
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            parts.append(self.dropout(self.maxpool(bn(self.relu(conv(x))))))
        return self.fc(self.avgpool(torch.cat(parts, 1)).view(x.size(0), -1))


def test_published_ststnet_weights_load_unchanged(tmp_path):
    torch.manual_seed(1)
    published = PublishedSTSTNet()
    published.train()
    published(torch.rand(8, 3, 28, 28) * 255)  # move the batch-norm statistics off their init
    torch.save(published.state_dict(), tmp_path / "sub01.pth")
    model = models.create("ststnet", num_classes=3)
    model.load_state_dict(torch.load(tmp_path / "sub01.pth"))  # strict: no key changes
    x = torch.rand(4, 3, 28, 28) * 255
    assert torch.allclose(model.eval()(x), published.eval()(x), atol=1e-5)


def test_stacked_engine_equals_training_each_fold_alone():
    torch.manual_seed(0)
    images = torch.rand(30, 3, 28, 28) * 255
    targets = torch.randint(0, 3, (30,))
    # Unequal training sets: the shorter fold runs out of batches first.
    folds = [
        Fold("a", tuple(range(0, 22)), tuple(range(22, 30))),
        Fold("b", tuple(range(8, 30)) + (0, 1, 2), tuple(range(3, 8))),
    ]
    cfg = TrainConfig(epochs=4, batch_size=8, lr=1e-3, device="cpu")
    stacked = train_folds_stacked(images, targets, folds, cfg, 3, {"drop_rate": 0.0}, False)
    for fold, probs in zip(folds, stacked, strict=True):
        torch.manual_seed(fold.seed(cfg.seed))
        alone = ststnet(3, 3, drop_rate=0.0)
        train_fold(
            alone, (images[list(fold.train)], targets[list(fold.train)]), cfg, 3, progress=False
        )
        expected = predict_proba(alone, images[list(fold.test)], device="cpu")
        np.testing.assert_allclose(probs, expected, atol=1e-4)


def test_stacked_fold_model_is_a_plain_ststnet():
    torch.manual_seed(0)
    nets = [ststnet(3, 3) for _ in range(3)]
    for net in nets:  # non-trivial batch-norm statistics
        net.train()(torch.rand(6, 3, 28, 28) * 255)
    stacked = StackedSTSTNet(nets).eval()
    x = torch.rand(5, 3, 28, 28) * 255
    together = stacked(x.expand(3, *x.shape))
    for i, net in enumerate(nets):
        assert torch.allclose(stacked.fold_model(i).eval()(x), net.eval()(x), atol=1e-4)
        assert torch.allclose(together[i], net(x), atol=1e-4)


def _config(root: Path, engine: str = "auto", **train) -> ExperimentConfig:
    return ExperimentConfig(
        data=DataConfig(root=str(root)),
        train=TrainConfig(epochs=3, batch_size=16, lr=1e-3, device="cpu", **train),
        engine=engine,
        folds_per_call=1,
    )


@pytest.mark.parametrize(
    ("engine", "trainer"), [("stacked", "train_folds_stacked"), ("per_fold", "train_fold")]
)
def test_interrupted_run_resumes_to_identical_results(
    tmp_path, flow_records, monkeypatch, engine, trainer
):
    root = write_flat(flow_records, tmp_path / "data").parent
    cfg = _config(root, engine)
    reference = run_experiment(cfg, tmp_path / "straight", progress=False)

    calls = {"n": 0}
    real = getattr(experiment, trainer)

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(experiment, trainer, interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, tmp_path / "resumed", progress=False)
    assert len(list((tmp_path / "resumed" / "folds").glob("*.csv"))) == 2
    monkeypatch.setattr(experiment, trainer, real)
    resumed = run_experiment(cfg, tmp_path / "resumed", progress=False)

    assert resumed["overall"] == reference["overall"]
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "straight" / "predictions.csv"),
        pd.read_csv(tmp_path / "resumed" / "predictions.csv"),
    )


def test_resuming_with_another_configuration_is_refused(tmp_path, flow_records):
    root = write_flat(flow_records, tmp_path / "data").parent
    run_experiment(_config(root), tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="different configuration"):
        run_experiment(_config(root, seed=1), tmp_path / "out", progress=False)


def test_max_folds_runs_only_the_first_folds(tmp_path, flow_records):
    root = write_flat(flow_records, tmp_path / "data").parent
    metrics = run_experiment(_config(root, "per_fold"), tmp_path / "out", False, max_folds=2)
    predictions = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert predictions["fold"].nunique() == 2
    assert metrics["overall"]["n"] == len(predictions) < len(flow_records)


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--subjects", "3", "--clips", "3", "--epochs", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "result" / "metrics.json").read_text())
    assert set(metrics["overall"]) == {"accuracy", "uf1", "uar", "n"}
    assert metrics["overall"]["n"] == 9
    assert {"config", "versions", "seconds", "per_dataset"} <= set(metrics)
    table = pd.read_csv(out / "result" / "predictions.csv")
    expected = ["sample_id", "subject", "dataset", "fold", "y_true", "y_pred"]
    assert list(table.columns) == expected + ["p_negative", "p_positive", "p_surprise"]
    assert (out / "result" / "report.md").is_file() and (out / "result" / "confusion.png").is_file()


@pytest.fixture
def flat_set(tmp_path, flow_records) -> Path:
    return write_flat(flow_records, tmp_path)


def test_missing_image_names_file_and_row(flat_set):
    table = pd.read_csv(flat_set, dtype=str)
    missing = (
        flat_set.parent
        / "STSNet_whole_norm_u_v_os"
        / f"{table['sub'][4]}_{table['filename_o'][4]} .png"
    )
    missing.unlink()
    with pytest.raises(
        DataError, match=r"combined_3_class2_for_optical_flow\.csv, row 6: flow image"
    ):
        datasets.load("flow_images", flat_set.parent, on_error="raise")
    report = Report()  # the default, on_error="skip": that row alone is left out, named
    kept = datasets.load("flow_images", flat_set.parent, report=report)
    assert len(kept) == len(table) - 1
    assert [(p.file.name, p.row) for p in report.errors] == [(flat_set.name, 6)]


def test_unknown_label_names_file_and_row(flat_set):
    table = pd.read_csv(flat_set, dtype=str)
    table.loc[2, "label"] = "7"
    table.to_csv(flat_set, index=False)
    with pytest.raises(DataError, match=r"\.csv, row 4: unknown label '7'"):
        datasets.load("flow_images", flat_set.parent, on_error="raise")
    report = Report()
    assert len(datasets.load("flow_images", flat_set.parent, report=report)) == len(table) - 1
    assert [(p.row, "unknown label '7'" in p.reason) for p in report.errors] == [(4, True)]


def test_csv_without_label_column_names_the_column(flat_set):
    pd.read_csv(flat_set, dtype=str).drop(columns="label").to_csv(flat_set, index=False)
    with pytest.raises(DataError, match=r"\.csv: missing column 'label'"):
        datasets.load("flow_images", flat_set.parent)


def test_cli_reports_bad_data_in_one_line(flat_set, tmp_path):
    from microexpr.cli import main

    pd.read_csv(flat_set, dtype=str).drop(columns="label").to_csv(flat_set, index=False)
    runner = CliRunner()
    args = ["benchmark", "composite", "--data", str(flat_set.parent), "--set", "train.epochs=1"]
    result = runner.invoke(app, args + ["--out", str(tmp_path / "o")])
    assert isinstance(result.exception, DataError)
    with pytest.raises(SystemExit) as stop:
        import sys

        sys.argv = ["microexpr", *args, "--out", str(tmp_path / "o2")]
        main()
    assert stop.value.code == 1


@pytest.mark.slow
def test_composite_benchmark_smoke_on_real_data(composite_root, tmp_path):
    """All 68 real folds for two epochs on CPU: counts and per-database breakdown."""
    args = ["benchmark", "composite", "--data", str(composite_root), "--set", "train.epochs=2"]
    args += ["--set", "train.device=cpu", "--no-save-model"]
    result = CliRunner().invoke(app, args + ["--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["overall"]["n"] == 442
    assert {k: v["n"] for k, v in metrics["per_dataset"].items()} == {
        "casme2": 145,
        "samm": 133,
        "smic": 164,
    }
    assert len(list((tmp_path / "folds").glob("*.csv"))) == 68


def test_plateau_validation_holds_out_whole_training_subjects(tmp_path, flow_records, monkeypatch):
    from microexpr.config import PlateauConfig
    from microexpr.train import trainer

    seen = []
    real = trainer.validation_split

    def spy(n, fraction, seed, labels=None, groups=None):
        fit, val = real(n, fraction, seed, labels, groups)
        seen.append((list(groups), fit, val))
        return fit, val

    monkeypatch.setattr(trainer, "validation_split", spy)
    root = write_flat(flow_records, tmp_path / "data").parent
    cfg = _config(root, "per_fold", plateau=PlateauConfig(val_fraction=0.25, patience=1))
    run_experiment(cfg, tmp_path / "out", progress=False)
    assert len(seen) == 7  # one split per LOSO fold, then the final model's on all subjects
    for k, (groups, fit, val) in enumerate(seen):
        # the five training subjects, never the test subject (the final model: all six)
        assert len(set(groups)) == (5 if k < 6 else 6)
        assert not {groups[i] for i in fit} & {groups[i] for i in val}


def test_composite_config_file_is_the_benchmark_command():
    from microexpr.config import load_config

    cfg = load_config(Path(__file__).parents[1] / "configs" / "composite_ststnet.yaml")
    defaults = TrainConfig()
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr) == (800, 256, 5e-5)
    assert (cfg.train.shuffle, cfg.train.group_by_label) == (False, True)
    assert cfg.train.optimizer == defaults.optimizer and cfg.train.loss == defaults.loss
    assert cfg.model.name == "ststnet" and cfg.data.taxonomy == "composite3"
    from microexpr.cli import COMPOSITE_STSTNET
    from microexpr.config import config_from

    assert config_from(COMPOSITE_STSTNET) == cfg  # `benchmark composite` runs this file
