"""`analyze` speed end to end at 640 x 480: frames per second and where the time goes.

A synthetic long video (``microexpr.synth.long_videos``, all distractors) is rendered at
480 x 480, widened to 640 x 480 (mirrored borders) and written as an MP4; the Analyzer then
reads it from disk and spots and labels it, with a model bundle (``--model``; by default a
flow-image STSTNet trained for a few epochs on synthetic flow images here, which gets the
flow_image pipeline: face detection, alignment and TV-L1 per interval). The target is 25
frames per second on this 2-core CPU. Every stage is the Analyzer's own clock:

- decode: reading frames (both passes: the whole video, then the intervals' frames again);
- track: landmarks, alignment, brightness normalisation;
- flow: the spotter's signal (DIS flow between aligned faces, region speeds);
- spot: intervals from the signal;
- classify: the bundle's preprocessing and network on every interval.

    python benchmarks/analyze_speed.py --seconds 20 --repeats 2 [--model runs/demo/result/model]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2

from microexpr.analyze import Analyzer
from microexpr.analyze.analyzer import STAGES
from microexpr.config import config_from
from microexpr.synth import synthetic_flow_images
from microexpr.synth.long_videos import generate_long_videos, write_long_video
from microexpr.synth.replicas.flow_images import write_flat
from microexpr.train.experiment import run_experiment


def quick_bundle(folder: Path) -> Path:
    """A flow-image STSTNet from a short synthetic LOSO (its final model), like the demo's."""
    write_flat(synthetic_flow_images(4, 6, seed=0), folder / "data", dataset="synthetic")
    raw = {
        "data": {"name": "flow_images", "root": str(folder / "data")},
        "train": {"epochs": 20, "batch_size": 32, "lr": 1e-3},
    }
    run_experiment(config_from(raw), folder / "run", progress=False, max_folds=1)
    return folder / "run" / "model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", default=None, help="bundle folder (default: train one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("runs/analyze_speed"))
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    video = generate_long_videos(1, 1, seconds=args.seconds, fps=args.fps, size=480, seed=0)[0]
    video.frames = [cv2.copyMakeBorder(f, 0, 0, 80, 80, cv2.BORDER_REFLECT) for f in video.frames]
    path = write_long_video(video, args.out / "video_640x480.mp4")
    model = Path(args.model) if args.model else quick_bundle(args.out / "bundle")
    analyzer = Analyzer(model=model, device=args.device)
    n = len(video.frames)
    print(
        f"{path}: {n} frames, 640 x 480, {args.fps:g} fps, {len(video.events)} planted; "
        f"model {model} ({analyzer.bundle.kind}); {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    runs = []
    for repeat in range(args.repeats):
        start = time.perf_counter()
        analysis = analyzer.analyze(path)
        wall = time.perf_counter() - start
        runs.append((wall, analysis.timings, len(analysis.events)))
        print(f"run {repeat + 1}: {n / wall:.1f} frames/s ({wall:.1f} s, {runs[-1][2]} intervals)")
    wall, timings, intervals = min(runs, key=lambda r: r[0])  # the least disturbed run
    print(f"\nbest of {args.repeats}: {n / wall:.1f} frames/s end to end, {intervals} intervals\n")
    print("| stage | s | ms / frame | share |")
    print("| --- | --- | --- | --- |")
    for stage in STAGES:
        seconds = timings[stage]
        print(f"| {stage} | {seconds:.2f} | {1000 * seconds / n:.2f} | {seconds / wall:.0%} |")
    other = wall - sum(timings.values())
    print(
        f"| other (tables, pictures) | {other:.2f} | {1000 * other / n:.2f} | {other / wall:.0%} |"
    )
    print(f"| **total** | {wall:.2f} | {1000 * wall / n:.2f} | 100% |")
    print(f"\nthreads: OpenCV {cv2.getNumThreads()}, numpy/torch as installed; frames/s "
          f"{n / wall:.1f} (target 25)")  # fmt: skip


if __name__ == "__main__":
    main()
