"""CPU speed of a bundle's network in PyTorch and in ONNX Runtime, side by side, per model kind.

For each kind one registered model at its declared input (ststnet 28 px flow images,
SE-ResNeXt-50 224 px apex faces, PSA-ResNet50 48 px gray faces, c3d_vgg 16 x 128 x 128
clips, ms_resnet3d50 16 x 112 x 112 flow clips), with random weights, saved as a bundle and
exported with ``microexpr.export.export_onnx``. Both runtimes time the same network (the
members' softmax, as exported) on the same float32 batch of random inputs made by the
Plan's own input code, batch 1 and batch 32, with the same thread count; preprocessing is
the same Python for both and is not timed. Also the largest probability difference of the
two on 32 random inputs (batch-norm statistics set from random inputs first, so the
probabilities are not one-hot). Prints a markdown table.

On a machine shared with other work use ``--threads 1``: with 2 threads and the cores
taken by others, PyTorch's OpenMP workers wait on each other (ststnet fell from about 800
to 40-160 calls a second here), which measures the load, not the runtime.

    python benchmarks/onnx_speed.py
    python benchmarks/onnx_speed.py --threads 1
    python benchmarks/onnx_speed.py --kinds flow_image clip --rounds 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort
import torch
from torch import nn

from microexpr import load_bundle
from microexpr.bundle import ONNX_INPUT, ONNX_MODEL, save_bundle
from microexpr.config import config_from
from microexpr.export import Probabilities, export_onnx, input_batch, parity, random_inputs
from microexpr.inference import build_model
from microexpr.recipe import resolve

FACES = {"name": "casme2", "taxonomy": "casme2-5"}
KIND_CONFIGS = {
    "flow_image": {"model": {"name": "ststnet"}},
    "apex_image": {"data": FACES, "model": {"name": "se_resnext50_32x4d"}},
    "image": {"data": FACES, "model": {"name": "psa_resnet50"}},
    "clip": {"data": FACES, "model": {"name": "c3d_vgg"}},
    "flow_clip": {"data": FACES, "model": {"name": "ms_resnet3d50"}},
}
BATCHES = (1, 32)


def median_seconds(
    runs: dict[str, Callable[[], object]], rounds: int, least: float, most: float
) -> dict:
    """Median seconds per call of each of ``runs``, after one warm-up call each. The runs take
    turns, round by round, so a machine shared with other work slows both alike. At least
    ``rounds`` rounds and ``least`` seconds (fast networks get many rounds, so a few calls
    slowed by other work do not move the median), stopping at ``most`` seconds (slow ones
    get fewer rounds, at least one)."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    spent, done = 0.0, 0
    while not done or ((done < rounds or spent < least) and spent < most):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
            spent += times[name][-1]
        done += 1
    return {name: statistics.median(values) for name, values in times.items()}


def calibrate_batch_norm(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Batch-norm statistics of random inputs in place of the init's (mean 0, variance 1), as
    one epoch of training would set them: without this a random STSTNet on raw 0..255 pixels
    gives one-hot probabilities, and the parity column would compare nothing."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the calls
    with torch.no_grad():
        model.train()(x)
    return model.eval()


def measure(kind: str, folder: Path, args: argparse.Namespace) -> list[dict]:
    """One row per batch size for ``kind``'s model."""
    plan = resolve(config_from(KIND_CONFIGS[kind]))
    torch.manual_seed(0)
    model = calibrate_batch_norm(build_model(plan), input_batch(random_inputs(plan, 4, seed=1)))
    source = save_bundle(folder / kind, [model], plan, KIND_CONFIGS[kind], {})
    exported = export_onnx(source, folder / f"{kind}-onnx")
    reference = load_bundle(source)
    diff = parity(reference, exported, 32)
    network = Probabilities(reference.members).eval()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(
        str(exported.path / ONNX_MODEL), options, providers=["CPUExecutionProvider"]
    )
    spec = plan.input
    shape = f"{spec.num_frames} x {spec.size}" if spec.is_clip else f"{spec.size}"
    rows = []
    for batch in BATCHES:
        x = input_batch(random_inputs(plan, batch))
        feed = {ONNX_INPUT: x.numpy()}
        with torch.inference_mode():
            seconds = median_seconds(
                {"torch": lambda x=x: network(x), "onnx": lambda f=feed: session.run(None, f)},
                args.rounds,
                args.least,
                args.most,
            )
        rows.append(
            {
                "kind": kind,
                "model": plan.model,
                "input": f"{spec.in_chans} x {shape} px",
                "batch": batch,
                "torch": batch / seconds["torch"],
                "onnx": batch / seconds["onnx"],
                "diff": diff,
            }
        )
        print(f"{kind} batch {batch}: {rows[-1]['torch']:.1f} vs {rows[-1]['onnx']:.1f}/s")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=list(KIND_CONFIGS), choices=KIND_CONFIGS)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=10, help="least timed rounds per cell")
    parser.add_argument("--least", type=float, default=5.0, help="least seconds per cell")
    parser.add_argument("--most", type=float, default=30.0, help="seconds per cell to stop at")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [row for kind in args.kinds for row in measure(kind, Path(tmp), args)]
    print(
        f"\nCPU ({platform.processor() or platform.machine()}), {args.threads} threads for "
        f"both; torch {torch.__version__}, onnxruntime {ort.__version__}; random weights; "
        f"median of at least {args.rounds} calls and {args.least:g} s (stopping at "
        f"{args.most:g} s) after a warm-up, the two runtimes taking turns\n"
    )
    print(
        "| kind | model | input | batch | PyTorch samples/s | ONNX Runtime samples/s "
        "| ONNX / PyTorch | max prob. diff (32 inputs) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['kind']} | {r['model']} | {r['input']} | {r['batch']} | {r['torch']:.1f} "
            f"| {r['onnx']:.1f} | {r['onnx'] / r['torch']:.2f} | {r['diff']:.1e} |"
        )


if __name__ == "__main__":
    main()
