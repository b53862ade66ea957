"""Config in, result files and a model bundle out: resolve -> reader -> taxonomy -> the
Plan's inputs (preprocessing through the feature cache) -> protocol -> folds -> report ->
a final model fitted on every subject with the same fixed recipe."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from microexpr import datasets, labels, models
from microexpr.bundle import MANIFEST, Bundle, save_bundle
from microexpr.config import ConfigError, ExperimentConfig
from microexpr.evaluate.report import write_report
from microexpr.inference import build_model, predict_proba
from microexpr.inputs import ModelInputs, encode_labels, model_inputs
from microexpr.models.weights import LoadReport, load_pretrained
from microexpr.plan import Plan
from microexpr.protocols import Fold, make_folds
from microexpr.recipe import resolve
from microexpr.samples import Sample, subject_key
from microexpr.train.folds import FitPredict, run_folds
from microexpr.train.stacked import train_folds_stacked
from microexpr.train.trainer import train_fold

FINAL_FOLD = "all-subjects"


def default_cache() -> Path:
    """Where preprocessing results are kept between runs: ``$MICROEXPR_CACHE``, else
    ``~/.cache/microexpr``."""
    return Path(os.environ.get("MICROEXPR_CACHE", "~/.cache/microexpr")).expanduser()


def load_samples(plan: Plan) -> list[Sample]:
    """Read the dataset and keep the samples the taxonomy covers, relabelled to its classes."""
    if plan.data.root is None:
        raise ConfigError("data.root is not set: pass --data DIR or set it in the config")
    taxonomy = labels.get(plan.data.taxonomy)
    samples = taxonomy.apply(datasets.load(plan.data.name, plan.data.root, **plan.data.options))
    if not samples:
        raise ConfigError(f"no {plan.data.name} samples fall in taxonomy {taxonomy.name}")
    return samples


def create_model(plan: Plan) -> tuple[nn.Module, LoadReport | None]:
    """The Plan's model, with its pretrained weights when ``plan.weights`` names a file (and
    the report of what was loaded, skipped, adapted and re-initialised)."""
    model = build_model(plan)
    if not plan.weights:
        return model, None
    entry = models.info(plan.model)
    report = load_pretrained(
        model, plan.weights, first_conv=entry.first_conv, classifier=entry.classifier
    )
    return model, report


def make_fit_predict(
    plan: Plan,
    inputs: ModelInputs,
    targets: torch.Tensor,
    progress: bool,
    keep: Callable[[Fold, list[nn.Module]], None] | None = None,
) -> tuple[FitPredict, int]:
    """The callable that trains and predicts a group of folds, and the group size to use.

    ``keep(fold, models)`` receives each fold's trained model(s) (per-fold weights).
    """
    num_classes = len(plan.classes)
    if plan.engine == "stacked":

        def fit_stacked(folds: list[Fold]) -> list[np.ndarray]:
            return train_folds_stacked(
                inputs.images, targets, folds, plan.train, num_classes, plan.model_options, progress
            )

        return fit_stacked, plan.folds_per_call or 10**9
    subjects = [subject_key(s) for s in inputs.samples]

    def fit_one(folds: list[Fold]) -> list[np.ndarray]:
        results = []
        for fold in folds:
            model = fit(plan, inputs, targets, fold, subjects, progress)
            if keep is not None:
                keep(fold, [model])
            test = inputs.subset(fold.test)
            results.append(predict_proba(model, test, plan.train.batch_size, plan.train.device))
        return results

    return fit_one, 1


def fit(
    plan: Plan,
    inputs: ModelInputs,
    targets: torch.Tensor,
    fold: Fold,
    subjects: list[str],
    progress: bool,
) -> nn.Module:
    """A fresh model trained on ``fold.train`` with the Plan's fixed recipe and the fold's
    seed. ``subjects`` (one per sample) let a validation split hold out whole subjects."""
    train = plan.train.model_copy(update={"seed": fold.seed(plan.train.seed)})
    torch.manual_seed(train.seed)
    model, _ = create_model(plan)
    indices = list(fold.train)
    train_fold(
        model,
        inputs.subset(indices, targets, train=True),
        train,
        len(plan.classes),
        groups=[subjects[i] for i in indices],
        progress=progress,
        desc=fold.name,
    )
    return model


def ensembled(fit_predict: FitPredict, members: int) -> FitPredict:
    """Train ``members`` independently seeded models per fold and average their probabilities.

    Members are folds with the same indices under another name, so each gets its own seed
    and the stacked engine trains all of them in one network. Nothing is chosen per member.
    """

    def fit_members(folds: list[Fold]) -> list[np.ndarray]:
        copies = [replace(f, name=f"{f.name}~{k}") for f in folds for k in range(members)]
        probs = fit_predict(copies)
        return [np.mean(probs[i * members : (i + 1) * members], axis=0) for i in range(len(folds))]

    return fit_members


def member_folds(fold: Fold, members: int) -> list[Fold]:
    """The fold itself, or its ensemble members (named as :func:`ensembled` names them)."""
    if members == 1:
        return [fold]
    return [replace(fold, name=f"{fold.name}~{k}") for k in range(members)]


def group_by_label(fold: Fold, samples: list[Sample], classes: tuple[str, ...]) -> Fold:
    """The fold with its training samples ordered by class (stable within a class)."""
    train = sorted(fold.train, key=lambda i: classes.index(samples[i].label))
    return replace(fold, train=tuple(train))


def trained_on(plan: Plan, samples: list[Sample], indices: list[int]) -> dict:
    """What a bundle records of its training data: reader, counts, subjects."""
    chosen = [samples[i] for i in indices]
    counts = {c: sum(s.label == c for s in chosen) for c in plan.classes}
    return {
        "reader": plan.data.name,
        "root": plan.data.root,
        "options": plan.data.options,
        "taxonomy": plan.data.taxonomy,
        "samples": len(chosen),
        "class_counts": counts,
        "subjects": sorted({subject_key(s) for s in chosen}),
    }


def _check_config(out_dir: Path, config: dict) -> None:
    """Refuse a folder that holds folds of another configuration, naming the keys."""
    config_file = out_dir / "config.json"
    if not config_file.is_file():
        return
    try:
        previous = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return  # unreadable: rewritten below, and folds are checked on their own
    if previous == config:
        return
    changed = sorted(_changed_keys(previous, config))
    raise ConfigError(
        f"{out_dir} holds folds of a different configuration ({', '.join(changed)} differ); "
        "use another --out or delete it"
    )


def _changed_keys(old: object, new: object, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = set(old) | set(new)
        return [
            k for key in keys for k in _changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")
        ]
    return [] if old == new else [prefix.rstrip(".")]


def run_experiment(
    cfg: ExperimentConfig,
    out_dir: Path,
    progress: bool = True,
    max_folds: int | None = None,
    cache: str | Path | None = None,
    save_model: bool = True,
    save_fold_models: bool = False,
    workers: int | None = None,
) -> dict:
    """Run (or resume) an experiment into ``out_dir``; returns the metrics written there.

    Everything is checked (``resolve``) and the data read before the folder is marked with
    ``config.json``, so a run that fails on its inputs blocks nothing. ``max_folds``: only
    the protocol's first folds (smoke runs). ``cache``: the feature cache root
    (:func:`default_cache`). ``save_model``: fit a final model on every sample with the same
    fixed recipe and save it as a bundle in ``out_dir/model``; ``save_fold_models``: also
    each fold's model in ``out_dir/fold_models/<fold>``.
    """
    start = time.perf_counter()
    if cfg.data.root is not None:
        cfg = cfg.model_copy(
            update={
                "data": cfg.data.model_copy(update={"root": str(Path(cfg.data.root).resolve())})
            }
        )
    plan = resolve(cfg)
    if save_fold_models and plan.engine == "stacked":
        raise ConfigError("per-fold weights need engine: per_fold (the stacked engine keeps none)")
    config = cfg.model_dump(mode="json")
    out_dir = Path(out_dir)
    _check_config(out_dir, config)
    if plan.weights:  # a bad weights file fails here, before any fold
        tqdm.write(create_model(plan)[1].summary())
    samples = load_samples(plan)
    inputs = model_inputs(samples, plan, cache or default_cache(), workers, progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    (out_dir / "plan.json").write_text(plan.model_dump_json(indent=2))
    if inputs.failed:
        (out_dir / "skipped.json").write_text(json.dumps(inputs.failed, indent=2))
        tqdm.write(f"{len(inputs.failed)} samples could not be preprocessed (skipped.json)")
    samples = inputs.samples
    targets = encode_labels(samples, plan.classes)
    folds = make_folds(plan.protocol.name, samples, **plan.protocol.options)[:max_folds]
    if plan.train.group_by_label and not plan.train.shuffle:
        folds = [group_by_label(fold, samples, plan.classes) for fold in folds]
    keep = None
    if save_fold_models:

        def keep(fold: Fold, members: list[nn.Module]) -> None:
            record = trained_on(plan, samples, list(fold.train))
            save_bundle(out_dir / "fold_models" / fold.name, members, plan, config, record)

    fit_predict, group = make_fit_predict(plan, inputs, targets, progress, keep)
    if plan.ensemble > 1:
        fit_predict = ensembled(fit_predict, plan.ensemble)
    predictions = run_folds(samples, folds, fit_predict, plan.classes, out_dir, group, progress)
    metrics = write_report(
        predictions, plan.classes, out_dir, config, time.perf_counter() - start, title=plan.name
    )
    if save_model and not (out_dir / "model" / MANIFEST).is_file():
        save_final_model(plan, inputs, targets, out_dir / "model", config, progress)
    return metrics


def save_final_model(
    plan: Plan,
    inputs: ModelInputs,
    targets: torch.Tensor,
    path: Path,
    config: dict,
    progress: bool = True,
) -> Bundle:
    """Fit the Plan's model on every sample (each ensemble member with its own seed), with the
    same fixed recipe as every fold: nothing is chosen on any test fold. Save it as a bundle
    and return it (its models still those trained here)."""
    samples = inputs.samples
    everyone = Fold(FINAL_FOLD, tuple(range(len(samples))), ())
    if plan.train.group_by_label and not plan.train.shuffle:
        everyone = group_by_label(everyone, samples, plan.classes)
    subjects = [subject_key(s) for s in samples]
    members = [
        fit(plan, inputs, targets, member, subjects, progress)
        for member in member_folds(everyone, plan.ensemble)
    ]
    record = trained_on(plan, samples, list(everyone.train))
    save_bundle(path, members, plan, config, record)
    manifest = json.loads((path / MANIFEST).read_text())
    return Bundle(path, plan, [m.eval() for m in members], manifest)
