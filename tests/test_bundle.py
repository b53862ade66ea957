"""Model bundles: a run's final model saved with its Plan, loaded in a fresh process, predicting
exactly what the trained model predicted; anything that is not a bundle is refused in one line."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from microexpr import load_bundle
from microexpr.bundle import BundleError
from microexpr.cli import app
from microexpr.config import config_from
from microexpr.inputs import encode_labels, model_inputs
from microexpr.recipe import resolve
from microexpr.synth import write_synthetic
from microexpr.synth.replicas.flow_images import write_flat
from microexpr.train.experiment import load_samples, run_experiment, save_final_model

TINY_3D = {"widths": (4, 4, 8, 8, 8, 8, 8, 8), "hidden": 16, "conv_drop": 0.0}


@pytest.fixture(scope="module")
def casme2(tmp_path_factory) -> Path:
    """Two subjects of CASME II-layout clips on real faces, big enough for the landmarks."""
    root = tmp_path_factory.mktemp("casme2")
    write_synthetic("casme2", root, 2, 3, size=96, seed=3, n_frames=10)
    return root


def flow_set(tmp_path: Path, flow_records) -> Path:
    return write_flat(flow_records, tmp_path / "flow").parent


KINDS = {
    # a flow-image model on the reader's own files
    "flow_image": {"model": {"name": "ststnet"}, "train": {"batch_size": 8}},
    # an apex-face model: the Plan aligns and crops the faces from the raw frames
    "apex_face": {
        "data": {"name": "casme2", "taxonomy": "casme2-5"},
        "model": {"name": "resnet50", "input_size": 32},
        "train": {"batch_size": 4},
    },
    # a clip model on the frames as they are
    "clip": {
        "data": {"name": "casme2", "taxonomy": "casme2-5"},
        "model": {"name": "c3d_vgg", "input_size": 24, "options": TINY_3D},
        "preprocess": {"align": "none", "face_size": 32, "span": "all"},
        "clip": {"num_frames": 4},
        "train": {"batch_size": 4},
    },
}


# The face and clip variants train a ResNet-50 / 3-D CNN and align faces: slow on 2 cores.
@pytest.mark.parametrize(
    "kind",
    [
        "flow_image",
        pytest.param("apex_face", marks=pytest.mark.slow),
        pytest.param("clip", marks=pytest.mark.slow),
    ],
)
def test_a_bundle_predicts_in_a_fresh_process_exactly_what_the_trained_model_did(
    kind, tmp_path, casme2, flow_records
):
    raw = json.loads(json.dumps(KINDS[kind]))
    root = flow_set(tmp_path, flow_records) if kind == "flow_image" else casme2
    raw.setdefault("data", {})["root"] = str(root)
    raw["train"].update(epochs=1, device="cpu", lr=1e-3)
    plan = resolve(config_from(raw))
    samples = load_samples(plan)
    inputs = model_inputs(samples, plan, cache=tmp_path / "cache")
    assert not inputs.failed
    targets = encode_labels(inputs.samples, plan.classes)
    trained = save_final_model(plan, inputs, targets, tmp_path / "model", raw, progress=False)
    expected = trained.predict(inputs.samples, cache=tmp_path / "cache")
    assert len(expected) == len(inputs.samples) and expected["label"].isin(plan.classes).all()

    script = textwrap.dedent(
        f"""
        import numpy as np
        from microexpr import datasets, load_bundle
        bundle = load_bundle({str(tmp_path / "model")!r})
        samples = datasets.load(bundle.plan.data.name, bundle.plan.data.root)
        table = bundle.predict(samples, cache={str(tmp_path / "fresh-cache")!r})
        probs = table[[c for c in table.columns if c.startswith("p_")]].to_numpy()
        np.save({str(tmp_path / "probs.npy")!r}, probs)
        table.to_csv({str(tmp_path / "fresh.csv")!r}, index=False)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    fresh = pd.read_csv(tmp_path / "fresh.csv", dtype={"subject": str})
    probs = np.load(tmp_path / "probs.npy")
    columns = [c for c in expected.columns if c.startswith("p_")]
    assert np.array_equal(probs, expected[columns].to_numpy())  # bitwise, on the CPU
    assert list(fresh["label"]) == list(expected["label"])

    manifest = json.loads((tmp_path / "model" / "bundle.json").read_text())
    assert manifest["format"] == "microexpr-bundle" and manifest["classes"] == list(plan.classes)
    assert manifest["trained_on"]["samples"] == len(inputs.samples)
    assert manifest["input"]["kind"] == plan.input.kind
    assert load_bundle(tmp_path / "model" / "bundle.json").kind == plan.input.kind


