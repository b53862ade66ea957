"""Clips per second of the 3-D clip models, training and inference, on one device.

Training: forward, loss (the model's own: multi-head for ms_resnet3d50), backward and an
optimiser step on random clips of the model's declared input (16 x 128 x 128 frames for
c3d_vgg, 16 x 112 x 112 flow for ms_resnet3d50), mixed precision on CUDA as the trainer does.
Inference: eval-mode forward under no_grad. Also the CPU clip pipeline (ClipDataset reads:
random window, seed S3 mirror/rotation copy, scaling) for comparison with the model's rate.
Parameters and FLOPs (torch.utils.flop_counter, 2 FLOPs per multiply-add) per clip.
Prints a markdown table.

    python benchmarks/clip_throughput.py --device cuda --batch 16 --steps 20
    python benchmarks/clip_throughput.py --device cpu --batch 2 --steps 2 --warmup 1
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from microexpr import losses, models
from microexpr.config import ClipConfig
from microexpr.inference import torch_device
from microexpr.inputs import ClipDataset

LOSS = {"ms_resnet3d50": "multi_head_ce"}


def input_shape(name: str) -> tuple[int, int, int, int]:
    """(C, T, H, W) the model declares (its InputSpec)."""
    spec = models.info(name).input
    return (spec.in_chans, spec.num_frames or 16, spec.size, spec.size)


def flops_per_clip(name: str) -> tuple[float, float]:
    """(parameters in millions, GFLOPs of one eval forward), counted on the meta device."""
    with torch.device("meta"):
        model = models.create(name, num_classes=5).eval()
        clip = torch.empty(1, *input_shape(name))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(clip)
    params = sum(p.numel() for p in model.parameters())
    return params / 1e6, counter.get_total_flops() / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(
    name: str, device: torch.device, batch: int, steps: int, warmup: int, amp: bool
) -> tuple[float, float]:
    """(training clips/s, inference clips/s) over ``steps`` timed batches."""
    torch.manual_seed(0)
    model = models.create(name, num_classes=5).to(device)
    criterion = losses.create_loss(LOSS.get(name, "cross_entropy"), num_classes=5).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    x = torch.randn(batch, *input_shape(name), device=device)
    y = torch.randint(0, 5, (batch,), device=device)
    use_amp = amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=use_amp):
            loss = criterion(model(x).float(), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def infer_step() -> None:
        with torch.no_grad(), torch.autocast(device.type, enabled=use_amp):
            model(x)

    rates = []
    for mode, step in (("train", train_step), ("eval", infer_step)):
        model.train(mode == "train")
        for _ in range(warmup):
            step()
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        rates.append(batch * steps / (time.perf_counter() - start))
    return rates[0], rates[1]


def pipeline_rate(reads: int = 200) -> float:
    """ClipDataset reads per second: 24-frame 128 px gray uint8 clips -> c3d_vgg's 3 x 16 x
    128 x 128 unit-scaled tensors, x10 copies."""
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 255, (24, 128, 128, 1), dtype=np.uint8) for _ in range(8)]
    spec = models.info("c3d_vgg").input
    targets = torch.zeros(8, dtype=torch.long)
    data = ClipDataset(clips, targets, spec, ClipConfig(expand=True), "linear", train=True)
    start = time.perf_counter()
    for i in range(reads):
        data[i % len(data)]
    return reads / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20, help="timed batches per mode")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches per mode")
    parser.add_argument("--models", default="c3d_vgg,ms_resnet3d50")
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="fp32 on CUDA too")
    args = parser.parse_args()

    device = torch_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        where = torch.cuda.get_device_name(device)
    else:
        where = (
            f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
        )
    precision = "AMP fp16" if args.amp and device.type == "cuda" else "fp32"
    print(
        f"device: {where}; torch {torch.__version__}; batch {args.batch}, {args.steps} timed "
        f"steps after {args.warmup} warm-up; {precision}\n"
    )
    columns = ("model", "input (C, T, H, W)", "params (M)", "GFLOPs / clip")
    columns += ("train clips/s", "infer clips/s")
    print("| " + " | ".join(columns) + " |\n|" + " --- |" * len(columns))
    for name in args.models.split(","):
        params, gflops = flops_per_clip(name)
        train, infer = throughput(name, device, args.batch, args.steps, args.warmup, args.amp)
        shape = "x".join(map(str, input_shape(name)))
        print(f"| {name} | {shape} | {params:.2f} | {gflops:.1f} | {train:.1f} | {infer:.1f} |")
    rate = pipeline_rate()
    print(f"\nCPU clip pipeline (ClipDataset read, 16 x 128 px, x10 copies): {rate:.0f} clips/s")


if __name__ == "__main__":
    main()
