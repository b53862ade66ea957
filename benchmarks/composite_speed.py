"""STSTNet composite LOSO speed: the official loop's work against the stacked engine.

Both train real composite folds for the same epochs, side by side in one run, and predict
their test subjects. The official loop's work (one fold at a time, in this process, torch's
default threads) costs the same per fold-epoch whatever the number of folds, so it runs on
the first ``--reference-folds`` folds; the stacked engine runs on the first ``--folds``
(its rate improves with more folds, and the real run has 68). The ratio of the two rates
(seconds per fold-epoch) is the figure to read: absolute times move with the machine's load
(the load average is printed before and after). The full 68-fold, 800-epoch time is
extrapolated from each rate (epochs cost the same).

    python benchmarks/composite_speed.py --folds 68 --reference-folds 4 --epochs 20 --device cpu
    python benchmarks/composite_speed.py --folds 68 --epochs 100 --device cuda --skip-per-fold
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from microexpr.config import DataConfig, ExperimentConfig, ProtocolConfig, TrainConfig
from microexpr.inference import build_model, predict_proba
from microexpr.inputs import encode_labels, model_inputs
from microexpr.protocols import make_folds
from microexpr.recipe import resolve
from microexpr.train.experiment import group_by_label, load_samples
from microexpr.train.stacked import train_folds_stacked
from microexpr.train.trainer import train_fold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/megc2019_composite")
    parser.add_argument("--folds", type=int, default=68, help="stacked: first N LOSO folds")
    parser.add_argument(
        "--reference-folds", type=int, default=4, help="one fold at a time: first N folds"
    )
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--one-process", action="store_true", help="also the stacked engine in one process"
    )
    parser.add_argument(
        "--one-thread-reference",
        action="store_true",
        help="also one fold at a time with one thread",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--skip-per-fold", action="store_true", help="time the stacked engine only (GPU runs)"
    )
    args = parser.parse_args()

    cfg = ExperimentConfig(
        data=DataConfig(root=args.data),
        train=TrainConfig(epochs=args.epochs, device=args.device, group_by_label=True),
        protocol=ProtocolConfig(name="composite_loso"),
    )
    plan = resolve(cfg)  # STSTNet's recipe, device resolved
    samples = load_samples(plan)
    images = model_inputs(samples, plan).images
    targets = encode_labels(samples, plan.classes)
    folds = make_folds("composite_loso", samples)[: args.folds]
    folds = [group_by_label(f, samples, plan.classes) for f in folds]
    train, classes = plan.train, len(plan.classes)
    cores = len(os.sched_getaffinity(0))
    print(f"load average before: {_load()}")

    timings: list[tuple[str, int, float]] = []
    results = {}
    reference = folds[: args.reference_folds]
    if not args.skip_per_fold:
        start = time.perf_counter()
        results["per_fold"] = _per_fold(plan, images, targets, reference)
        name = f"one fold at a time ({torch.get_num_threads()} threads)"
        timings.append((name, len(reference), _since(start)))
        if args.one_thread_reference and torch.get_num_threads() > 1:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # threads of one process spin on a shared machine
            start = time.perf_counter()
            _per_fold(plan, images, targets, reference)
            timings.append(("one fold at a time (1 thread)", len(reference), _since(start)))
            torch.set_num_threads(threads)
    engines = []
    if args.one_process or train.device != "cpu" or cores == 1:
        engines.append((1, f"stacked, one process ({torch.get_num_threads()} threads)"))
    if train.device == "cpu" and cores > 1:
        engines.append((cores, f"stacked, {cores} processes x 1 thread"))
    for processes, name in engines:
        start = time.perf_counter()
        results[name] = train_folds_stacked(
            images, targets, folds, train, classes, plan.model_options, False, processes
        )
        if train.device.startswith("cuda"):
            torch.cuda.synchronize()
        timings.append((name, len(folds), _since(start)))
    print(f"load average after: {_load()}")

    device = (
        torch.cuda.get_device_name() if train.device.startswith("cuda") else f"CPU ({cores} cores)"
    )
    print(f"{args.epochs} epochs on {device}, torch {torch.__version__}")
    print("| engine | folds | measured s | ms per fold-epoch | 68 x 800 extrapolated | speed-up |")
    print("| --- | --- | --- | --- | --- | --- |")
    base = None if args.skip_per_fold else timings[0][2] / (timings[0][1] * args.epochs)
    for name, count, seconds in timings:
        rate = seconds / (count * args.epochs)
        ratio = f"{base / rate:.2f}x" if base else ""
        print(
            f"| {name} | {count} | {seconds:.1f} | {rate * 1000:.1f} "
            f"| {rate * 68 * 800 / 60:.1f} min | {ratio} |"
        )
    if "per_fold" in results:  # with dropout the draws differ, so predictions are close only
        for name, probs in results.items():
            pairs = zip(probs[: len(reference)], results["per_fold"], strict=True)
            agree = np.mean([(p.argmax(1) == q.argmax(1)).mean() for p, q in pairs])
            print(f"{name}: same predicted class as one fold at a time on {agree:.1%} of samples")


def _per_fold(plan, images, targets, folds) -> list[np.ndarray]:
    """The official loop's work: each fold alone, its fold seed, then its test predictions."""
    probs = []
    for fold in folds:
        train = plan.train.model_copy(update={"seed": fold.seed(plan.train.seed)})
        torch.manual_seed(train.seed)
        model = build_model(plan)
        idx = list(fold.train)
        train_fold(model, (images[idx], targets[idx]), train, len(plan.classes), progress=False)
        probs.append(predict_proba(model, images[list(fold.test)], device=train.device))
    return probs


def _since(start: float) -> float:
    return time.perf_counter() - start


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
