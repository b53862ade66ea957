"""Pretraining: a model trained on synthetic clips or a held database, its weights loaded
into the micro-expression model, and weights that saw a run's subjects refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from microexpr.cli import app
from microexpr.config import ConfigError, DataConfig, ExperimentConfig, load_config
from microexpr.labels import get as get_taxonomy
from microexpr.recipe import resolve
from microexpr.synth import write_synthetic
from microexpr.synth.replicas.flow_images import write_flat
from microexpr.synth.sources import SOURCE_MARKER, synthetic_source
from microexpr.train.experiment import create_model, run_experiment
from microexpr.train.pretrain import pretrain

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL_SSSNET = [
    "train.epochs=1",
    "train.device=cpu",
    "model.input_size=28",
    "model.options.input_size=28",
]


def with_weights(cfg: ExperimentConfig, weights: str) -> ExperimentConfig:
    """``cfg`` fine-tuned from ``weights`` (``--set model.weights=...``)."""
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"weights": weights})})


def test_synthetic_pretraining_starts_the_flow_model_but_its_classifier(tmp_path, flow_records):
    write_flat(flow_records, tmp_path / "data")
    cfg = load_config(CONFIGS / "sssnet.yaml", [f"data.root={tmp_path / 'data'}", *SMALL_SSSNET])
    source = synthetic_source(cfg, tmp_path / "pre" / "source", subjects=3, clips=7)
    bundle = pretrain(cfg, tmp_path / "pre", source, progress=False)

    assert bundle.classes == get_taxonomy("ck-7").classes  # planted actions of seven emotions
    record = bundle.manifest["trained_on"]
    assert record["samples"] == 21 and record["subjects"][0].startswith("synthetic/")
    weights = tmp_path / "pre" / "weights.safetensors"
    tuned = with_weights(cfg, str(weights))
    model, report = create_model(resolve(tuned))
    assert report.reinitialised == ["fc.weight", "fc.bias"]  # 7 classes there, 3 here
    assert not report.mismatched and not report.unexpected
    saved = load_file(weights)
    for key, value in model.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(value, saved[key]), key
    # the fine-tuning run starts from the file and scores its fold
    metrics = run_experiment(tuned, tmp_path / "run", False, max_folds=1, save_model=False)
    assert metrics["overall"]["n"] == 4


def test_a_synthetic_source_is_reused_only_with_the_same_settings(tmp_path, flow_records):
    write_flat(flow_records, tmp_path / "data")
    cfg = load_config(CONFIGS / "sssnet.yaml", [f"data.root={tmp_path / 'data'}", *SMALL_SSSNET])
    folder = tmp_path / "source"
    first = synthetic_source(cfg, folder, subjects=2, clips=7)
    stamp = (folder / SOURCE_MARKER).stat().st_mtime_ns
    assert synthetic_source(cfg, folder, subjects=2, clips=7) == first
    assert (folder / SOURCE_MARKER).stat().st_mtime_ns == stamp  # nothing written again
    with pytest.raises(ConfigError, match="other settings"):
        synthetic_source(cfg, folder, subjects=3, clips=7)


def test_a_held_macro_database_pretrains_a_face_model(tmp_path):
    write_synthetic("fer2013", tmp_path / "fer", n_subjects=2, clips_per_subject=7, size=48)
    cfg = load_config(
        CONFIGS / "seed000_composite.yaml",
        ["model.name=mobilenetv2", "model.input_size=48", "train.epochs=1", "train.device=cpu"],
    )
    source = DataConfig(name="fer2013", root=str(tmp_path / "fer"), taxonomy="fer-7")
    bundle = pretrain(cfg, tmp_path / "pre", source, progress=False)
    assert bundle.classes == get_taxonomy("fer-7").classes
    assert bundle.manifest["trained_on"]["samples"] == 14
    weights = str(tmp_path / "pre" / "weights.safetensors")
    tuned = with_weights(cfg, weights)
    _, report = create_model(resolve(tuned))
    assert set(report.dropped_head) == {"classifier.weight", "classifier.bias"}
    assert len(report.loaded) == report.total - 2


def test_a_source_of_another_input_kind_is_refused(tmp_path):
    write_synthetic("fer2013", tmp_path / "fer", n_subjects=1, clips_per_subject=2, size=48)
    cfg = load_config(CONFIGS / "sssnet.yaml", SMALL_SSSNET)
    source = DataConfig(name="fer2013", root=str(tmp_path / "fer"), taxonomy="fer-7")
    with pytest.raises(ConfigError, match="flow_image"):
        pretrain(cfg, tmp_path / "pre", source, progress=False)


def test_cli_refuses_a_held_database_of_another_input_kind(tmp_path):
    """--data and --set data.* name the source; the config's own data (flow images here) is
    what the model is pretrained for, so a face database is refused for a flow model."""
    write_synthetic("fer2013", tmp_path / "fer", n_subjects=1, clips_per_subject=2, size=48)
    args = ["pretrain", str(CONFIGS / "sssnet.yaml"), "--out", str(tmp_path / "pre")]
    source = ["--data", str(tmp_path / "fer"), "--set", "data.name=fer2013"]
    result = CliRunner().invoke(app, [*args, *source, "--set", "data.taxonomy=fer-7", "--quiet"])
    assert isinstance(result.exception, ConfigError) and "flow_image" in str(result.exception)


def test_weights_trained_on_a_subject_of_the_run_are_refused(tmp_path, flow_records):
    """Pretraining on the run's own database would put every test subject's labels into the
    model that is then scored on it: the run stops before any fold."""
    write_flat(flow_records, tmp_path / "data")
    cfg = load_config(CONFIGS / "sssnet.yaml", [f"data.root={tmp_path / 'data'}", *SMALL_SSSNET])
    pretrain(cfg, tmp_path / "pre", cfg.data, progress=False)
    weights = str(tmp_path / "pre" / "weights.safetensors")
    tuned = with_weights(cfg, weights)
    with pytest.raises(ConfigError, match="trained on 6 subjects of this run"):
        run_experiment(tuned, tmp_path / "run", False, max_folds=1, save_model=False)
    assert not (tmp_path / "run" / "config.json").exists()
    # the same weights with their record removed are a file from elsewhere: taken as given
    (tmp_path / "pre" / "bundle.json").unlink()
    run_experiment(tuned, tmp_path / "run", False, max_folds=1, save_model=False)


def test_cli_pretrain_needs_exactly_one_source_and_prints_the_fine_tuning_flag(tmp_path):
    runner = CliRunner()
    config = str(CONFIGS / "sssnet.yaml")
    neither = runner.invoke(app, ["pretrain", config, "--out", str(tmp_path / "a")])
    assert neither.exit_code != 0 and "give a source" in neither.output
    out = tmp_path / "pre"
    args = ["pretrain", config, "--out", str(out), "--synthetic", "2", "--clips", "7"]
    sets = [x for item in SMALL_SSSNET for x in ("--set", item)]
    result = runner.invoke(app, [*args, *sets, "--quiet"])
    assert result.exit_code == 0, result.output
    assert "model.weights=" in result.output.replace("\n", "")
    assert json.loads((out / "source" / SOURCE_MARKER).read_text())["subjects"] == 2
    assert (out / "weights.safetensors").is_file()


def test_the_stacked_ststnet_engine_fine_tunes_from_pretrained_weights(tmp_path, flow_records):
    """STSTNet's default engine trains every fold in one stack: it must start from the
    file too, not print the load report and train from random init."""
    write_flat(flow_records, tmp_path / "data")
    sets = [f"data.root={tmp_path / 'data'}", "train.epochs=2", "train.device=cpu"]
    cfg = load_config(CONFIGS / "composite_ststnet.yaml", sets)
    assert resolve(cfg).engine == "stacked"
    source = synthetic_source(cfg, tmp_path / "pre" / "source", subjects=2, clips=7)
    pretrain(cfg, tmp_path / "pre", source, progress=False)
    weights = str(tmp_path / "pre" / "weights.safetensors")
    tuned = with_weights(cfg, weights)
    run_experiment(tuned, tmp_path / "tuned", False, max_folds=1, save_model=False)
    run_experiment(cfg, tmp_path / "plain", False, max_folds=1, save_model=False)
    columns = ["p_negative", "p_positive", "p_surprise"]
    tuned_probs = pd.read_csv(tmp_path / "tuned" / "predictions.csv")[columns].to_numpy()
    plain_probs = pd.read_csv(tmp_path / "plain" / "predictions.csv")[columns].to_numpy()
    assert not np.allclose(tuned_probs, plain_probs, atol=1e-4)
