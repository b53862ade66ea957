"""A model bundle exported to ONNX: the network runs in ONNX Runtime, the preprocessing stays
the Plan's (in Python), so an exported bundle predicts what its source bundle predicts.

The exported folder holds ``model.onnx`` (one graph: every ensemble member's softmax,
averaged, i.e. exactly what :meth:`Bundle.probabilities` returns) and ``bundle.json`` (the
source's manifest, Plan and classes unchanged, plus ``"runtime": "onnx"`` and the graph's
opset, input and output). :func:`microexpr.load_bundle` loads either kind.

The exporter is ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript): the legacy
TorchScript exporter is deprecated in this torch and cannot export timm's VGG head
(adaptive pooling to a size that does not divide its input); the dynamo exporter exports
every registered model, given :func:`translations` for the two ops it lacks.
"""

from __future__ import annotations

import copy
import importlib
import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

from microexpr.bundle import (
    MANIFEST,
    ONNX_EXTRA,
    ONNX_INPUT,
    ONNX_MODEL,
    ONNX_OUTPUT,
    WEIGHTS,
    Bundle,
    OnnxBundle,
    atomic_write,
    load_bundle,
    network_input_shape,
    onnx_bundle,
)
from microexpr.config import AugmentConfig
from microexpr.inference import class_probabilities
from microexpr.inputs import ModelInputs, inputs_from_arrays
from microexpr.plan import Plan

FORMATS = ("onnx",)
# Opset 20 is what this torch's dynamo exporter writes natively (no version conversion);
# ONNX Runtime reads it from 1.17 on.
OPSET = 20
# Largest difference of a probability between PyTorch and ONNX Runtime an export may show.
PARITY_TOLERANCE = 1e-4
PARITY_SAMPLES = 8


class ExportError(ValueError):
    """A bundle that cannot be exported; the message says why in one line."""


class Probabilities(nn.Module):
    """The bundle's probabilities as one network: each member's
    ``inference.class_probabilities`` (test-time mirror included when the recipe asks for
    it), averaged over the members as ``Bundle.probabilities`` averages them."""

    def __init__(self, members: list[nn.Module], augment: AugmentConfig | None = None):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.augment = augment

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = [class_probabilities(member, x, self.augment) for member in self.members]
        return probs[0] if len(probs) == 1 else torch.stack(probs).mean(0)


def random_inputs(plan: Plan, count: int, seed: int = 0) -> ModelInputs:
    """``count`` random inputs made as the Plan makes real ones: uint8 images (2-D kinds) or
    frame clips, or u/v/strain flow clips, through ``inputs_from_arrays``, so each kind's
    scaling puts them in the range the network sees in use."""
    spec, rng = plan.input, np.random.default_rng(seed)
    side = (spec.size, spec.size)
    if spec.kind == "flow_clip":
        arrays = [
            {"flow": rng.normal(0, 1, (spec.num_frames, *side, 3)).astype(np.float32)}
            for _ in range(count)
        ]
    elif spec.is_clip:
        shape = (spec.num_frames, *side, spec.in_chans)
        arrays = [{"frames": rng.integers(0, 256, shape, dtype=np.uint8)} for _ in range(count)]
    else:
        shape = (*side, spec.in_chans)
        arrays = [{"image": rng.integers(0, 256, shape, dtype=np.uint8)} for _ in range(count)]
    return inputs_from_arrays(arrays, plan)


def input_batch(inputs: ModelInputs) -> torch.Tensor:
    """Every input as one float32 tensor, (N, C, H, W) or (N, C, T, H, W)."""
    if inputs.images is not None:
        return inputs.images
    data = inputs.subset(range(len(inputs.clips)))
    return torch.stack([data[i][0] for i in range(len(data))])


def _require_onnx_packages() -> dict[str, str]:
    """The versions of the packages an export needs; one line naming the extra if one is
    missing (torch's dynamo exporter needs onnx and onnxscript, the parity check onnxruntime)."""
    found, missing = {}, []
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            found[name] = importlib.import_module(name).__version__
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportError(f"exporting to ONNX needs {', '.join(missing)}: {ONNX_EXTRA}")
    return found


def _check_out(source: Path, out: Path) -> None:
    """Refuse to write into the source bundle or over another torch bundle."""
    if out.resolve() == source.resolve():
        raise ExportError(f"{out}: is the source bundle; give another --out")
    if (out / WEIGHTS).exists():
        raise ExportError(f"{out}: holds a PyTorch bundle ({WEIGHTS}); give another --out")


