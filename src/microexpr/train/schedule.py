"""Learning-rate schedule on a validation split carved out of the training data only.

Seed 001 divides the learning rate by 10 after 30 epochs without validation improvement.
The validation samples come from the fold's training data (whole subjects when subject ids
are given), so nothing is ever chosen on the test fold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit, StratifiedShuffleSplit


def validation_split(
    n: int,
    fraction: float,
    seed: int,
    labels: Sequence[int] | None = None,
    groups: Sequence | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(fit, validation) index arrays over the ``n`` training samples.

    Whole groups (subjects) go to validation when ``groups`` has two or more; otherwise the
    split is by sample, stratified by ``labels`` when every class has two samples or more.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, not {fraction}")
    index = np.zeros(n)
    if groups is not None and len(set(groups)) >= 2:
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        return next(splitter.split(index, groups=list(groups)))
    stratify = None
    if labels is not None:
        counts = np.unique(np.asarray(labels), return_counts=True)[1]
        n_val = math.ceil(fraction * n)
        if counts.min() >= 2 and len(counts) <= min(n_val, n - n_val):
            stratify = np.asarray(labels)
    kind = ShuffleSplit if stratify is None else StratifiedShuffleSplit
    return next(kind(n_splits=1, test_size=fraction, random_state=seed).split(index, stratify))
