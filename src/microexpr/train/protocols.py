"""Which samples train and which test, and a fold runner that never loses a finished fold.

A protocol only sees Samples (subject, dataset, label, meta); it never sees a model. The
runner hands each fold's indices to a ``fit_predict`` callable and writes that fold's
predictions at once, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import LeaveOneGroupOut, StratifiedKFold
from tqdm.auto import tqdm

from microexpr.registry import Registry
from microexpr.samples import Sample, subject_key


@dataclass(frozen=True)
class Fold:
    """One train/test split by sample index; ``name`` is file-safe and stable across runs."""

    name: str
    train: tuple[int, ...]
    test: tuple[int, ...]

    def seed(self, base: int) -> int:
        """Per-fold seed: the same fold gets the same initialisation in any run order."""
        return zlib.crc32(f"{base}:{self.name}".encode())


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)


def loso(samples: Sequence[Sample]) -> list[Fold]:
    """Leave-one-subject-out; subjects are dataset-qualified, so this is also composite LOSO."""
    groups = [subject_key(s) for s in samples]
    folds = []
    for train, test in LeaveOneGroupOut().split(np.zeros(len(samples)), groups=groups):
        folds.append(Fold(_safe(groups[test[0]]), tuple(train), tuple(test)))
    return folds


def kfold(samples: Sequence[Sample], k: int = 10, seed: int = 0) -> list[Fold]:
    """Stratified k-fold by label (sample-wise: subjects may appear on both sides)."""
    labels = [s.label for s in samples]
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [
        Fold(f"fold{i:02d}", tuple(train), tuple(test))
        for i, (train, test) in enumerate(splitter.split(np.zeros(len(samples)), labels))
    ]


def holdout(
    samples: Sequence[Sample],
    key: str = "usage",
    train_values: Sequence[str] = ("Training",),
    test_values: Sequence[str] = ("PrivateTest",),
) -> list[Fold]:
    """The database's own split, read from ``Sample.meta[key]`` (FER2013's ``Usage``)."""
    train = tuple(i for i, s in enumerate(samples) if s.meta.get(key) in train_values)
    test = tuple(i for i, s in enumerate(samples) if s.meta.get(key) in test_values)
    if not train or not test:
        raise ValueError(f"hold-out on meta[{key!r}] found {len(train)} train, {len(test)} test")
    return [Fold("holdout", train, test)]


def cross_dataset(
    samples: Sequence[Sample], train_datasets: Sequence[str], test_datasets: Sequence[str]
) -> list[Fold]:
    """Train on some databases, test on others (no subject overlaps across databases)."""
    train = tuple(i for i, s in enumerate(samples) if s.dataset in train_datasets)
    test = tuple(i for i, s in enumerate(samples) if s.dataset in test_datasets)
    return [Fold(_safe(f"{'+'.join(train_datasets)}-to-{'+'.join(test_datasets)}"), train, test)]


PROTOCOLS: Registry[Callable[..., list[Fold]]] = Registry("protocol")
PROTOCOLS.add("loso", loso)
PROTOCOLS.add("composite_loso", loso)
PROTOCOLS.add("kfold", kfold)
PROTOCOLS.add("holdout", holdout)
PROTOCOLS.add("cross_dataset", cross_dataset)


def make_folds(name: str, samples: Sequence[Sample], **kwargs) -> list[Fold]:
    folds = PROTOCOLS.get(name)(samples, **kwargs)
    check_disjoint(samples, folds, by_subject=name in ("loso", "composite_loso"))
    return folds


def check_disjoint(samples: Sequence[Sample], folds: Sequence[Fold], by_subject: bool) -> None:
    """Refuse a split that leaks: shared samples, or (subject-wise) shared subjects."""
    for fold in folds:
        if set(fold.train) & set(fold.test):
            raise ValueError(f"fold {fold.name}: a sample is in both train and test")
        if by_subject:
            train_subjects = {subject_key(samples[i]) for i in fold.train}
            shared = train_subjects & {subject_key(samples[i]) for i in fold.test}
            if shared:
                raise ValueError(f"fold {fold.name}: subjects in train and test: {sorted(shared)}")


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
