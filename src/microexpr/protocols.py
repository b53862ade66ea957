"""Which samples train and which test: LOSO (composite LOSO), k-fold, hold-out, cross-dataset.

A protocol only sees Samples (subject, dataset, label, meta); it never sees a model, so it
sits below everything that trains. ``make_folds`` refuses a split that shares a sample (or,
subject-wise, a subject) between training and test.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut, StratifiedKFold

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


def inner_folds(outer: Fold, samples: list[Sample], splits: int) -> list[Fold]:
    """Leave-subjects-out splits of ``outer``'s training subjects only."""
    train = np.array(outer.train)
    groups = [subject_key(samples[i]) for i in train]
    splits = min(splits, len(set(groups)))
    if splits < 2:
        raise ValueError(f"fold {outer.name}: fewer than 2 training subjects to split")
    folds = [
        Fold(f"{outer.name}~inner{j}", tuple(train[fit].tolist()), tuple(train[held].tolist()))
        for j, (fit, held) in enumerate(GroupKFold(n_splits=splits).split(train, groups=groups))
    ]
    check_disjoint(samples, folds, by_subject=True)
    return folds
