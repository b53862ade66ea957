"""Seconds per fold-epoch of STSTNet composite LOSO: one fold at a time vs all folds stacked.

Both engines train the same folds for the same epochs, side by side in one process, on the
real composite flow images; the full 68-fold, 800-epoch time is extrapolated from the
measured rate (epochs cost the same). The per-fold engine is the official loop's work
without its per-epoch test pass.

    python benchmarks/composite_speed.py --folds 8 --epochs 20 --device cpu
"""

from __future__ import annotations

import argparse
import time

import torch

from microexpr.config import DataConfig, ExperimentConfig, TrainConfig
from microexpr.inference import build_model, predict_proba
from microexpr.inputs import encode_labels, model_inputs
from microexpr.protocols import loso
from microexpr.recipe import resolve
from microexpr.train.experiment import load_samples
from microexpr.train.stacked import train_folds_stacked
from microexpr.train.trainer import train_fold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/megc2019_composite")
    parser.add_argument("--folds", type=int, default=8, help="first N LOSO folds")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    cfg = ExperimentConfig(
        data=DataConfig(root=args.data), train=TrainConfig(epochs=args.epochs, device=args.device)
    )
    plan = resolve(cfg)  # STSTNet's recipe, device resolved
    samples = load_samples(plan)
    images = model_inputs(samples, plan).images
    targets = encode_labels(samples, plan.classes)
    folds = loso(samples)[: args.folds]
    train, classes = plan.train, len(plan.classes)

    start = time.perf_counter()
    for fold in folds:
        torch.manual_seed(fold.seed(train.seed))
        model = build_model(plan)
        idx = list(fold.train)
        train_fold(model, (images[idx], targets[idx]), train, classes, progress=False)
        predict_proba(model, images[list(fold.test)], device=train.device)
    per_fold = time.perf_counter() - start

    start = time.perf_counter()
    train_folds_stacked(images, targets, folds, train, classes, plan.model_options, progress=False)
    stacked = time.perf_counter() - start

    scale = 68 * 800 / (len(folds) * args.epochs)
    device = (
        torch.cuda.get_device_name()
        if train.device != "cpu" and torch.cuda.is_available()
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(f"{len(folds)} folds x {args.epochs} epochs on {device}, torch {torch.__version__}")
    print("| engine | measured s | s per fold-epoch | 68 folds x 800 epochs (extrapolated) |")
    print("| --- | --- | --- | --- |")
    for name, seconds in (("one fold at a time", per_fold), ("all folds stacked", stacked)):
        rate = seconds / (len(folds) * args.epochs)
        print(f"| {name} | {seconds:.1f} | {rate * 1000:.1f} ms | {seconds * scale / 60:.1f} min |")
    print(f"speed-up of stacking: {per_fold / stacked:.2f}x")


if __name__ == "__main__":
    main()
