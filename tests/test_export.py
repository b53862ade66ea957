"""ONNX export: for each model kind the exported bundle gives the PyTorch bundle's
probabilities (within 1e-4 on 32 random inputs) and labels, through `load_bundle`,
`predict` and the command line; a broken or foreign model.onnx is refused in one line."""

from __future__ import annotations

import json
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_bundle import KINDS, flow_set
from typer.testing import CliRunner

from microexpr import load_bundle
from microexpr.bundle import Bundle, BundleError, OnnxBundle, save_bundle
from microexpr.cli import app
from microexpr.config import config_from
from microexpr.export import ExportError, export_onnx, parity, random_inputs, write_graph
from microexpr.inference import build_model
from microexpr.inputs import encode_labels, model_inputs
from microexpr.recipe import resolve
from microexpr.synth import write_synthetic
from microexpr.train.experiment import load_samples, save_final_model

onnxruntime = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")

TOLERANCE = 1e-4


def trained_flow_bundle(tmp_path: Path, flow_records, **overrides) -> Path:
    """An STSTNet bundle trained for one epoch on random flow images (a few seconds)."""
    root = flow_set(tmp_path, flow_records)
    raw = {"data": {"root": str(root)}, "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3}}
    plan = resolve(config_from({**raw, **overrides}))
    inputs = model_inputs(load_samples(plan), plan)
    targets = encode_labels(inputs.samples, plan.classes)
    save_final_model(plan, inputs, targets, tmp_path / "model", raw, progress=False)
    return tmp_path / "model"


def random_bundle(kind: str, path: Path) -> Path:
    """A bundle of the kind's model with random weights, saved as training saves one."""
    plan = resolve(config_from(KINDS[kind]))
    torch.manual_seed(0)
    return save_bundle(path, [build_model(plan)], plan, KINDS[kind], {})


def random_arrays(bundle: Bundle, count: int) -> list[np.ndarray]:
    """Arrays as the bundle's preprocessing makes them: faces or frame clips, uint8."""
    spec, rng = bundle.plan.input, np.random.default_rng(1)
    shape = (spec.size, spec.size, spec.in_chans)
    if spec.is_clip:
        shape = (spec.num_frames, *shape)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]


def assert_same_predictions(torch_bundle: Bundle, onnx_bundle: Bundle, data: list) -> None:
    expected, table = torch_bundle.predict(data), onnx_bundle.predict(data)
    assert list(table["label"]) == list(expected["label"])
    columns = [c for c in expected.columns if c.startswith("p_")]
    diff = np.abs(table[columns].to_numpy() - expected[columns].to_numpy()).max()
    assert diff <= TOLERANCE


def assert_parity(source: Path, exported: Path) -> None:
    """32 random inputs: ONNX Runtime within TOLERANCE of PyTorch, in one batch and one by one
    (the batch axis is dynamic)."""
    reference, export = load_bundle(source), load_bundle(exported)
    diff = parity(reference, export, 32)
    assert diff <= TOLERANCE
    inputs = random_inputs(reference.plan, 32)
    one_by_one = export.probabilities(inputs, batch_size=1)
    assert np.abs(one_by_one - export.probabilities(inputs, batch_size=32)).max() <= 1e-6


def assert_manifest(source: Path, exported: Path) -> None:
    """The source's manifest (Plan, classes, ...) plus the runtime, opset and the graph's io."""
    before = json.loads((source / "bundle.json").read_text())
    after = json.loads((exported / "bundle.json").read_text())
    assert after["runtime"] == "onnx" and "runtime" not in before
    assert {k: v for k, v in after.items() if k not in ("runtime", "onnx")} == before
    onnx = after["onnx"]
    assert onnx["opset"] >= 18 and onnx["file"] == "model.onnx"
    shape = onnx["inputs"][0]["shape"]
    assert shape[0] == "batch" and shape[1] == before["input"]["in_chans"]
    assert onnx["outputs"] == [
        {"name": "probabilities", "shape": ["batch", len(before["classes"])], "dtype": "float32"}
    ]
    assert sorted(p.name for p in exported.iterdir()) == ["bundle.json", "model.onnx"]


def test_a_flow_image_export_predicts_what_its_bundle_predicts(tmp_path, flow_records):
    source = trained_flow_bundle(tmp_path, flow_records)
    exported = export_onnx(source, tmp_path / "onnx")
    assert exported.runtime == "onnx" and exported.kind == "flow_image"
    assert_manifest(source, tmp_path / "onnx")
    assert_parity(source, tmp_path / "onnx")
    samples = load_samples(exported.plan)
    assert_same_predictions(load_bundle(source), load_bundle(tmp_path / "onnx"), samples)


