"""Scores over pooled predictions, as scikit-learn computes them.

UF1 is the macro F1 and UAR the macro recall (MEGC2019), both over the classes that occur
in ``y_true`` of the pool being scored, so a per-database subset without a class is not
penalised for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    recall_score,
)


def uf1(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """The macro F1 over the classes present in ``y_true``: what a selection that scores
    many candidates needs, without the rest of :func:`scores`."""
    present = np.unique(y_true)
    return float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))


def scores(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, float]:
    """accuracy, uf1, uar and n for one pool of predictions."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    present = np.unique(y_true)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "uf1": uf1(y_true, y_pred),
        "uar": float(
            recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
        ),
        "n": int(len(y_true)),
    }


def per_class(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> dict:
    """scikit-learn's classification report as a dict keyed by class name."""
    return classification_report(
        y_true,
        y_pred,
        labels=list(range(len(classes))),
        target_names=list(classes),
        output_dict=True,
        zero_division=0,
    )


def confusion(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    return confusion_matrix(y_true, y_pred, labels=list(range(num_classes)))


def evaluate(predictions: pd.DataFrame, classes: Sequence[str]) -> dict:
    """Overall, per-database and per-class figures for a predictions table."""
    result = {
        "overall": scores(predictions.y_true, predictions.y_pred),
        "per_dataset": {
            name: scores(group.y_true, group.y_pred)
            for name, group in predictions.groupby("dataset", sort=True)
        },
        "per_class": per_class(predictions.y_true, predictions.y_pred, classes),
        "confusion": confusion(predictions.y_true, predictions.y_pred, len(classes)).tolist(),
        "classes": list(classes),
    }
    return result