def export_onnx(source: str | Path, out: str | Path) -> OnnxBundle:
    """Export the bundle at ``source`` to an ONNX bundle folder ``out``; returns it loaded.

    The graph takes float32 inputs as the Plan makes them, with a dynamic batch axis, and
    returns probabilities. ``bundle.json`` is written last, as a bundle is saved, and only
    once ONNX Runtime agrees with PyTorch (:func:`check_parity`).
    """
    source, out = Path(source), Path(out)
    packages = _require_onnx_packages()
    bundle = load_bundle(source)
    if bundle.runtime != "torch":
        raise ExportError(f"{bundle.path / MANIFEST}: already an ONNX export")
    _check_out(bundle.path, out)
    network = Probabilities(bundle.members, bundle.plan.train.augment).eval()
    example = input_batch(random_inputs(bundle.plan, 2))
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # a re-export is unfinished until written again
    write_graph(network, example, out / ONNX_MODEL, bundle.plan.model)
    shape = list(network_input_shape(bundle.plan.input))
    manifest = {
        **bundle.manifest,
        "runtime": "onnx",
        "onnx": {
            "file": ONNX_MODEL,
            "opset": OPSET,
            "inputs": [{"name": ONNX_INPUT, "shape": ["batch", *shape], "dtype": "float32"}],
            "outputs": [
                {"name": ONNX_OUTPUT, "shape": ["batch", len(bundle.classes)], "dtype": "float32"}
            ],
            "members_averaged": len(bundle.members),
            "exporter": "torch.onnx.export(dynamo=True)",
            "exported": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": {"torch": torch.__version__, **packages},
        },
    }
    exported = onnx_bundle(out, bundle.plan, manifest)
    try:
        manifest["onnx"]["parity"] = check_parity(bundle, exported)
    except ExportError:
        (out / ONNX_MODEL).unlink()
        raise
    text = json.dumps(manifest, indent=2).encode()
    atomic_write(out / MANIFEST, lambda handle: handle.write(text))
    return exported


def write_graph(network: nn.Module, example: torch.Tensor, path: Path, model: str) -> None:
    """``network`` as an ONNX graph at ``path``, through a temporary file so that a failed
    export leaves no half-written one; what the exporter cannot translate is one line."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # torch.export's notes on tracing, not the user's
            torch.onnx.export(
                network,
                (example,),
                tmp,
                dynamo=True,
                opset_version=OPSET,
                input_names=[ONNX_INPUT],
                output_names=[ONNX_OUTPUT],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                external_data=False,
                verbose=False,
                custom_translation_table=translations(),
            )
    except torch.onnx.OnnxExporterError as err:
        tmp.unlink(missing_ok=True)
        cause: BaseException = err
        while cause.__cause__ is not None:
            cause = cause.__cause__
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise ExportError(f"{model}: torch.onnx cannot export it ({reason})") from None
    tmp.replace(path)


def translations() -> dict:
    """ONNX for the torch ops the exporter has no translation of (the HOOF baseline's per-image
    median and flow magnitude), written with onnxscript at :data:`OPSET`."""
    from onnxscript import opset20 as op

    def median_dim(self, dim: int, keepdim: bool = False):
        """torch.median along ``dim``: the lower of the two middle values, and its index."""
        size = op.Shape(self, start=dim, end=dim + 1 if dim != -1 else None)
        one = op.Constant(value_int=1)
        k = op.Add(op.Div(op.Sub(size, one), op.Constant(value_int=2)), one)
        values, indices = op.TopK(self, k, axis=dim, largest=0, sorted=1)
        value = op.Gather(values, op.Sub(k, one), axis=dim)
        index = op.Gather(indices, op.Sub(k, one), axis=dim)
        if not keepdim:
            axes = op.Constant(value_ints=[dim])
            value, index = op.Squeeze(value, axes), op.Squeeze(index, axes)
        return value, index

    def hypot(self, other):
        """sqrt(x^2 + y^2), unscaled: the inputs are pixel-range values, far from overflow."""
        return op.Sqrt(op.Add(op.Mul(self, self), op.Mul(other, other)))

    return {torch.ops.aten.median.dim: median_dim, torch.ops.prims.hypot.default: hypot}


def check_parity(bundle: Bundle, exported: Bundle) -> dict:
    """How far ONNX Runtime is from PyTorch on :data:`PARITY_SAMPLES` random inputs.

    Within :data:`PARITY_TOLERANCE` is a pass. Past it, both are compared with PyTorch in
    float64: a network whose float32 result is that sensitive (PyTorch's own float32 error
    as large) still passes, with both figures recorded; ONNX Runtime farther than PyTorch
    from the float64 result by more than the tolerance is an export that computes something
    else, and is refused.
    """
    inputs = random_inputs(bundle.plan, PARITY_SAMPLES)
    expected, found = bundle.probabilities(inputs), exported.probabilities(inputs)
    record = {"samples": PARITY_SAMPLES, "max_abs_diff": float(np.abs(found - expected).max())}
    if record["max_abs_diff"] <= PARITY_TOLERANCE:
        return record
    doubled = [copy.deepcopy(m).double() for m in bundle.members]
    wide = Probabilities(doubled, bundle.plan.train.augment).eval()
    with torch.no_grad():
        exact = wide(input_batch(inputs).double()).double().numpy()
    record["torch_float32_error"] = float(np.abs(expected - exact).max())
    record["onnx_float32_error"] = float(np.abs(found - exact).max())
    if record["onnx_float32_error"] > record["torch_float32_error"] + PARITY_TOLERANCE:
        raise ExportError(
            f"{exported.path / ONNX_MODEL}: ONNX Runtime differs from PyTorch by "
            f"{record['max_abs_diff']:.2e} and from PyTorch in float64 by "
            f"{record['onnx_float32_error']:.2e} (PyTorch's float32: "
            f"{record['torch_float32_error']:.2e}); not exported"
        )
    return record


def parity(reference: Bundle, exported: Bundle, count: int = 32, seed: int = 0) -> float:
    """Largest absolute difference of the probabilities of two bundles on ``count`` random
    inputs (:func:`random_inputs`)."""
    inputs = random_inputs(reference.plan, count, seed)
    expected = reference.probabilities(inputs)
    return float(np.abs(exported.probabilities(inputs) - expected).max())
