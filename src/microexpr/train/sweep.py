"""Nested selection: ``microexpr sweep`` and ``protocol.inner`` share this implementation.

A candidate is scored only inside each outer fold's training subjects: those subjects are
split leave-subjects-out (``inner_folds`` groups), the candidate is trained on each inner
training part and its pooled UF1 on the inner held-out subjects is its score for that outer
fold. The outer test subject is never trained on, scored or looked at while choosing. Each
outer fold's best candidate (the first in grid order on a tie) is then trained on all of
that fold's training subjects and scored once on its test subject; the pooled outer
predictions are the sweep's result. With the ``ray`` backend every candidate is one Ray Tune
trial and the outer folds run as Ray tasks; with ``local`` the candidates and folds run one
after another in this process, without Ray. Either way the outer folds go through the local
runner's fold files, so a re-run resumes. With ``save_model`` the final bundle is chosen the
same way: by an inner split of all subjects, then fitted on all of them.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch

from microexpr import atomicio
from microexpr.bundle import MANIFEST
from microexpr.config import FIXED_SECTIONS, ConfigError, ExperimentConfig, config_from
from microexpr.evaluate.metrics import scores
from microexpr.evaluate.report import write_report
from microexpr.inputs import encode_labels, model_inputs
from microexpr.protocols import Fold, inner_folds, make_folds
from microexpr.recipe import resolve
from microexpr.samples import Sample
from microexpr.train import ray_backend
from microexpr.train.experiment import (
    FINAL_FOLD,
    Backend,
    _check_config,
    default_cache,
    ensembled,
    load_samples,
    make_fit_predict,
    save_final_model,
    training_order,
    with_absolute_root,
)
from microexpr.train.folds import FitPredict, run_folds
from microexpr.train.stacked import split_folds


def parse_grid(pairs: list[str]) -> dict[str, list[str]]:
    """``KEY=V1,V2`` options -> {KEY: [V1, V2]} (values stay text, read as --set reads them)."""
    grid = {}
    for pair in pairs:
        key, sep, values = pair.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ConfigError(f"--grid {pair!r}: expected KEY=V1,V2,..., e.g. train.lr=1e-4,5e-5")
        if key.split(".")[0] in FIXED_SECTIONS:
            raise ConfigError(f"--grid {key}: a sweep cannot change {key.split('.')[0]}")
        grid[key] = [v.strip() for v in values.split(",")]
    return grid


def candidates(grid: dict[str, list[str]]) -> list[list[str]]:
    """Every combination of the grid's values, as ``--set`` overrides, in grid order."""
    keys = list(grid)
    return [
        [f"{k}={v}" for k, v in zip(keys, values, strict=True)]
        for values in itertools.product(*(grid[k] for k in keys))
    ]


class Candidate:
    """One setting: its config, Plan, inputs and fold trainer (one thread, no processes)."""

    def __init__(
        self,
        base: dict,
        overrides: list[str],
        cache: Path | None,
        samples: list[Sample] | None = None,
    ):
        """``samples``: the dataset as another candidate read it (a sweep cannot change
        ``data``, so it is read once); None reads it."""
        self.overrides = overrides
        self.config = config_from(base, overrides)
        self.plan = resolve(self.config)
        self.samples = samples if samples is not None else load_samples(self.plan)
        self.inputs = model_inputs(self.samples, self.plan, cache)
        if self.inputs.failed:
            raise ConfigError(f"{overrides}: some samples could not be preprocessed")
        self.targets = encode_labels(self.inputs.samples, self.plan.classes)

    def fit_predict(self, processes: int | None = 1) -> FitPredict:
        """``processes``: 1 inside a Ray task; None lets the stacked engine use every core."""
        fit, _ = make_fit_predict(self.plan, self.inputs, self.targets, False, processes=processes)
        return ensembled(fit, self.plan.ensemble) if self.plan.ensemble > 1 else fit

    def ordered(self, fold: Fold) -> Fold:
        return training_order(self.plan, self.inputs.samples, [fold])[0]


