"""A trained model as a folder: ``weights.safetensors`` + ``bundle.json`` (Plan, classes,
config, versions, what it was trained on), or its ONNX export: ``model.onnx`` + the same
``bundle.json`` with ``"runtime": "onnx"`` (``microexpr.export``). What ``predict``,
``analyze``, the web page and the export load. Loading never unpickles anything: JSON,
safetensors and ONNX (protobuf) only. Either kind runs the Plan's preprocessing in Python;
only the network runs in PyTorch or in ONNX Runtime.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from microexpr.evaluate.report import versions
from microexpr.inference import build_model, predict_proba
from microexpr.inputs import ModelInputs, inputs_from_arrays, model_inputs
from microexpr.plan import Plan
from microexpr.samples import Sample
from microexpr.spec import InputSpec

FORMAT = "microexpr-bundle"
FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
MANIFEST = "bundle.json"
# An exported bundle's graph and the names of its one input and one output.
ONNX_MODEL = "model.onnx"
ONNX_INPUT = "input"
ONNX_OUTPUT = "probabilities"
ONNX_EXTRA = "pip install 'microexpr[onnx]'"
RUNTIMES = ("torch", "onnx")
# The array each input kind's pipeline output holds (inputs.inputs_from_arrays).
ARRAY_KEY = {
    "flow_image": "image",
    "apex_image": "image",
    "image": "image",
    "flow_regions": "image",
}
ARRAY_KEY |= {"clip": "frames", "flow_clip": "flow"}


class BundleError(ValueError):
    """A path that is not a loadable model bundle; the message names the file."""


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file, fsync and rename, so a crash never leaves half a file
    under the real name."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def save_bundle(
    path: str | Path,
    members: Sequence[nn.Module],
    plan: Plan,
    config: dict,
    trained_on: dict,
) -> Path:
    """Write ``members`` (one model, or the seeded members of an ensemble) with their Plan.

    The weights go first and ``bundle.json`` last: its presence marks a finished bundle.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for i, model in enumerate(members):
        prefix = "" if len(members) == 1 else f"member{i}."
        for key, value in model.state_dict().items():
            tensors[prefix + key] = value.detach().cpu().contiguous()
    atomic_write(path / WEIGHTS, lambda handle: handle.write(save(tensors)))
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "members": len(members),
        "classes": list(plan.classes),
        "taxonomy": plan.data.taxonomy,
        "input": plan.input.model_dump(mode="json"),
        "plan": plan.model_dump(mode="json"),
        "config": config,
        "trained_on": trained_on,
        "versions": versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    text = json.dumps(manifest, indent=2).encode()
    atomic_write(path / MANIFEST, lambda handle: handle.write(text))
    return path


def network_input_shape(spec: InputSpec) -> tuple[int, ...]:
    """One input of the network, without the batch axis: (C, H, W) or (C, T, H, W)."""
    side = (spec.size, spec.size)
    return (spec.in_chans, spec.num_frames, *side) if spec.is_clip else (spec.in_chans, *side)


