"""A trained model as a folder: ``weights.safetensors`` + ``bundle.json`` (Plan, classes,
config, versions, what it was trained on). What ``predict``, ``analyze``, the web page and
the ONNX export load. Loading never unpickles anything: safetensors and JSON only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from microexpr.evaluate.report import versions
from microexpr.inference import build_model, predict_proba
from microexpr.inputs import ModelInputs, inputs_from_arrays, model_inputs
from microexpr.plan import Plan
from microexpr.samples import Sample

FORMAT = "microexpr-bundle"
FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
MANIFEST = "bundle.json"
# The array each input kind's pipeline output holds (inputs.inputs_from_arrays).
ARRAY_KEY = {"flow_image": "image", "apex_image": "image", "image": "image"}
ARRAY_KEY |= {"clip": "frames", "flow_clip": "flow"}


class BundleError(ValueError):
    """A path that is not a loadable model bundle; the message names the file."""


def _atomic_write(path: Path, write) -> None:
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
    _atomic_write(path / WEIGHTS, lambda handle: handle.write(save(tensors)))
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
    _atomic_write(path / MANIFEST, lambda handle: handle.write(text))
    return path


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

    @torch.no_grad()
    def probabilities(
        self, inputs: ModelInputs, batch_size: int = 64, device: str = "cpu"
    ) -> np.ndarray:
        """(N, classes) probabilities, averaged over an ensemble's members."""
        if not len(inputs) and inputs.images is None and not inputs.clips:
            return np.zeros((0, len(self.classes)), np.float32)
        n = len(inputs.images) if inputs.images is not None else len(inputs.clips)
        data = inputs.subset(range(n))
        probs = [predict_proba(m, data, batch_size, device) for m in self.members]
        return np.mean(probs, axis=0) if len(probs) > 1 else probs[0]


def load_bundle(path: str | Path) -> Bundle:
    """Load a bundle folder (or its ``bundle.json``); anything else is refused in one line."""
    path = Path(path)
    if path.is_file() and path.name == MANIFEST:
        path = path.parent
    manifest_path, weights_path = path / MANIFEST, path / WEIGHTS
    if not path.is_dir():
        raise BundleError(f"{path}: not a model bundle (expected a folder with {MANIFEST})")
    if not manifest_path.is_file() or not weights_path.is_file():
        raise BundleError(f"{path}: not a model bundle (needs {MANIFEST} and {WEIGHTS})")
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
    try:
        plan = Plan.model_validate(manifest["plan"])
    except (KeyError, ValidationError) as err:
        raise BundleError(f"{manifest_path}: its plan cannot be read ({err})") from None
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