def inner_scores(
    candidate: Candidate, outer: list[Fold], splits: int, processes: int | None = 1
) -> dict[str, float]:
    """A candidate's pooled inner UF1 for every outer fold: trained and scored on inner splits
    of that fold's training subjects only (``fold.test`` is never touched here)."""
    samples = candidate.inputs.samples
    inner = {fold.name: inner_folds(fold, samples, splits) for fold in outer}
    flat = [candidate.ordered(f) for folds in inner.values() for f in folds]
    probs = iter(candidate.fit_predict(processes)(flat))
    result = {}
    for name, folds in inner.items():
        y_true, y_pred = [], []
        for fold in folds:
            y_true += candidate.targets[list(fold.test)].tolist()
            y_pred += next(probs).argmax(1).tolist()
        result[name] = scores(y_true, y_pred)["uf1"]
    return result


def grid_from_config(grid: dict[str, list]) -> dict[str, list[str]]:
    """``protocol.inner.grid`` (YAML values) as ``--set`` texts, as ``parse_grid`` gives them
    (JSON is YAML, so numbers, booleans and lists read back as they were)."""
    return {k: [v if isinstance(v, str) else json.dumps(v) for v in vs] for k, vs in grid.items()}


def run_nested(
    cfg: ExperimentConfig,
    out_dir: Path,
    progress: bool = True,
    max_folds: int | None = None,
    cache: str | Path | None = None,
    save_model: bool = True,
    backend: Backend = "local",
    address: str | None = None,
) -> dict:
    """``protocol.inner`` of a ``train`` run: the config's own grid, by :func:`run_sweep`."""
    inner = cfg.protocol.inner
    protocol = cfg.protocol.model_copy(update={"inner": None})
    return run_sweep(
        cfg.model_copy(update={"protocol": protocol}),
        grid_from_config(inner.grid),
        out_dir,
        inner.folds,
        max_folds,
        cache,
        address,
        progress,
        backend,
        save_model,
        record_config=cfg.model_dump(mode="json"),
    )