@dataclass
class Bundle:
    """A loaded bundle: its Plan, its model(s) in eval mode and its manifest."""

    path: Path
    plan: Plan
    members: list[nn.Module]
    manifest: dict

    @property
    def classes(self) -> tuple[str, ...]:
        return self.plan.classes

    @property
    def kind(self) -> str:
        """The input kind the model reads (flow_image, apex_image, image, clip, flow_clip)."""
        return self.plan.input.kind

    @property
    def runtime(self) -> str:
        """What runs the network: ``torch`` (a trained bundle) or ``onnx`` (an export)."""
        return self.manifest.get("runtime", "torch")

    def predict(
        self,
        data: Sequence[Sample] | Sequence[np.ndarray] | np.ndarray | ModelInputs,
        batch_size: int = 64,
        device: str = "cpu",
        cache: str | Path | None = None,
        progress: bool = False,
    ) -> pd.DataFrame:
        """Class probabilities and predicted labels, one row per input.

        ``data``: Samples (run through the bundle's own preprocessing; ``cache`` reuses the
        feature cache; samples that fail, e.g. no face, are left out and listed in
        ``result.attrs["failed"]``), or arrays as that preprocessing makes them (an
        (N, H, W[, C]) uint8 stack or list of images for 2-D models, (T, H, W[, C]) frame
        clips or (T, H, W, 3) u/v/strain flow clips for 3-D models).
        """
        inputs = self.inputs(data, cache, progress)
        probs = self.probabilities(inputs, batch_size, device)
        table = pd.DataFrame(index=range(len(probs)))
        if inputs.samples:
            table["id"] = [s.id for s in inputs.samples]
            table["subject"] = [s.subject for s in inputs.samples]
            table["dataset"] = [s.dataset for s in inputs.samples]
            table["true_label"] = [
                s.label if s.label in self.classes else None for s in inputs.samples
            ]
        best = probs.argmax(axis=1) if len(probs) else np.zeros(0, int)
        table["label"] = [self.classes[i] for i in best]
        table["score"] = probs.max(axis=1) if len(probs) else []
        for i, name in enumerate(self.classes):
            table[f"p_{name}"] = probs[:, i] if len(probs) else []
        table.attrs["failed"] = dict(inputs.failed)
        return table

    def inputs(
        self,
        data: Sequence[Sample] | Sequence[np.ndarray] | np.ndarray | ModelInputs,
        cache: str | Path | None = None,
        progress: bool = False,
    ) -> ModelInputs:
        """``data`` as the model's inputs (see :meth:`predict`)."""
        if isinstance(data, ModelInputs):
            return data
        items = list(data)
        if items and all(isinstance(item, Sample) for item in items):
            return model_inputs(items, self.plan, cache=cache, progress=progress)
        key = ARRAY_KEY[self.kind]
        return inputs_from_arrays([{key: np.asarray(a)} for a in items], self.plan)

    def probabilities(
        self, inputs: ModelInputs, batch_size: int = 64, device: str = "cpu"
    ) -> np.ndarray:
        """(N, classes) probabilities, averaged over an ensemble's members."""
        if not len(inputs) and inputs.images is None and not inputs.clips:
            return np.zeros((0, len(self.classes)), np.float32)
        n = len(inputs.images) if inputs.images is not None else len(inputs.clips)
        return self.run_network(inputs.subset(range(n)), batch_size, device)

    @torch.no_grad()
    def run_network(self, data: Dataset | torch.Tensor, batch_size: int, device: str) -> np.ndarray:
        """The members' mean probabilities of model-ready inputs (``ModelInputs.subset``)."""
        augment = self.plan.train.augment
        probs = [predict_proba(m, data, batch_size, device, augment) for m in self.members]
        return np.mean(probs, axis=0) if len(probs) > 1 else probs[0]


@dataclass
class OnnxBundle(Bundle):
    """An exported bundle: the Plan's preprocessing in Python, the network (one graph that
    already averages an ensemble's members, so ``members`` is empty) in ONNX Runtime. One
    session per device, the CPU one opened (and the file checked) at load."""

    sessions: dict[str, Any]

    def run_network(self, data: Dataset | torch.Tensor, batch_size: int, device: str) -> np.ndarray:
        session = self.session(device)
        if isinstance(data, torch.Tensor):
            data = TensorDataset(data)
        probs = [
            session.run([ONNX_OUTPUT], {ONNX_INPUT: batch[0].numpy()})[0]
            for batch in DataLoader(data, batch_size=batch_size)
        ]
        return np.concatenate(probs) if probs else np.zeros((0, len(self.classes)), np.float32)

    def session(self, device: str = "cpu") -> Any:
        """The ONNX Runtime session for ``device``: ``cpu``; ``cuda`` / ``cuda:N`` (the CUDA
        provider, onnxruntime-gpu); ``auto``: CUDA when this onnxruntime has it."""
        ort = _onnxruntime(self.path / MANIFEST)
        has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        if device == "auto":
            device = "cuda" if has_cuda else "cpu"
        if device != "cpu" and not has_cuda:
            raise ValueError(
                f"device {device}: this onnxruntime has no CUDA provider (install onnxruntime-gpu)"
            )
        if device not in self.sessions:
            self.sessions[device] = _open_session(self.path / ONNX_MODEL, device)
        return self.sessions[device]


def _onnxruntime(manifest_path: Path) -> Any:
    """The onnxruntime module, or one line naming the extra that installs it."""
    try:
        import onnxruntime
    except ImportError:
        raise BundleError(
            f"{manifest_path}: an ONNX export; running it needs onnxruntime ({ONNX_EXTRA})"
        ) from None
    return onnxruntime