def test_a_bundle_takes_arrays_as_its_preprocessing_makes_them(tmp_path, flow_records):
    root = flow_set(tmp_path, flow_records)
    cfg = config_from({"data": {"root": str(root)}, "train": {"epochs": 1, "batch_size": 8}})
    run_experiment(cfg, tmp_path / "run", progress=False, max_folds=1)
    bundle = load_bundle(tmp_path / "run" / "model")
    images = np.stack([image for *_, image in flow_records])
    from_arrays = bundle.predict(images)
    from_files = bundle.predict(load_samples(bundle.plan))
    assert np.allclose(from_arrays["score"], from_files["score"])
    assert "id" not in from_arrays and len(from_arrays) == len(flow_records)


def test_train_writes_a_bundle_and_predict_scores_a_folder(tmp_path, flow_records):
    root = flow_set(tmp_path, flow_records)
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  epochs: 1\n  batch_size: 8\nprotocol:\n  name: loso\n")
    runner = CliRunner()
    args = ["train", str(config), "--data", str(root), "--out", str(tmp_path / "r")]
    result = runner.invoke(app, args + ["--max-folds", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "model" / "weights.safetensors").is_file()
    result = runner.invoke(
        app,
        [
            "predict",
            str(tmp_path / "r" / "model"),
            "--data",
            str(root),
            "--out",
            str(tmp_path / "p"),
        ],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "p" / "predictions.csv")
    assert len(table) == len(flow_records) and {"label", "score", "p_negative"} <= set(table)
    assert "accuracy" in result.output


def test_per_fold_models_on_request(tmp_path, flow_records):
    root = flow_set(tmp_path, flow_records)
    cfg = config_from({"data": {"root": str(root)}, "train": {"epochs": 1, "batch_size": 8}})
    run_experiment(cfg, tmp_path / "r", False, max_folds=2, save_model=False, save_fold_models=True)
    folds = sorted(p.name for p in (tmp_path / "r" / "fold_models").iterdir())
    assert len(folds) == 2 and not (tmp_path / "r" / "model").exists()
    held_out = load_bundle(tmp_path / "r" / "fold_models" / folds[0]).manifest["trained_on"]
    assert len(held_out["subjects"]) == 5  # the fold's training subjects only


def _bundle(tmp_path: Path, flow_records) -> Path:
    root = flow_set(tmp_path, flow_records)
    cfg = config_from({"data": {"root": str(root)}, "train": {"epochs": 1, "batch_size": 8}})
    run_experiment(cfg, tmp_path / "run", False, max_folds=1)
    return tmp_path / "run" / "model"


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/microexpr-pickle-ran"),))


def test_anything_but_a_bundle_is_refused_in_one_line(tmp_path, flow_records):
    with pytest.raises(BundleError, match="not a model bundle"):
        load_bundle(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(BundleError, match="not a model bundle"):
        load_bundle(text)
    model = _bundle(tmp_path, flow_records)
    marker = Path("/tmp/microexpr-pickle-ran")
    marker.unlink(missing_ok=True)
    (model / "weights.safetensors").write_bytes(pickle.dumps(_Payload()))  # a renamed pickle
    with pytest.raises(BundleError, match="weights.safetensors: not a safetensors file") as err:
        load_bundle(model)
    assert "\n" not in str(err.value) and not marker.exists()
    (model / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="not JSON"):
        load_bundle(model)
    result = CliRunner().invoke(app, ["predict", str(text), "--data", ".", "--out", str(tmp_path)])
    assert isinstance(result.exception, BundleError)


def test_weights_that_do_not_fit_the_plan_are_refused(tmp_path, flow_records):
    model = _bundle(tmp_path, flow_records)
    manifest = json.loads((model / "bundle.json").read_text())
    manifest["plan"]["model"] = "offapexnet"
    (model / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="weights do not fit offapexnet"):
        load_bundle(model)
