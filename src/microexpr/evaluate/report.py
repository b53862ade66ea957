"""Result files every run writes: predictions.csv, metrics.json, report.md, confusion.png.

Each is written atomically with a checksum (``microexpr.atomicio``), so an interrupted run
leaves either the old file, no file, or one a reader can tell is unfinished.
"""

from __future__ import annotations

import io
import json
import platform
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from microexpr import atomicio
from microexpr.evaluate.metrics import evaluate

PREDICTIONS = "predictions.csv"
# Held-out predictions of inner splits of each outer fold's training subjects
# (``train --inner-predictions``), read by ``ensemble --select inner``.
INNER_PREDICTIONS = "inner_predictions.csv"
_PACKAGES = (
    "microexpr",
    "torch",
    "numpy",
    "scikit-learn",
    "opencv-contrib-python-headless",
    "timm",
)


def parse_predictions(text: str) -> pd.DataFrame:
    """A predictions table (pooled, one fold's or one epoch record's) from its CSV text; ids
    stay text (``006`` is not 6)."""
    return pd.read_csv(io.StringIO(text), dtype={"sample_id": str, "subject": str})


def versions() -> dict[str, str]:
    """Versions of Python and the packages that decide a result."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def determinism(config: dict, device: str | None = None) -> dict:
    """The settings that make a CPU run repeat its predictions exactly, as this run had them.

    Same command, same seed, same versions and thread count on the CPU: the same weights, so
    the same predictions (tests/test_reliability.py runs a command twice and compares). On
    CUDA, cuDNN's and cuBLAS's algorithm choice and atomic adds make results differ in the
    last bits between runs unless deterministic algorithms are forced. ``device``: the one
    the run resolved (the config may say ``auto``).
    """
    train = config.get("train", {})
    return {
        "seed": train.get("seed"),
        "per_fold_seeds": "crc32 of '<seed>:<fold name>' (protocols.Fold.seed)",
        "device": device or train.get("device"),
        "shuffle": train.get("shuffle"),
        "data_loader_workers": train.get("num_workers"),
        "torch_threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "repeatable": "bitwise on the CPU with these settings and versions; not bitwise on CUDA "
        "unless deterministic algorithms are on",
    }


def plot_confusion(matrix: np.ndarray, classes: Sequence[str], path: Path, title: str) -> None:
    """Row-normalised confusion matrix with counts, as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2.5, 1.2 * len(classes) + 2))
    ConfusionMatrixDisplay(matrix, display_labels=list(classes)).plot(
        ax=ax, cmap="Blues", colorbar=False, values_format="d"
    )
    ax.set_title(title)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    plt.close(fig)
    atomicio.write_bytes(path, png.getvalue())


def _markdown(metrics: dict, title: str) -> str:
    rows = [("Full", metrics["overall"])] + sorted(metrics["per_dataset"].items())
    lines = [
        f"# {title}",
        "",
        "| subset | n | accuracy | UF1 | UAR |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {name} | {m['n']} | {m['accuracy']:.4f} | {m['uf1']:.4f} | {m['uar']:.4f} |"
        for name, m in rows
    ]
    lines += [
        "",
        "| class | precision | recall | F1 | support |",
        "| --- | --- | --- | --- | --- |",
    ]
    for cls in metrics["classes"]:
        c = metrics["per_class"][cls]
        lines.append(
            f"| {cls} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1-score']:.4f} "
            f"| {int(c['support'])} |"
        )
    lines += ["", "![confusion matrix](confusion.png)", ""]
    if "determinism" in metrics:
        d = metrics["determinism"]
        lines += [
            f"Repeatable: seed {d['seed']} (per-fold seeds from it), device {d['device']}, "
            f"{d['torch_threads']} torch threads, deterministic algorithms "
            f"{'on' if d['deterministic_algorithms'] else 'off'}, cuDNN benchmark "
            f"{'on' if d['cudnn_benchmark'] else 'off'}: {d['repeatable']}.",
            "",
        ]
    if "seconds" in metrics:
        lines.append(f"Wall time: {metrics['seconds']:.1f} s.")
    return "\n".join(lines) + "\n"


def write_report(
    predictions: pd.DataFrame,
    classes: Sequence[str],
    out_dir: Path,
    config: dict,
    seconds: float,
    title: str = "Results",
    device: str | None = None,
    extra_section: str = "",
    trained: bool = True,
) -> dict:
    """Score the pooled predictions and write all result files; returns the metrics dict.
    ``device``: where the models ran, recorded with the determinism settings.
    ``extra_section``: markdown appended to report.md only (the leakage diagnostic,
    ``evaluate/leakage.py``, which is not a result and stays out of metrics.json).
    ``trained``: False for a result computed from other runs' files (an ensemble), which has
    no seed, device or threads of its own: no determinism section then."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomicio.write_text(out_dir / PREDICTIONS, predictions.to_csv(index=False))
    metrics = evaluate(predictions, classes)
    metrics.update(config=config, versions=versions())
    if trained:
        metrics["determinism"] = determinism(config, device)
    metrics["seconds"] = round(seconds, 2)
    atomicio.write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    plot_confusion(np.array(metrics["confusion"]), classes, out_dir / "confusion.png", title)
    atomicio.write_text(out_dir / "report.md", _markdown(metrics, title) + extra_section)
    return metrics