# A ResNet-50 exports in about 15 s on 2 cores; the tiny 3-D CNN in a few.
@pytest.mark.parametrize("kind", [pytest.param("apex_face", marks=pytest.mark.slow), "clip"])
def test_a_face_or_clip_export_predicts_what_its_bundle_predicts(kind, tmp_path):
    source = random_bundle(kind, tmp_path / "model")
    export_onnx(source, tmp_path / "onnx")
    assert_manifest(source, tmp_path / "onnx")
    assert_parity(source, tmp_path / "onnx")
    reference = load_bundle(source)
    assert_same_predictions(reference, load_bundle(tmp_path / "onnx"), random_arrays(reference, 8))


@pytest.fixture(scope="module")
def casme2(tmp_path_factory) -> Path:
    """Two subjects of CASME II-layout clips on real faces (as tests/test_bundle.py)."""
    root = tmp_path_factory.mktemp("casme2")
    write_synthetic("casme2", root, 2, 3, size=96, seed=3, n_frames=10)
    return root


# Training on aligned faces and on clips of the synthetic CASME II: slow on 2 cores.
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["apex_face", "clip"])
def test_a_trained_bundle_exports_and_predicts_samples_alike(kind, tmp_path, casme2):
    raw = json.loads(json.dumps(KINDS[kind]))
    raw["data"]["root"] = str(casme2)
    raw["train"].update(epochs=1, device="cpu", lr=1e-3)
    plan = resolve(config_from(raw))
    inputs = model_inputs(load_samples(plan), plan, cache=tmp_path / "cache")
    targets = encode_labels(inputs.samples, plan.classes)
    trained = save_final_model(plan, inputs, targets, tmp_path / "model", raw, progress=False)
    exported = export_onnx(tmp_path / "model", tmp_path / "onnx")
    assert_parity(tmp_path / "model", tmp_path / "onnx")
    expected = trained.predict(inputs.samples, cache=tmp_path / "cache")
    table = exported.predict(load_samples(plan), cache=tmp_path / "cache")
    assert list(table["label"]) == list(expected["label"])
    assert list(table["id"]) == list(expected["id"])


def test_an_ensemble_exports_as_one_graph_averaging_its_members(tmp_path, flow_records):
    source = trained_flow_bundle(tmp_path, flow_records, ensemble=2)
    exported = export_onnx(source, tmp_path / "onnx")
    assert exported.manifest["members"] == 2 and exported.manifest["onnx"]["members_averaged"] == 2
    assert len(load_bundle(source).members) == 2
    assert_parity(source, tmp_path / "onnx")


