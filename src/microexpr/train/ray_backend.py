"""Folds, ensemble members and sweep candidates as Ray tasks (``--backend ray``).

Ray is an optional extra (``pip install 'microexpr[ray]'``). Without an address a local Ray
starts by itself; with one (``ray://host:10001`` or ``host:6379``) the same run goes to a
cluster. Each fold group is one task with one CPU and one torch thread, the way the stacked
engine runs its parts locally, and writes its fold files through the local runner
(``train/folds.run_folds``) as soon as it finishes, so a re-run resumes the same way. A task
whose worker dies is retried by Ray from the start with the same seeds, so every fold is
scored once and the results are those of the local backend.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from microexpr.config import ConfigError
from microexpr.protocols import Fold
from microexpr.samples import Sample
from microexpr.train.folds import FitPredict, run_folds

# A task whose worker dies (killed, out of memory, node lost) is started again this often.
TASK_RETRIES = 3


def require_ray():
    """The ``ray`` module, or a ConfigError that says how to install it."""
    if importlib.util.find_spec("ray") is None:
        raise ConfigError("--backend ray needs Ray: pip install 'microexpr[ray]'")
    import ray

    return ray


def connect(address: str | None = None) -> None:
    """Join the Ray cluster at ``address``, or start a local one; once per process."""
    if address is None:
        stay_on_loopback()
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, logging_level="WARNING")


def stay_on_loopback() -> None:
    """Make a local Ray cluster bind to and talk over 127.0.0.1 only. Ray otherwise uses the
    machine's network address (it maps localhost to it on purpose); its switch for the
    loopback-only mode it uses on macOS and Windows is read when ``ray`` is first imported."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def cluster_cpus() -> int:
    """CPUs of the connected cluster (at least 1)."""
    return max(1, int(require_ray().cluster_resources().get("CPU", 1)))


def _call(fit_predict: FitPredict, folds: list[Fold]) -> list[np.ndarray]:
    """A task's body: one torch thread, as the local runner gives each stacked part."""
    import torch

    torch.set_num_threads(1)
    return fit_predict(folds)


def remote_fit(fit_predict: FitPredict, task_per_fold: bool) -> FitPredict:
    """``fit_predict`` run as Ray tasks: each call's folds as one task (the stacked engine
    trains them together), or with ``task_per_fold`` each fold (or ensemble member) as its
    own task, all in flight at once."""
    ray = require_ray()
    task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(_call)
    shared = ray.put(fit_predict)

    def fit_remote(folds: list[Fold]) -> list[np.ndarray]:
        if not task_per_fold:
            return ray.get(task.remote(shared, folds))
        return [
            probs for part in ray.get([task.remote(shared, [f]) for f in folds]) for probs in part
        ]

    return fit_remote


def run_folds_concurrently(
    samples: Sequence[Sample],
    groups: list[list[Fold]],
    fit_predict: Callable[[list[Fold]], list[np.ndarray]],
    classes: Sequence[str],
    out_dir: Path,
    progress: bool = True,
) -> pd.DataFrame:
    """Every group through ``run_folds`` at once (each waits on its own task and writes its
    fold files when it finishes; groups already on disk are skipped), then the pooled
    predictions of all folds."""
    with ThreadPoolExecutor(max_workers=max(1, len(groups))) as threads:
        jobs = [
            threads.submit(
                run_folds, samples, group, fit_predict, classes, out_dir, len(group), False
            )
            for group in groups
        ]
        for job in jobs:
            job.result()
    folds = [fold for group in groups for fold in group]
    return run_folds(samples, folds, fit_predict, classes, out_dir, 1, progress)
