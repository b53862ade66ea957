"""Training-step time of the 2-D seed models on a GPU: eager steps against CUDA-graph replays.

Each seed's composite config (model, loss, augmentation, Adam) on random 3x96x96 batches of
32: eager steps as the trainer runs them by default (float16 autocast, loss scaling) and
replays of one captured step (train/cuda_graphs.py, bfloat16 autocast), timed side by side in one
process, after warm-up, synchronising the device before each clock read. Prints the median
of --repeats timings of --steps steps each.

    python benchmarks/step_time_2d.py --steps 30 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from microexpr import models
from microexpr.config import load_config
from microexpr.losses import create_loss
from microexpr.train.cuda_graphs import GraphedStep
from microexpr.train.trainer import eager_step, make_optimizer, param_groups, training_loss

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ("seed000", "seed001", "seed002")


def step_ms(seed: str, graphed: bool, steps: int, repeats: int, batch: int, size: int) -> float:
    """Median milliseconds per training step of the seed's composite config."""
    cfg = load_config(ROOT / "configs" / f"{seed}_composite.yaml")
    torch.manual_seed(0)
    model = models.create(cfg.model.name, num_classes=3, in_chans=3, **cfg.model.options)
    model.cuda().train()
    criterion = create_loss(cfg.train.loss, 3, **cfg.train.loss_kwargs).cuda()
    optimizer = make_optimizer(param_groups(model, criterion, cfg.train), cfg.train, graphed)
    if graphed:
        step = GraphedStep(model, criterion, optimizer, training_loss, batch, cfg.train.augment)
    else:
        step = eager_step(
            model, criterion, optimizer, cfg.train.augment, torch.device("cuda"), True
        )
    x = torch.randn(batch, 3, size, size, device="cuda")
    y = torch.randint(0, 3, (batch,), device="cuda")
    for _ in range(5):  # warm-up, and the capture
        step(x, y)
    timings = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            step(x, y)
        torch.cuda.synchronize()
        timings.append((time.perf_counter() - start) / steps * 1000)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--input-size", type=int, default=96)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, batch {args.batch_size}")
    print("| seed | model | eager ms/step | graphed ms/step | speed-up |")
    print("| --- | --- | --- | --- | --- |")
    for seed in SEEDS:
        name = load_config(ROOT / "configs" / f"{seed}_composite.yaml").model.name
        sizes = (args.steps, args.repeats, args.batch_size, args.input_size)
        eager = step_ms(seed, False, *sizes)
        graphed = step_ms(seed, True, *sizes)
        print(f"| {seed} | {name} | {eager:.1f} | {graphed:.1f} | {eager / graphed:.2f}x |")


if __name__ == "__main__":
    main()