def _open_session(model_path: Path, device: str) -> Any:
    """An InferenceSession on ``device``; a file ONNX Runtime cannot read is refused in one
    line naming it."""
    ort = _onnxruntime(model_path.with_name(MANIFEST))
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    if device == "cpu":
        providers: list = ["CPUExecutionProvider"]
    else:
        index = int(device.partition(":")[2] or 0)
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    unreadable = (
        state.Fail,
        state.InvalidArgument,
        state.InvalidGraph,
        state.InvalidProtobuf,
        state.NoModel,
        state.NoSuchFile,
        state.NotImplemented,
        state.RuntimeException,
    )
    try:
        return ort.InferenceSession(str(model_path), providers=providers)
    except unreadable as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BundleError(f"{model_path}: not a readable ONNX model ({reason})") from None


def onnx_bundle(path: Path, plan: Plan, manifest: dict) -> OnnxBundle:
    """The exported bundle at ``path`` with ``manifest``: its graph opened on the CPU and
    checked against the Plan (one input of the Plan's shape, one output per class)."""
    model_path = path / ONNX_MODEL
    if not model_path.is_file():
        raise BundleError(f"{path}: not a model bundle (needs {MANIFEST} and {ONNX_MODEL})")
    session = _open_session(model_path, "cpu")
    inputs, outputs = session.get_inputs(), session.get_outputs()
    expected = list(network_input_shape(plan.input))
    found = [(i.name, i.shape[1:]) for i in inputs], [(o.name, o.shape[1:]) for o in outputs]
    if found != ([(ONNX_INPUT, expected)], [(ONNX_OUTPUT, [len(plan.classes)])]):
        raise BundleError(
            f"{model_path}: does not fit {plan.model} (inputs {found[0]}, outputs {found[1]}; "
            f"the plan needs {ONNX_INPUT} {expected} -> {ONNX_OUTPUT} [{len(plan.classes)}])"
        )
    return OnnxBundle(path, plan, [], manifest, {"cpu": session})


def load_bundle(path: str | Path) -> Bundle:
    """Load a bundle folder (or its ``bundle.json``), trained or exported to ONNX; anything
    else is refused in one line."""
    path = Path(path)
    if path.is_file() and path.name == MANIFEST:
        path = path.parent
    manifest_path, weights_path = path / MANIFEST, path / WEIGHTS
    if not path.is_dir():
        raise BundleError(f"{path}: not a model bundle (expected a folder with {MANIFEST})")
    if not manifest_path.is_file():
        raise BundleError(
            f"{path}: not a model bundle (needs {MANIFEST} and {WEIGHTS} or {ONNX_MODEL})"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BundleError(f"{manifest_path}: not a model bundle (not JSON)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{manifest_path}: not a microexpr model bundle")
    if manifest.get("version", 0) > FORMAT_VERSION:
        raise BundleError(
            f"{manifest_path}: bundle format {manifest['version']} is newer than this "
            f"microexpr reads ({FORMAT_VERSION}); upgrade microexpr"
        )
    runtime = manifest.get("runtime", "torch")
    if runtime not in RUNTIMES:
        raise BundleError(f"{manifest_path}: unknown runtime {runtime!r} (known: torch, onnx)")
    try:
        plan = Plan.model_validate(manifest["plan"])
    except (KeyError, ValidationError) as err:
        raise BundleError(f"{manifest_path}: its plan cannot be read ({err})") from None
    if runtime == "onnx":
        return onnx_bundle(path, plan, manifest)
    if not weights_path.is_file():
        raise BundleError(f"{path}: not a model bundle (needs {MANIFEST} and {WEIGHTS})")
    try:
        state = load_file(weights_path)
    except (SafetensorError, OSError, ValueError) as err:
        raise BundleError(f"{weights_path}: not a safetensors file ({err})") from None
    count = int(manifest.get("members", 1))
    members = []
    for i in range(count):
        prefix = "" if count == 1 else f"member{i}."
        model = build_model(plan)
        own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        try:
            model.load_state_dict(own, strict=True)
        except RuntimeError as err:
            first = str(err).splitlines()[0]
            raise BundleError(
                f"{weights_path}: weights do not fit {plan.model} ({first})"
            ) from None
        members.append(model.eval())
    return Bundle(path, plan, members, manifest)
