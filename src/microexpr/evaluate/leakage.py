"""The leakage gap made visible: what per-subject best-epoch selection would have printed.

HTNet's public ``main_HTNet.py`` (and CausalNet, MMNet) score the test subject after every
epoch and keep, per subject, the predictions of the epoch that scored best on that subject
(``best_accuracy_for_each_subject <= val_acc``: a tie goes to the later epoch). That selects
on the test fold. With ``train.record_epochs`` a run records the test-fold probabilities of
every N-th epoch (and the last) beside its honest last-epoch predictions; this module
replays that selection on the record, so the report can show both figures from one run. The
selected figure is NOT A RESULT: it is labelled so in every file it appears in, and it is
never written into ``metrics.json`` or ``predictions.csv``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from microexpr import atomicio
from microexpr.evaluate.metrics import scores
from microexpr.evaluate.report import parse_predictions
from microexpr.protocols import Fold
from microexpr.samples import Sample

LABEL = "NOT A RESULT: per-subject best-epoch selection, as HTNet's main_HTNet.py does"
FILE = "leakage.json"

# What a trainer hands over per fold: (0-based epoch, test probabilities) in epoch order.
EpochRecord = Callable[[Fold, list[tuple[int, np.ndarray]]], None]


def epochs_path(fold_dir: Path, name: str) -> Path:
    return fold_dir / f"{name}.epochs.csv"


def epoch_writer(fold_dir: Path, samples: Sequence[Sample], classes: Sequence[str]) -> EpochRecord:
    """A callback that writes one fold's recorded epochs to ``<fold>.epochs.csv`` (epoch
    1-based, sample id, one probability column per class), checksummed like the fold files."""

    def write(fold: Fold, history: list[tuple[int, np.ndarray]]) -> None:
        ids = [samples[i].id for i in fold.test]
        tables = []
        for epoch, probs in history:
            table = pd.DataFrame({"epoch": epoch + 1, "sample_id": ids})
            for i, cls in enumerate(classes):
                table[f"p_{cls}"] = probs[:, i]
            tables.append(table)
        if tables:
            fold_dir.mkdir(parents=True, exist_ok=True)
            text = pd.concat(tables, ignore_index=True).to_csv(index=False)
            atomicio.write_text(epochs_path(fold_dir, fold.name), text)

    return write


def read_epochs(path: Path, classes: Sequence[str]) -> dict[int, pd.DataFrame]:
    """A fold's record: epoch (1-based) -> its table (sample_id, p_* columns)."""
    table = parse_predictions(atomicio.read_text(path))
    missing = [c for c in (f"p_{k}" for k in classes) if c not in table]
    if missing:
        raise atomicio.CorruptFileError(path, f"columns {missing} missing")
    return {int(e): t.reset_index(drop=True) for e, t in table.groupby("epoch", sort=True)}


def best_epoch_selection(
    predictions: pd.DataFrame,
    classes: Sequence[str],
    fold_dir: Path,
    members: Mapping[str, Sequence[str]],
) -> dict:
    """Replay per-fold (per test subject) best-epoch selection on a run's epoch records.

    ``predictions``: the run's honest pooled table (fold, sample_id, y_true, dataset).
    ``members``: each fold's record names (the fold itself, or its ensemble members, whose
    probabilities are averaged per epoch as the honest ensemble averages them). Returns the
    honest and the selected scores (Full and per database) and every fold's chosen epoch.
    """
    columns = [f"p_{c}" for c in classes]
    chosen_rows, chosen_epoch, missing = [], {}, []
    for name, rows in predictions.groupby("fold", sort=False):
        paths = [epochs_path(fold_dir, m) for m in members.get(name, [name])]
        if any(atomicio.problem(p) is not None for p in paths):
            missing.append(name)
            chosen_rows.append(rows.assign(epoch=None))
            continue
        records = [read_epochs(p, classes) for p in paths]
        best, best_acc, best_pred = None, -1.0, None
        for epoch in sorted(records[0]):
            tables = [r[epoch] for r in records]
            if any(t["sample_id"].tolist() != rows["sample_id"].tolist() for t in tables):
                raise atomicio.CorruptFileError(paths[0], f"epoch {epoch}: not the fold's samples")
            y_pred = np.mean([t[columns].to_numpy() for t in tables], axis=0).argmax(1)
            acc = float((y_pred == rows["y_true"].to_numpy()).mean())
            if best_acc <= acc:  # main_HTNet.py: best_accuracy_for_each_subject <= val_acc
                best, best_acc, best_pred = epoch, acc, y_pred
        chosen_epoch[name] = best
        chosen_rows.append(rows.assign(y_pred=best_pred, epoch=best))
    selected = pd.concat(chosen_rows, ignore_index=True)
    return {
        "label": LABEL,
        "honest_last_epoch": _scores(predictions),
        "best_epoch_per_subject": _scores(selected),
        "chosen_epoch": chosen_epoch,
        "folds_without_record": missing,
    }


def _scores(table: pd.DataFrame) -> dict:
    result = {"Full": _brief(table)}
    for dataset, rows in sorted(table.groupby("dataset")):
        result[str(dataset)] = _brief(rows)
    return result


def _brief(rows: pd.DataFrame) -> dict:
    s = scores(rows["y_true"].tolist(), rows["y_pred"].tolist())
    return {"n": len(rows), "accuracy": s["accuracy"], "uf1": s["uf1"], "uar": s["uar"]}


def write_diagnostic(out_dir: Path, diagnostic: dict) -> None:
    atomicio.write_text(out_dir / FILE, json.dumps(diagnostic, indent=2))


def section(diagnostic: dict) -> str:
    """The report's markdown section: the honest figure beside the selected one, labelled."""
    honest, selected = diagnostic["honest_last_epoch"], diagnostic["best_epoch_per_subject"]
    lines = [
        "",
        f"## {LABEL}",
        "",
        "The same run's test-fold predictions were recorded every few epochs "
        "(`train.record_epochs`). Keeping, for each test subject, the epoch that scored best "
        "on that subject selects on the test fold; the second figure is what such a script "
        f"would have printed. Only the first is this run's result. Details: `{FILE}`.",
        "",
        "| subset | n | honest UF1 | honest UAR | selected UF1 (NOT A RESULT) "
        "| selected UAR (NOT A RESULT) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for subset, h in honest.items():
        s = selected[subset]
        lines.append(
            f"| {subset} | {h['n']} | {h['uf1']:.4f} | {h['uar']:.4f} "
            f"| {s['uf1']:.4f} | {s['uar']:.4f} |"
        )
    if diagnostic["folds_without_record"]:
        lines += [
            "",
            f"Folds without a record (honest predictions used): "
            f"{', '.join(diagnostic['folds_without_record'])}.",
        ]
    return "\n".join(lines) + "\n"
