"""Result files every run writes: predictions.csv, metrics.json, report.md, confusion.png."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from microexpr.evaluate.metrics import evaluate

_PACKAGES = (
    "microexpr",
    "torch",
    "numpy",
    "scikit-learn",
    "opencv-contrib-python-headless",
    "timm",
)


def versions() -> dict[str, str]:
    """Versions of Python and the packages that decide a result."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def plot_confusion(matrix: np.ndarray, classes: Sequence[str], path: Path, title: str) -> None:
    """Row-normalised confusion matrix with counts, as a PNG."""
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
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
) -> dict:
    """Score the pooled predictions and write all result files; returns the metrics dict."""
    out_dir.mkdir(parents=True, exist_ok=True)
    predictions.to_csv(out_dir / "predictions.csv", index=False)
    metrics = evaluate(predictions, classes)
    metrics.update(config=config, versions=versions(), seconds=round(seconds, 2))
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_confusion(np.array(metrics["confusion"]), classes, out_dir / "confusion.png", title)
    (out_dir / "report.md").write_text(_markdown(metrics, title))
    return metrics