def run_sweep(
    cfg: ExperimentConfig,
    grid: dict[str, list[str]],
    out_dir: Path,
    inner_folds: int = 3,
    max_folds: int | None = None,
    cache: str | Path | None = None,
    address: str | None = None,
    progress: bool = True,
    backend: Backend = "ray",
    save_model: bool = False,
    record_config: dict | None = None,
) -> dict:
    """Run (or resume) a nested sweep into ``out_dir``; returns the outer metrics.

    ``record_config``: the config written as ``config.json`` (``protocol.inner`` passes the
    one with its grid); a folder holding folds of another config is refused."""
    start = time.perf_counter()
    if cfg.protocol.inner is not None:
        raise ConfigError("protocol.inner is set: run it with `microexpr train`, or drop it")
    cfg = with_absolute_root(cfg)
    if cfg.data.root is not None and record_config is not None:
        record_config = {**record_config, "data": {**record_config["data"], "root": cfg.data.root}}
    base = cfg.model_dump(mode="json")
    cache = Path(cache) if cache else default_cache()
    settings = candidates(grid)
    first = Candidate(base, settings[0], cache)  # all checked before any training
    built = [first, *(Candidate(base, o, cache, first.samples) for o in settings[1:])]
    samples = built[0].inputs.samples
    if any([s.id for s in c.inputs.samples] != [s.id for s in samples] for c in built):
        raise ConfigError("the candidates read different samples; a sweep must not change them")
    if any(c.plan.train.record_epochs for c in built):
        raise ConfigError("train.record_epochs (a diagnostic) does not run in a nested selection")
    plan = built[0].plan
    outer = make_folds(plan.protocol.name, samples, **plan.protocol.options)[:max_folds]
    scored = outer + ([Fold(FINAL_FOLD, tuple(range(len(samples))), ())] if save_model else [])

    out_dir = Path(out_dir)
    if record_config is None:  # written as the protocol.inner it amounts to, so a folder
        inner_as_config = {"folds": inner_folds, "grid": grid}  # of another grid is refused
        record_config = {**base, "protocol": {**base["protocol"], "inner": inner_as_config}}
    config = record_config
    _check_config(out_dir, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomicio.write_text(out_dir / "config.json", json.dumps(config, indent=2))
    record_file = out_dir / "sweep.json"
    record = {
        "config": base,
        "grid": grid,
        "inner_folds": inner_folds,
        "scored_folds": [f.name for f in scored],
    }
    previous = json.loads(atomicio.read_text(record_file)) if record_file.exists() else {}
    if {k: previous.get(k) for k in record} == record and "inner_uf1" in previous:
        inner = previous["inner_uf1"]
    elif backend == "ray":
        inner = _tune(base, settings, scored, inner_folds, cache, address, out_dir)
    else:
        inner = [inner_scores(c, scored, inner_folds, processes=None) for c in built]
    chosen = {
        fold.name: max(range(len(settings)), key=lambda c: (inner[c][fold.name], -c))
        for fold in scored
    }
    record |= {
        "candidates": settings,
        "inner_uf1": inner,
        "chosen": {name: settings[c] for name, c in chosen.items()},
    }
    atomicio.write_text(record_file, json.dumps(record, indent=2))

    if backend == "ray":
        predictions = _outer_on_ray(built, outer, chosen, out_dir, progress)
    else:
        predictions = _outer_locally(built, outer, chosen, out_dir, progress)
    title = f"{plan.name}: nested selection over {', '.join(grid)}"
    summary = {k: record[k] for k in ("grid", "inner_folds", "chosen")}  # all in sweep.json
    metrics = write_report(
        predictions,
        plan.classes,
        out_dir,
        {**config, "nested_selection": summary},
        time.perf_counter() - start,
        title,
        plan.train.device,
    )
    if save_model and not (out_dir / "model" / MANIFEST).is_file():
        final = built[chosen[FINAL_FOLD]]
        save_final_model(final.plan, final.inputs, final.targets, out_dir / "model", config)
    return metrics


def _outer_locally(built, outer, chosen, out_dir, progress):
    """Each candidate's outer folds through the local runner (the stacked engine trains
    them as one group), then the pooled table in protocol order."""
    samples, classes = built[0].inputs.samples, built[0].plan.classes
    for c, candidate in enumerate(built):
        mine = [candidate.ordered(f) for f in outer if chosen[f.name] == c]
        if mine:
            group = len(mine) if candidate.plan.engine == "stacked" else 1
            fit = candidate.fit_predict(processes=None)
            run_folds(samples, mine, fit, classes, out_dir, group, progress)
    return run_folds(samples, outer, _finished_only, classes, out_dir, 1, False)


def _finished_only(folds: list[Fold]) -> list[np.ndarray]:
    raise RuntimeError(f"fold {folds[0].name} was not trained")  # every fold is on disk


def _outer_on_ray(built, outer, chosen, out_dir, progress):
    """The outer folds as Ray tasks, each by its own chosen setting."""
    samples, classes = built[0].inputs.samples, built[0].plan.classes
    trainers = [ray_backend.remote_fit(c.fit_predict(), c.plan.engine == "per_fold") for c in built]

    def fit_chosen(folds: list[Fold]) -> list[np.ndarray]:
        """Each fold by its own chosen setting (folds of one group share it)."""
        by = chosen[folds[0].name]
        return trainers[by]([built[by].ordered(f) for f in folds])

    groups = []
    for c, candidate in enumerate(built):
        mine = [f for f in outer if chosen[f.name] == c]
        if not mine:
            continue
        if candidate.plan.engine == "per_fold":
            groups += [[f] for f in mine]
        else:
            groups += split_folds(mine, ray_backend.cluster_cpus())
    return ray_backend.run_folds_concurrently(
        samples, groups, fit_chosen, classes, out_dir, progress
    )


def _tune(base, settings, outer, splits, cache, address, out_dir) -> list[dict[str, float]]:
    """Every candidate's inner scores, one Ray Tune trial each (one torch thread)."""
    ray_backend.connect(address)
    from ray import tune

    def trial(params: dict) -> None:
        torch.set_num_threads(1)
        candidate = Candidate(base, settings[params["candidate"]], cache)
        tune.report(inner_scores(candidate, outer, splits))

    tuner = tune.Tuner(
        tune.with_resources(trial, {"cpu": 1}),
        param_space={"candidate": tune.grid_search(list(range(len(settings))))},
        run_config=tune.RunConfig(
            name="sweep", storage_path=str((out_dir / "tune").resolve()), verbose=0
        ),
    )
    results = tuner.fit()
    inner: list[dict[str, float]] = [{} for _ in settings]
    for result in results:
        if result.error:
            raise result.error
        inner[result.config["candidate"]] = {f.name: result.metrics[f.name] for f in outer}
    return inner
