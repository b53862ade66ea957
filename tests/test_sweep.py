"""Nested selection without Ray: ``microexpr sweep --backend local`` and ``protocol.inner``
run the one implementation in train/sweep.py and agree."""

from __future__ import annotations

import json

import pandas as pd
import yaml
from typer.testing import CliRunner

from microexpr.cli import app
from microexpr.config import ExperimentConfig
from microexpr.synth.replicas.flow_images import write_flat
from microexpr.train import sweep
from microexpr.train.experiment import run_experiment

TRAIN = {"epochs": 2, "batch_size": 8, "lr": 1e-3, "device": "cpu"}


def test_sweep_command_and_protocol_inner_choose_and_score_alike(tmp_path, flow_records):
    root = write_flat(flow_records, tmp_path / "data").parent
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({"train": TRAIN, "engine": "per_fold"}))
    args = ["sweep", str(config), "--data", str(root), "--out", str(tmp_path / "sweep")]
    args += ["--grid", "train.lr=1e-3,1e-2", "--inner-folds", "2", "--max-folds", "2"]
    result = CliRunner().invoke(app, [*args, "--backend", "local", "-q"])
    assert result.exit_code == 0, result.output
    other = [*args[:-6], "--grid", "train.lr=1e-4,1e-2", *args[-4:], "--backend", "local", "-q"]
    refused = CliRunner().invoke(app, other)  # its folds must not pass for another grid's
    assert refused.exit_code != 0 and "protocol.inner" in str(refused.exception)
    inner = {"folds": 2, "grid": {"train.lr": [1e-3, 1e-2]}}
    cfg = ExperimentConfig.model_validate(
        {
            "data": {"root": str(root)},
            "train": TRAIN,
            "engine": "per_fold",
            "protocol": {"name": "loso", "inner": inner},
        }
    )
    metrics = run_experiment(cfg, tmp_path / "inner", False, max_folds=2, save_model=False)
    by_cli = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    by_train = json.loads((tmp_path / "inner" / "sweep.json").read_text())
    assert by_cli["inner_uf1"] == by_train["inner_uf1"]

    def picks(record: dict) -> dict[str, int]:  # the texts differ: 1e-3 on the command line
        return {k: record["candidates"].index(v) for k, v in record["chosen"].items()}

    assert picks(by_cli) == picks(by_train) and len(by_train["chosen"]) == 2
    assert metrics["overall"]["n"] == 8  # two outer test subjects, four clips each
    assert metrics["config"]["nested_selection"]["chosen"] == by_train["chosen"]
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "sweep" / "predictions.csv"),
        pd.read_csv(tmp_path / "inner" / "predictions.csv"),
    )


def test_protocol_inner_saves_a_final_model_chosen_inside_all_subjects(tmp_path, flow_records):
    root = write_flat(flow_records, tmp_path / "data").parent
    cfg = ExperimentConfig.model_validate(
        {
            "data": {"root": str(root)},
            "model": {"name": "hoof_svm"},  # fitted, not trained: fast
            "protocol": {
                "name": "loso",
                "inner": {"folds": 2, "grid": {"model.options.C": [0.1, 1]}},
            },
        }
    )
    run_experiment(cfg, tmp_path / "out", False, max_folds=1)
    record = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert sweep.FINAL_FOLD in record["chosen"]  # chosen by an inner split of all subjects
    assert (tmp_path / "out" / "model" / "bundle.json").is_file()
