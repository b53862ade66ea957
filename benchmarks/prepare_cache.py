"""Cost of ``microexpr prepare`` from scratch, and of a second run that finds everything cached.

    python benchmarks/prepare_cache.py flow_images ../shared/data/megc2019_composite \
        --pipeline apex_face
    python benchmarks/prepare_cache.py casme2 /tmp/synth_casme2 --pipeline flow_image

Each pass runs the library call behind the command (dataset reading included) in this
process; the cache goes to a fresh temporary folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from microexpr import datasets
from microexpr.config import PreprocessConfig
from microexpr.preprocess.cache import prepare


def timed_pass(args: argparse.Namespace, root: str) -> tuple[float, int, int, int]:
    start = time.perf_counter()
    samples = datasets.load(args.dataset, args.path)
    config = PreprocessConfig(pipeline=args.pipeline)
    report = prepare(samples, config, root, workers=args.workers, progress=False)
    return time.perf_counter() - start, report.computed, report.reused, len(report.failed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("path")
    parser.add_argument("--pipeline", default="flow_image")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        first = timed_pass(args, root)
        second = timed_pass(args, root)
    print(
        f"{args.dataset} ({args.path}), pipeline {args.pipeline}, "
        f"workers {args.workers or os.cpu_count()}"
    )
    print("| pass | seconds | computed | reused | failed |")
    print("| --- | --- | --- | --- | --- |")
    for name, (seconds, computed, reused, failed) in (("first", first), ("second", second)):
        print(f"| {name} | {seconds:.2f} | {computed} | {reused} | {failed} |")
    print(f"\nspeed-up of the second pass: {first[0] / second[0]:.0f}x")


if __name__ == "__main__":
    main()
