"""Do the 3-D clip models learn? Leave-one-subject-out on synthetic CASME II clips.

Generates clips with planted action-unit motion (microexpr.synth), writes them in the
CASME II layout, and runs the real experiment path (reader -> taxonomy -> clip pipeline,
cached in the temporary folder -> LOSO -> report; no final model bundle) with a test-scale
model (narrow widths, small clips: see docs/models3d.md). Frames are resized whole unless
``--align landmarks``. Prints a markdown table of pooled accuracy / UF1 / UAR against chance.

    python benchmarks/clip_synthetic_loso.py --model c3d_vgg [--subjects 4] [--clips 9]
    python benchmarks/clip_synthetic_loso.py --model ms_resnet3d50
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from microexpr.config import ExperimentConfig
from microexpr.synth import generate_clips, write_layout
from microexpr.train.experiment import run_experiment

# Test-scale widths: the seed architectures' layout, narrower, for a 2-core CPU. With 8-channel
# layers the seed's 25% dropout after every block kept c3d_vgg from fitting its training clips
# (training accuracy at chance after 40 epochs), so the test scale turns it off.
TEST_SCALE = {
    "c3d_vgg": {"widths": (8, 8, 16, 16, 32, 32, 32, 32), "hidden": 64, "conv_drop": 0.0},
    "ms_resnet3d50": {"layers": (1, 1, 1, 1), "widths": (8, 16, 16, 16), "stem_width": 12},
}
LOSS = {"c3d_vgg": "cross_entropy", "ms_resnet3d50": "multi_head_ce"}


def experiment(args: argparse.Namespace, root: Path) -> ExperimentConfig:
    """The config of the run: CASME II reader, 3 classes, LOSO, test-scale model."""
    return ExperimentConfig.model_validate(
        {
            "name": f"{args.model} synthetic LOSO",
            "data": {"name": "casme2", "root": str(root), "taxonomy": "casme2-3"},
            "model": {
                "name": args.model,
                "options": TEST_SCALE[args.model],
                "input_size": args.size,
            },
            "preprocess": {
                "span": "all" if args.model == "c3d_vgg" else "expression",
                "align": args.align,
                "face_size": args.flow_size,
            },
            "clip": {
                "num_frames": args.frames,
                "expand": args.expand,
                "subtract_first": args.subtract_first,
            },
            "train": {
                "epochs": args.epochs,
                "batch_size": args.batch,
                "lr": args.lr,
                "optimizer": "adam",
                "loss": LOSS[args.model],
                "shuffle": True,
                "device": args.device,
                "seed": args.seed,
            },
            "protocol": {"name": "loso"},
            "engine": "per_fold",
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(TEST_SCALE), default="c3d_vgg")
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--clips", type=int, default=9, help="clips per subject")
    parser.add_argument("--emotions", default="happiness,surprise,disgust")
    parser.add_argument("--face-size", type=int, default=64, help="rendered frame size")
    parser.add_argument("--clip-frames", type=int, default=12, help="rendered frames per clip")
    parser.add_argument("--amplitude", type=float, nargs=2, default=(3.0, 4.5))
    parser.add_argument("--size", type=int, default=32, help="model input size")
    parser.add_argument("--frames", type=int, default=8, help="model clip length")
    parser.add_argument(
        "--flow-size",
        type=int,
        default=64,
        help="side frames are brought to before the model's size; flow is computed there "
        "(preprocess.face_size)",
    )
    parser.add_argument(
        "--align",
        choices=("none", "landmarks"),
        default="none",
        help="none: whole frames resized (as measured in BENCHMARKS.md); landmarks: aligned faces",
    )
    parser.add_argument("--expand", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--subtract-first", action="store_true", help="frame clips minus their first frame"
    )
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--shuffle-labels", action="store_true", help="control: permute emotions across clips"
    )
    parser.add_argument("--out", default=None, help="result folder (default: temporary)")
    args = parser.parse_args()

    start = time.perf_counter()
    emotions = args.emotions.split(",")
    clips = generate_clips(
        args.subjects,
        args.clips,
        size=args.face_size,
        seed=args.seed,
        emotions=emotions,
        n_frames=args.clip_frames,
        amplitude=tuple(args.amplitude),
    )
    if args.shuffle_labels:
        shuffled = np.random.default_rng(args.seed).permutation([c.emotion for c in clips])
        for clip, emotion in zip(clips, shuffled, strict=True):
            clip.emotion = str(emotion)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "casme2"
        write_layout("casme2", clips, root)
        made = time.perf_counter() - start
        out = Path(args.out) if args.out else Path(tmp) / "result"
        cfg = experiment(args, root)
        cache = Path(tmp) / "cache"
        metrics = run_experiment(cfg, out, progress=False, cache=cache, save_model=False)
    seconds = time.perf_counter() - start
    print(
        f"{args.model}: {len(clips)} clips, {args.subjects} subjects, classes "
        f"{'/'.join(emotions)}, {args.clip_frames} frames of {args.face_size}px -> "
        f"{args.frames} x {args.size}px, {args.epochs} epochs, expand x10 {args.expand}, "
        f"subtract first frame {args.subtract_first}, shuffled labels {args.shuffle_labels}; "
        f"data {made:.0f} s, total {seconds:.0f} s"
    )
    print("| model | LOSO accuracy | UF1 | UAR | chance |\n| --- | --- | --- | --- | --- |")
    overall = metrics["overall"]
    print(
        f"| {args.model} | {overall['accuracy']:.3f} | {overall['uf1']:.3f} | "
        f"{overall['uar']:.3f} | {1 / len(emotions):.3f} |"
    )


if __name__ == "__main__":
    main()
