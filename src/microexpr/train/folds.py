"""The fold runner: trains the folds not yet on disk and writes each fold's predictions at
once, so an interrupted run resumes where it stopped and never loses a finished fold.

A fold file counts as finished only when its checksum verifies (``microexpr.atomicio``) and
it holds exactly the fold's test samples with finite probabilities; any other file under a
fold's name (truncated, emptied, edited, from an older run) is recomputed with a note.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from microexpr import atomicio
from microexpr.evaluate.report import parse_predictions
from microexpr.protocols import Fold
from microexpr.samples import Sample

log = logging.getLogger("microexpr.train")

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


def read_fold(
    path: Path, samples: Sequence[Sample], fold: Fold, classes: Sequence[str]
) -> pd.DataFrame:
    """A finished fold file as a table; CorruptFileError when it is not one: checksum missing
    or wrong, or its rows are not this fold's test samples with finite probabilities."""
    table = parse_predictions(atomicio.read_text(path))
    expected = [samples[i].id for i in fold.test]
    columns = [f"p_{c}" for c in classes]
    if "sample_id" not in table or table["sample_id"].tolist() != expected:
        raise atomicio.CorruptFileError(path, "rows are not this fold's test samples")
    if any(c not in table for c in columns) or not np.isfinite(table[columns].to_numpy()).all():
        raise atomicio.CorruptFileError(path, "probabilities missing or not finite")
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
    group's predictions are written as soon as it finishes. A group is the unit of work: one
    with an unfinished fold is trained again, and only its unfinished folds are written.
    """
    fold_dir = out_dir / "folds"
    fold_dir.mkdir(parents=True, exist_ok=True)
    tables = {f.name: _finished(fold_dir / f"{f.name}.csv", samples, f, classes) for f in folds}
    groups = [list(folds[i : i + folds_per_call]) for i in range(0, len(folds), folds_per_call)]
    todo = [g for g in groups if any(tables[f.name] is None for f in g)]
    bar = tqdm(total=len(folds), desc="folds", disable=not progress or None)
    bar.update(len(folds) - sum(len(g) for g in todo))
    for group in todo:
        for fold, probs in zip(group, fit_predict(group), strict=True):
            if tables[fold.name] is not None:  # finished in a group trained again: kept
                continue
            text = fold_table(samples, fold, probs, classes).to_csv(index=False)
            atomicio.write_text(fold_dir / f"{fold.name}.csv", text)
            tables[fold.name] = parse_predictions(text)  # as a resumed run reads it back
        bar.update(len(group))
    bar.close()
    return pd.concat([tables[f.name] for f in folds], ignore_index=True)


def _finished(
    path: Path, samples: Sequence[Sample], fold: Fold, classes: Sequence[str]
) -> pd.DataFrame | None:
    """The fold's table when its file is finished; None (with a note when a file is there
    but unusable) when the fold must be trained."""
    if not path.exists():
        return None
    try:
        return read_fold(path, samples, fold, classes)
    except (atomicio.CorruptFileError, ValueError) as err:  # pandas raises ValueErrors too
        log.warning("%s; fold %s is trained again", err, fold.name)
        return None
