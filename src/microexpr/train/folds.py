"""The fold runner: trains the folds not yet on disk and writes each fold's predictions at
once, so an interrupted run resumes where it stopped and never loses a finished fold."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from microexpr.protocols import Fold
from microexpr.samples import Sample

# Trains on the given folds and returns each fold's test probabilities (test order).
FitPredict = Callable[[list[Fold]], list[np.ndarray]]


def fold_table(
    samples: Sequence[Sample], fold: Fold, probs: np.ndarray, classes: Sequence[str]
) -> pd.DataFrame:
    """One fold's rows of the predictions table."""
    index = {c: i for i, c in enumerate(classes)}
    test = [samples[i] for i in fold.test]
    table = pd.DataFrame(
        {
            "sample_id": [s.id for s in test],
            "subject": [s.subject for s in test],
            "dataset": [s.dataset for s in test],
            "fold": fold.name,
            "y_true": [index[s.label] for s in test],
            "y_pred": probs.argmax(axis=1),
        }
    )
    for i, cls in enumerate(classes):
        table[f"p_{cls}"] = probs[:, i]
    return table


def run_folds(
    samples: Sequence[Sample],
    folds: Sequence[Fold],
    fit_predict: FitPredict,
    classes: Sequence[str],
    out_dir: Path,
    folds_per_call: int = 1,
    progress: bool = True,
) -> pd.DataFrame:
    """Run every fold not already on disk; return the pooled predictions of all folds.

    Folds are handed to ``fit_predict`` in fixed groups of ``folds_per_call`` (formed from
    the full fold list, so a resumed run groups them exactly as the first run did) and each
    group's predictions are written as soon as it finishes.
    """
    fold_dir = out_dir / "folds"
    fold_dir.mkdir(parents=True, exist_ok=True)
    groups = [list(folds[i : i + folds_per_call]) for i in range(0, len(folds), folds_per_call)]
    todo = [g for g in groups if not all((fold_dir / f"{f.name}.csv").exists() for f in g)]
    bar = tqdm(total=len(folds), desc="folds", disable=not progress)
    bar.update(len(folds) - sum(len(g) for g in todo))
    for group in todo:
        for fold, probs in zip(group, fit_predict(group), strict=True):
            tmp = fold_dir / f"{fold.name}.csv.tmp"
            fold_table(samples, fold, probs, classes).to_csv(tmp, index=False)
            tmp.replace(fold_dir / f"{fold.name}.csv")
        bar.update(len(group))
    bar.close()
    return pd.concat(
        [pd.read_csv(fold_dir / f"{f.name}.csv", dtype={"subject": str}) for f in folds],
        ignore_index=True,
    )