def test_export_and_predict_from_the_command_line(tmp_path, flow_records):
    source = trained_flow_bundle(tmp_path, flow_records)
    runner = CliRunner()
    out = tmp_path / "onnx"
    result = runner.invoke(app, ["export", str(source), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "max |difference|" in result.output and (out / "model.onnx").is_file()
    data = str(tmp_path / "flow")
    for bundle, folder in ((source, "p_torch"), (out, "p_onnx")):
        args = ["predict", str(bundle), "--data", data, "--out", str(tmp_path / folder)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    by_torch = pd.read_csv(tmp_path / "p_torch" / "predictions.csv")
    by_onnx = pd.read_csv(tmp_path / "p_onnx" / "predictions.csv")
    assert list(by_onnx["label"]) == list(by_torch["label"]) and len(by_onnx) == len(flow_records)
    result = runner.invoke(app, ["export", str(source), "--format", "tflite", "--out", str(out)])
    assert result.exit_code != 0 and "known formats: onnx" in result.output


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/microexpr-onnx-pickle-ran"),))


def test_a_corrupt_or_foreign_model_onnx_is_refused_in_one_line(tmp_path, flow_records):
    source = trained_flow_bundle(tmp_path, flow_records)
    out = tmp_path / "onnx"
    export_onnx(source, out)
    graph = (out / "model.onnx").read_bytes()
    marker = Path("/tmp/microexpr-onnx-pickle-ran")
    marker.unlink(missing_ok=True)
    for broken in (graph[: len(graph) // 2], b"not a model", pickle.dumps(_Payload())):
        (out / "model.onnx").write_bytes(broken)
        with pytest.raises(BundleError, match="model.onnx: not a readable ONNX model") as err:
            load_bundle(out)
        assert "\n" not in str(err.value) and str(out / "model.onnx") in str(err.value)
    assert not marker.exists()
    result = CliRunner().invoke(app, ["predict", str(out), "--data", ".", "--out", str(tmp_path)])
    assert isinstance(result.exception, BundleError)

    # a well-formed graph of another model (here 5 classes and 1-channel 48 px input)
    other = resolve(config_from({"data": {"name": "casme2"}, "model": {"name": "psa_resnet50"}}))
    wrong = Probe(len(other.classes), other.input.in_chans).eval()
    torch.onnx.export(
        wrong,
        (torch.zeros(2, other.input.in_chans, 48, 48),),
        out / "model.onnx",
        dynamo=True,
        input_names=["input"],
        output_names=["probabilities"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        external_data=False,
        verbose=False,
    )
    with pytest.raises(BundleError, match="model.onnx: does not fit ststnet") as err:
        load_bundle(out)
    assert "\n" not in str(err.value)
    (out / "model.onnx").unlink()
    with pytest.raises(BundleError, match="needs bundle.json and model.onnx"):
        load_bundle(out)


class Probe(torch.nn.Module):
    """The smallest network with another input and class count than the bundle's."""

    def __init__(self, num_classes: int, in_chans: int):
        super().__init__()
        self.head = torch.nn.Linear(in_chans, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(x.mean((2, 3))), dim=1)


def test_a_graph_that_computes_something_else_is_not_exported(tmp_path, flow_records, monkeypatch):
    source = trained_flow_bundle(tmp_path, flow_records)
    run_network = OnnxBundle.run_network

    def classes_reversed(self, *args):  # an export that lost the class order
        return run_network(self, *args)[:, ::-1].copy()

    monkeypatch.setattr(OnnxBundle, "run_network", classes_reversed)
    with pytest.raises(ExportError, match=r"model.onnx: ONNX Runtime differs .* not exported"):
        export_onnx(source, tmp_path / "onnx")
    assert not list((tmp_path / "onnx").iterdir())


def test_an_export_is_refused_where_it_would_mix_or_repeat(tmp_path, flow_records):
    source = trained_flow_bundle(tmp_path, flow_records)
    with pytest.raises(ExportError, match="is the source bundle"):
        export_onnx(source, source)
    export_onnx(source, tmp_path / "onnx")
    with pytest.raises(ExportError, match="already an ONNX export"):
        export_onnx(tmp_path / "onnx", tmp_path / "again")
    other = shutil.copytree(source, tmp_path / "other-model")
    with pytest.raises(ExportError, match="holds a PyTorch bundle"):
        export_onnx(source, other)


def test_without_the_onnx_extra_the_error_names_it(tmp_path, flow_records, monkeypatch):
    source = trained_flow_bundle(tmp_path, flow_records)
    export_onnx(source, tmp_path / "onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    with pytest.raises(BundleError, match=r"needs onnxruntime \(pip install 'microexpr\[onnx\]'\)"):
        load_bundle(tmp_path / "onnx")
    with pytest.raises(ExportError, match=r"needs onnxruntime: pip install 'microexpr\[onnx\]'"):
        export_onnx(source, tmp_path / "again")
    assert load_bundle(source).runtime == "torch"  # a PyTorch bundle needs none of it


class MedianFlow(torch.nn.Module):
    """u relative to its per-image median and the flow magnitude: the two ops (as the HOOF
    baseline uses them) that torch.onnx has no translation of."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = x[:, 0].flatten(1), x[:, 1].flatten(1)
        centred = u - u.median(dim=1).values[:, None]
        scores = torch.stack([torch.hypot(centred, v).mean(1), centred.mean(1)], dim=1)
        return torch.softmax(scores / 100, dim=1)


def test_ops_torch_cannot_translate_are_exported_by_ours(tmp_path, monkeypatch):
    network, x = MedianFlow(), torch.rand(16, 2, 8, 8) * 255
    write_graph(network, x[:2], tmp_path / "model.onnx", "medianflow")
    session = onnxruntime.InferenceSession(
        tmp_path / "model.onnx", providers=["CPUExecutionProvider"]
    )
    found = session.run(None, {"input": x.numpy()})[0]
    assert np.abs(found - network(x).numpy()).max() <= TOLERANCE
    monkeypatch.setattr("microexpr.export.translations", dict)  # torch.onnx's own table only
    with pytest.raises(
        ExportError, match=r"medianflow: torch.onnx cannot export it \(.*median"
    ) as err:
        write_graph(network, x[:2], tmp_path / "other.onnx", "medianflow")
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
