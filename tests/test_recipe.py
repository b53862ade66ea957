"""Config -> Plan: defaults filled once, overrides, and every bad option refused before a run
folder is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from microexpr.config import ConfigError, config_from, load_config, parse_overrides
from microexpr.models.flow_nets import ststnet
from microexpr.plan import Plan
from microexpr.recipe import resolve
from microexpr.synth.replicas.flow_images import write_flat
from microexpr.train.experiment import create_model, run_experiment

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def plan_of(raw: dict | None = None, *overrides: str, path: str | None = None) -> Plan:
    cfg = (
        load_config(CONFIGS / path, list(overrides)) if path else config_from(raw or {}, overrides)
    )
    return resolve(cfg)


def test_the_default_plan_is_the_published_stst_recipe_on_flow_images():
    plan = plan_of()
    assert (plan.model, plan.input.kind, plan.input.size, plan.input.scaling) == (
        "ststnet",
        "flow_image",
        28,
        "raw",
    )
    assert plan.preprocess is None  # the reader's flow images are the input
    assert plan.classes == ("negative", "positive", "surprise")
    assert plan.train.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert plan.engine == "stacked"  # measured faster on CPU and GPU (docs/speed.md)


def test_seed_configs_get_their_own_preprocessing_from_the_model_and_reader():
    seed2 = plan_of(path="seed002_casme2.yaml")
    assert seed2.input.scaling == "imagenet" and seed2.input.size == 224
    pre = seed2.preprocess
    assert (pre.pipeline, pre.size, pre.align, pre.apex_method) == (
        "apex_face",
        224,
        "landmarks",
        "region_difference",
    )
    small = plan_of(None, "model.input_size=64", path="seed002_casme2.yaml")
    assert small.input.size == small.preprocess.size == 64
    seed3 = plan_of(path="seed003_casme2.yaml")
    assert seed3.preprocess.pipeline == "face_clip" and seed3.preprocess.num_frames is None
    assert seed3.model_options["num_frames"] == 16 and seed3.preprocess.gray
    seed4 = plan_of(path="seed004_casme2.yaml")
    assert (seed4.preprocess.pipeline, seed4.preprocess.num_frames) == ("flow_clip", 16)
    assert seed4.input.scaling == "flow_max" and seed4.model_options["input_size"] == 112
    fer = plan_of(path="seed001_fer2013.yaml")
    assert fer.preprocess is None and fer.input.in_chans == 1  # still images as they are
    faces = plan_of(path="seed000_composite.yaml")
    assert faces.preprocess is None and faces.input.kind == "apex_image"


def test_a_plan_survives_json():
    plan = plan_of(path="seed004_casme2.yaml")
    assert Plan.model_validate_json(plan.model_dump_json()) == plan


def test_overrides_are_typed_and_nested():
    parsed = parse_overrides(
        ["train.epochs=3", "train.lr=1e-4", "train.shuffle=true", "clip.angles=[5, 10]"]
    )
    assert parsed == {
        "train": {"epochs": 3, "lr": 1e-4, "shuffle": True},
        "clip": {"angles": [5, 10]},
    }
    cfg = config_from({"train": {"epochs": 800, "batch_size": 4}}, ["train.epochs=2"])
    assert (cfg.train.epochs, cfg.train.batch_size) == (2, 4)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_overrides(["train.epochs"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.options.dropot=0.5"], "model.options"),
        (["data.options.colums={onset: 3}"], r"data.options: unknown option\(s\) colums"),
        (["protocol.name=kfold", "protocol.options.folds=3"], "protocol.options"),
        (["train.loss=focal", "train.loss_kwargs.gama=2"], "train.loss_kwargs"),
        (["model.name=stst"], "model.name: unknown model 'stst'"),
        (["data.taxonomy=composite-3"], "data.taxonomy: unknown taxonomy"),
        (["train.batch_size=0"], "train.batch_size"),
        (["train.epochs=-1"], "train.epochs"),
        (["train.lr=0"], "train.lr"),
        (["train.device=gpu"], "train.device"),
        (["model.input_size=4"], "model.input_size"),
        (["engine=stacked", "train.loss=focal"], "engine: stacked"),
    ],
)
def test_bad_settings_fail_before_the_run_folder_is_written(tmp_path, overrides, message):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=message):
        run_experiment(config_from({"data": {"root": str(tmp_path)}}, overrides), out)
    assert not (out / "config.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_asked_for_on_a_machine_without_one_is_refused():
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        plan_of(None, "train.device=cuda")


def test_a_changed_config_names_the_keys_and_a_failed_run_blocks_nothing(tmp_path, flow_records):
    root = write_flat(flow_records, tmp_path / "data").parent
    out = tmp_path / "out"
    base = {"data": {"root": str(root)}, "train": {"epochs": 1, "batch_size": 8}}
    with pytest.raises(FileNotFoundError):  # a wrong --data: nothing is left behind
        run_experiment(config_from(base, [f"data.root={tmp_path / 'nowhere'}"]), out, False)
    assert not (out / "config.json").exists()
    run_experiment(config_from(base), out, False, max_folds=1, save_model=False)
    with pytest.raises(ConfigError, match=r"train\.epochs, train\.lr differ"):
        run_experiment(config_from(base, ["train.epochs=2", "train.lr=1e-3"]), out, False)


def test_pretrained_weights_with_another_head_and_channels_are_adapted(tmp_path):
    """A 1000-class, 3-channel state dict into a 5-class, 1-channel model, with the report."""
    file = tmp_path / "imagenet-like.safetensors"
    save_file(ststnet(num_classes=1000, in_chans=3).state_dict(), str(file))
    plan = plan_of(
        {"data": {"name": "casme2", "taxonomy": "casme2-5"}, "model": {"in_chans": 1}},
        f"model.weights={file}",
    )
    model, report = create_model(plan)
    assert len(plan.classes) == 5 and report.adapted and report.dropped_head
    assert all(channels == (3, 1) for channels in report.adapted.values())
    assert "adapted input conv" in report.summary() and "dropped classifier" in report.summary()
    first = next(iter(report.adapted))  # as timm does for one channel: the sum over RGB
    expected = load_file(file)[first].sum(dim=1, keepdim=True)
    assert torch.allclose(model.state_dict()[first], expected)
