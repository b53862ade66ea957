"""Honest composite LOSO of the 2-D seed models on the real MEGC2019 composite apex faces.

Runs configs/seed000_composite.yaml (DenseNet-201 + ECA), seed001_composite.yaml
(PSA-ResNet50 + island loss) and seed002_composite.yaml (SE-ResNeXt-50 + focal loss), or
seed002_flow (seed002_composite_flow.yaml: the same on the flow images): all 68
leave-one-subject-out folds, a fixed number of epochs, nothing chosen on a test fold. Each
model writes the standard result folder (folds/, predictions.csv, metrics.json, report.md,
confusion.png) under --out, and resumes there if interrupted. Prints a markdown table of
Full and per-database UF1/UAR with wall time.

On CUDA each full training batch replays a captured CUDA graph (train.cuda_graph, bfloat16
autocast); --eager runs plain steps. Epochs, batch and input size are the configs' unless
given.

    python benchmarks/composite_2d.py --device cuda --out results/composite_2d
    python benchmarks/composite_2d.py --device cpu --epochs 1 --max-folds 2 --input-size 32
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from microexpr import models
from microexpr.config import ExperimentConfig, load_config
from microexpr.inference import torch_device
from microexpr.recipe import input_spec
from microexpr.train.experiment import run_experiment

ROOT = Path(__file__).resolve().parents[1]
# seed000, seed001, seed002 (apex faces) and seed002_flow (flow images)
CONFIGS = {
    path.stem.replace("_composite", ""): path
    for path in sorted((ROOT / "configs").glob("seed00[012]_composite*.yaml"))
}
DATABASES = ("casme2", "samm", "smic")


def configure(name: str, args: argparse.Namespace) -> ExperimentConfig:
    """The seed's composite config with this run's data, device and any size overrides."""
    cuda = torch_device(args.device).type == "cuda"
    overrides = [
        f"data.root={args.data}",
        f"train.device={args.device}",
        f"train.cuda_graph={str(cuda and not args.eager).lower()}",
    ]
    for key, value in (
        ("train.epochs", args.epochs),
        ("train.batch_size", args.batch_size),
        ("model.input_size", args.input_size),
    ):
        if value:
            overrides.append(f"{key}={value}")
    cfg = load_config(CONFIGS[name], overrides)
    if args.max_folds:
        cfg = cfg.model_copy(update={"name": f"{cfg.name} (first {args.max_folds} folds)"})
    return cfg


def row(name: str, cfg: ExperimentConfig, metrics: dict, seconds: float) -> str:
    steps = "graphed" if cfg.train.cuda_graph else "eager"
    cells = [name, cfg.model.name, str(cfg.train.epochs), str(cfg.train.batch_size)]
    size = input_spec(models.info(cfg.model.name).input, cfg).size
    cells += [str(size), steps]
    for subset in [metrics["overall"]] + [metrics["per_dataset"].get(d) for d in DATABASES]:
        cells += ["-", "-"] if subset is None else [f"{subset['uf1']:.4f}", f"{subset['uar']:.4f}"]
    return "| " + " | ".join(cells + [f"{seconds:.0f}"]) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default="seed000,seed001,seed002", help=f"comma-separated: {', '.join(CONFIGS)}"
    )
    parser.add_argument("--epochs", type=int, default=0, help="0 = the config's")
    parser.add_argument("--batch-size", type=int, default=0, help="0 = the config's")
    parser.add_argument("--input-size", type=int, default=0, help="0 = the config's")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--eager", action="store_true", help="no CUDA graphs on CUDA")
    parser.add_argument("--data", default=str(ROOT / "../shared/data/megc2019_composite"))
    parser.add_argument("--out", default="results/composite_2d")
    parser.add_argument("--max-folds", type=int, default=0, help="0 = all 68 folds")
    args = parser.parse_args()
    if not Path(args.data).is_dir():
        raise SystemExit(f"no composite data at {args.data}")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    lines = [
        "| seed | model | epochs | batch | input | steps | Full UF1 | Full UAR | CASME II UF1 "
        "| CASME II UAR | SAMM UF1 | SAMM UAR | SMIC UF1 | SMIC UAR | wall s |",
        "|" + " --- |" * 15,
    ]
    for name in args.models.split(","):
        cfg = configure(name, args)
        out_dir = Path(args.out) / name
        start = time.perf_counter()
        metrics = run_experiment(
            cfg, out_dir, progress=False, max_folds=args.max_folds or None, save_model=False
        )
        lines.append(row(name, cfg, metrics, time.perf_counter() - start))
        print(lines[-1], flush=True)
    print(f"\nComposite LOSO ({device}, torch {torch.__version__}):\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
