"""Pairs per second and accuracy of Dual TV-L1: OpenCV (one pair at a time) vs batched torch.

Side by side in one run, per image size: OpenCV's ``DualTVL1OpticalFlow`` on the CPU, one pair
at a time, and ``preprocess.tvl1_torch`` on the CPU in one batch of the same N pairs, each with
one thread and with its default thread count, and the torch version on a CUDA GPU when there
is one (host-to-device copies included). The pairs are smooth random textures moved by a known flow
with cv2.remap (half a sub-pixel translation, half a smooth non-rigid field), so the second
table scores each method against the truth and against each other: mean end-point error in
pixels, inside a border of size / 8 (where remap's reflected border is no consistent motion),
and between the two methods over the whole image too.

    python benchmarks/tvl1_speed.py --sizes 28 112 128 224 --n 16 --device auto
    python benchmarks/tvl1_speed.py --stopping fixed --outer-iterations 2 --inner-iterations 15
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import cv2
import numpy as np
import torch

from microexpr.preprocess.tvl1_torch import TVL1Params, tvl1_batch


def displacement(kind: str, ys: np.ndarray, xs: np.ndarray, size: int) -> np.ndarray:
    """(..., 2) field: a sub-pixel translation or a smooth non-rigid one (about 1 px)."""
    if kind == "shift":
        return np.stack([np.full_like(xs, 0.6), np.full_like(xs, -0.35)], -1)
    u = 1.2 * np.sin(2 * np.pi * ys / size) * np.cos(np.pi * xs / size)
    v = 0.8 * np.cos(2 * np.pi * xs / size)
    return np.stack([u, v], -1)


def moved_pair(kind: str, seed: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first, second, true flow): second(y) = first(y - d(y)), so the flow at x is d(y) with
    y = x + d(y), solved by fixed-point iteration."""
    noise = np.random.default_rng(seed).uniform(0, 255, (size, size)).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), 1.5)
    first = cv2.normalize(blurred, None, 10, 245, cv2.NORM_MINMAX).astype(np.uint8)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    d = displacement(kind, ys, xs, size)
    second = cv2.remap(
        first, xs - d[..., 0], ys - d[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )
    grid = np.stack([xs, ys], -1)
    y = grid
    for _ in range(30):
        y = grid + displacement(kind, y[..., 1], y[..., 0], size)
    return first, second, (y - grid).astype(np.float32)


def epe(a: np.ndarray, b: np.ndarray, margin: int) -> float:
    """Mean end-point error of (..., H, W, 2) flows, ``margin`` pixels in from the border."""
    h, w = a.shape[-3:-1]
    d = (a - b)[..., margin : h - margin, margin : w - margin, :]
    return float(np.hypot(d[..., 0], d[..., 1]).mean())


def timed(fn: Callable[..., np.ndarray], *args, **kwargs) -> tuple[np.ndarray, float]:
    """(result, seconds) of ``fn(*args, **kwargs)``, with the GPU idle at both ends."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def opencv_flows(first: np.ndarray, second: np.ndarray, params: TVL1Params) -> np.ndarray:
    """One pair at a time, as ``flow.tvl1`` runs (a fresh algorithm object per pair)."""
    create = cv2.optflow.DualTVL1OpticalFlow_create
    return np.stack(
        [create(**params.opencv()).calc(a, b, None) for a, b in zip(first, second, strict=True)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 112, 128, 224])
    parser.add_argument("--n", type=int, default=16, help="pairs per size (one torch batch)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--stopping", default="epsilon", choices=["epsilon", "fixed"])
    parser.add_argument("--outer-iterations", type=int, default=10, help="both methods")
    parser.add_argument("--inner-iterations", type=int, default=30, help="both methods")
    args = parser.parse_args()

    devices = [args.device] if args.device != "auto" else ["cpu"]
    if args.device == "auto" and torch.cuda.is_available():
        devices.append("cuda")
    params = TVL1Params(
        stopping=args.stopping,
        outer_iterations=args.outer_iterations,
        inner_iterations=args.inner_iterations,
    )
    settings = {k: getattr(params, k) for k in ("stopping", "outer_iterations", "inner_iterations")}
    thread_counts = sorted({1, cv2.getNumThreads(), torch.get_num_threads()})
    cv_default, torch_default = cv2.getNumThreads(), torch.get_num_threads()
    speed_rows, epe_rows = [], []
    for size in args.sizes:
        kinds = ["shift" if i % 2 == 0 else "smooth" for i in range(args.n)]
        pairs = [moved_pair(kind, seed, size) for seed, kind in enumerate(kinds)]
        first, second, truth = (np.stack([p[i] for p in pairs]) for i in range(3))
        rates, flows = {}, {}
        for threads in thread_counts:
            cv2.setNumThreads(threads)
            ocv, seconds = timed(opencv_flows, first, second, params)
            rates[f"OpenCV, {threads} thr"] = args.n / seconds
        cv2.setNumThreads(cv_default)
        for device in devices:
            for threads in thread_counts if device == "cpu" else [torch_default]:
                torch.set_num_threads(threads)
                tvl1_batch(first[:1], second[:1], device=device, **settings)  # warm-up
                flows[device], seconds = timed(tvl1_batch, first, second, device=device, **settings)
                label = f"torch cpu, {threads} thr" if device == "cpu" else f"torch {device}"
                rates[label] = args.n / seconds
            torch.set_num_threads(torch_default)
        speed_rows.append((size, rates))
        margin = size // 8
        for kind in ("shift", "smooth"):
            pick = [i for i, k in enumerate(kinds) if k == kind]
            row = {"OpenCV vs truth": epe(ocv[pick], truth[pick], margin)}
            for device, flow in flows.items():
                row[f"torch {device} vs truth"] = epe(flow[pick], truth[pick], margin)
                row[f"torch {device} vs OpenCV"] = epe(flow[pick], ocv[pick], margin)
                row[f"torch {device} vs OpenCV, whole image"] = epe(flow[pick], ocv[pick], 0)
            epe_rows.append((size, kind, row))

    changed = ", ".join(f"{k}={v}" for k, v in settings.items())
    print(f"\nDual TV-L1, OpenCV defaults but {changed}; N={args.n} pairs per size")
    print(f"(torch {torch.__version__}, OpenCV {cv2.__version__}, {os.cpu_count()} CPUs).")
    print("Pairs/s; torch cpu: ratio to OpenCV on as many threads, GPU: to OpenCV's default:\n")
    labels = list(speed_rows[0][1])
    print("| size | " + " | ".join(labels) + " |")
    print("|---" * (len(labels) + 1) + "|")
    for size, rates in speed_rows:
        cells = []
        for label in labels:
            if label.startswith("OpenCV"):
                cells.append(f"{rates[label]:.1f}")
                continue
            threads = label.split(", ")[1] if ", " in label else f"{cv_default} thr"
            ratio = rates[label] / rates[f"OpenCV, {threads}"]
            cells.append(f"{rates[label]:.1f} ({ratio:.2f}x)")
        print(f"| {size} | " + " | ".join(cells) + " |")
    print("\nMean end-point error, px (inside a size/8 border unless 'whole image'):\n")
    columns = list(epe_rows[0][2])
    print("| size | flow | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 2) + "|")
    for size, kind, row in epe_rows:
        print(f"| {size} | {kind} | " + " | ".join(f"{row[c]:.4f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
