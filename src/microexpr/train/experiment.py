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
from typing import Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from microexpr import atomicio, datasets, labels, models
from microexpr.bundle import MANIFEST, Bundle, save_bundle
from microexpr.config import ConfigError, ExperimentConfig
from microexpr.datasets.problems import Report
from microexpr.errors import DataError
from microexpr.evaluate import leakage
from microexpr.evaluate.leakage import EpochRecord
from microexpr.evaluate.report import INNER_PREDICTIONS, write_report
from microexpr.inference import build_model, predict_proba, torch_device
from microexpr.inputs import ModelInputs, encode_labels, model_inputs
from microexpr.losses import balanced_class_weights, create_loss
from microexpr.models.classical import ClassicalModel
from microexpr.models.weights import LoadReport
from microexpr.plan import Plan
from microexpr.protocols import Fold, inner_folds, make_folds
from microexpr.recipe import resolve
from microexpr.samples import Sample, subject_key
from microexpr.train import ray_backend
from microexpr.train.classical import fit_classical
from microexpr.train.folds import FitPredict, run_folds
from microexpr.train.pretext import pretext_state
from microexpr.train.stacked import (
    predict_stacked,
    split_folds,
    train_folds_stacked,
    train_stacked,
)
from microexpr.train.trainer import train_fold

FINAL_FOLD = "all-subjects"
# Where folds run: this machine, or Ray tasks (train/ray_backend.py).
Backend = Literal["local", "ray"]


def default_cache() -> Path:
    """Where preprocessing results are kept between runs: ``$MICROEXPR_CACHE``, else
    ``~/.cache/microexpr``."""
    return Path(os.environ.get("MICROEXPR_CACHE", "~/.cache/microexpr")).expanduser()


def load_samples(plan: Plan, report: Report | None = None) -> list[Sample]:
    """Read the dataset and keep the samples the taxonomy covers, relabelled to its classes.

    Rows the reader skips (``on_error: skip``, its default) are in ``report``; a database of
    which no row could be read is an error naming the first bad row.
    """
    if plan.data.root is None:
        raise ConfigError("data.root is not set: pass --data DIR or set it in the config")
    report = report if report is not None else Report()
    taxonomy = labels.get(plan.data.taxonomy)
    read = datasets.load(plan.data.name, plan.data.root, report=report, **plan.data.options)
    if not read and report.errors:
        first = report.errors[0]
        raise DataError(first.file, f"no row could be read; the first: {first.reason}", first.row)
    samples = taxonomy.apply(read)
    if not samples:
        raise ConfigError(f"no {plan.data.name} samples fall in taxonomy {taxonomy.name}")
    if plan.weights:
        check_weights_subjects(Path(plan.weights), samples)
    return samples


def check_weights_subjects(weights: Path, samples: list[Sample]) -> None:
    """Refuse weights from a bundle (``microexpr pretrain`` or ``train``'s final model) that
    was trained on a subject of this run: that subject's labels would reach the model of the
    fold that tests it. Files from elsewhere carry no record and are taken as given."""
    manifest = weights.parent / MANIFEST
    if not manifest.is_file():
        return
    trained = set(json.loads(manifest.read_text()).get("trained_on", {}).get("subjects", []))
    shared = sorted(trained & {subject_key(s) for s in samples})
    if shared:
        raise ConfigError(
            f"model.weights {weights} was trained on {len(shared)} subjects of this run "
            f"(e.g. {', '.join(shared[:3])}): every fold testing one of them would have seen "
            "its labels; pretrain on another source"
        )


def create_model(plan: Plan) -> tuple[nn.Module, LoadReport | None]:
    """The Plan's model, with its pretrained weights when ``plan.weights`` names a file (and
    the report of what was loaded, skipped, adapted and re-initialised)."""
    model = build_model(plan)
    if not plan.weights:
        return model, None
    return model, models.load_weights(model, plan.model, plan.weights)


def make_fit_predict(
    plan: Plan,
    inputs: ModelInputs,
    targets: torch.Tensor,
    progress: bool,
    keep: Callable[[Fold, list[nn.Module]], None] | None = None,
    processes: int | None = None,
    record: EpochRecord | None = None,
) -> tuple[FitPredict, int]:
    """The callable that trains and predicts a group of folds, and the group size to use.

    ``keep(fold, models)`` receives each fold's trained model(s) (per-fold weights).
    ``record(fold, history)`` receives the test probabilities of the epochs that
    ``train.record_epochs`` names (the leakage diagnostic; per-fold engine only).
    ``processes``: how many processes the stacked engine may split a group over (None: one
    per core on a CPU; 1 inside a Ray task, where Ray is the parallelism).
    """
    num_classes = len(plan.classes)
    if plan.engine == "stacked":

        def fit_stacked(folds: list[Fold]) -> list[np.ndarray]:
            args = (inputs.images, targets, folds, plan.train, num_classes, plan.model_options)
            if keep is None:
                return train_folds_stacked(*args, progress, processes, weights=plan.weights)
            net = train_stacked(*args, progress, weights=plan.weights)
            for i, fold in enumerate(folds):
                keep(fold, [net.fold_model(i)])
            device = torch_device(plan.train.device)
            return predict_stacked(net, inputs.images, folds, device, plan.train.augment)

        return fit_stacked, plan.folds_per_call or 10**9
    subjects = [subject_key(s) for s in inputs.samples]
    batch, device, augment = plan.train.batch_size, plan.train.device, plan.train.augment

    def fit_one(folds: list[Fold]) -> list[np.ndarray]:
        results = []
        for fold in folds:
            test = inputs.subset(fold.test)
            history: list[tuple[int, np.ndarray]] = []

            def score(epoch: int, model: nn.Module, test=test, history=history) -> None:
                history.append((epoch, predict_proba(model, test, batch, device, augment)))

            on_epoch = score if record is not None and plan.train.record_epochs else None
            model = fit(plan, inputs, targets, fold, subjects, progress, on_epoch)
            if keep is not None:
                keep(fold, [model])
            results.append(predict_proba(model, test, batch, device, augment))
            if on_epoch is not None:
                record(fold, history)
        return results

    return fit_one, 1


def fit(
    plan: Plan,
    inputs: ModelInputs,
    targets: torch.Tensor,
    fold: Fold,
    subjects: list[str],
    progress: bool,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
) -> nn.Module:
    """A fresh model trained on ``fold.train`` with the Plan's fixed recipe and the fold's
    seed. ``subjects`` (one per sample) let a validation split hold out whole subjects;
    ``on_epoch`` is the trainer's diagnostic hook (a classical model has no epochs)."""
    train = plan.train.model_copy(update={"seed": fold.seed(plan.train.seed)})
    torch.manual_seed(train.seed)
    model, _ = create_model(plan)
    indices = list(fold.train)
    if isinstance(model, ClassicalModel):  # fitted by scikit-learn, not by gradient steps
        images, labels = inputs.subset(indices, targets, train=True)
        return fit_classical(model, images, labels, train)
    if train.pretext is not None:  # the fold's own training images only
        state = pretext_state(plan, inputs.subset(indices), train, progress, fold.name)
        models.load_weights(model, plan.model, state)
    criterion = None
    if train.class_weight == "balanced":  # counted on this fold's training samples only
        weight = balanced_class_weights(targets[indices].tolist(), len(plan.classes))
        criterion = create_loss(train.loss, len(plan.classes), **train.loss_kwargs, weight=weight)
    train_fold(
        model,
        inputs.subset(indices, targets, train=True),
        train,
        len(plan.classes),
        criterion=criterion,
        groups=[subjects[i] for i in indices],
        progress=progress,
        desc=fold.name,
        on_epoch=on_epoch,
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


def training_order(plan: Plan, samples: list[Sample], folds: list[Fold]) -> list[Fold]:
    """The folds with their training samples in the order the recipe feeds them: grouped by
    label when it trains without shuffling (STSTNet's loop), else as the protocol gave them."""
    if plan.train.group_by_label and not plan.train.shuffle:
        return [group_by_label(fold, samples, plan.classes) for fold in folds]
    return folds


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
    """Refuse a folder that holds folds of another configuration, naming the keys (the
    ``name``, a title, changes no result)."""
    config_file = out_dir / "config.json"
    if not config_file.exists():
        return
    try:
        previous = json.loads(atomicio.read_text(config_file))
    except (ValueError, OSError) as err:  # unfinished or damaged: rewritten below
        tqdm.write(f"{err}; written again (each fold file is checked on its own)")
        return
    changed = sorted(k for k in _changed_keys(previous, config) if k != "name")
    if not changed:
        return
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


def with_absolute_root(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` with ``data.root`` made absolute, so a relative and an absolute path to the same
    folder are one configuration for the resume check."""
    if cfg.data.root is None:
        return cfg
    data = cfg.data.model_copy(update={"root": str(Path(cfg.data.root).resolve())})
    return cfg.model_copy(update={"data": data})


def run_experiment(
    cfg: ExperimentConfig,
    out_dir: Path,
    progress: bool = True,
    max_folds: int | None = None,
    cache: str | Path | None = None,
    save_model: bool = True,
    save_fold_models: bool = False,
    workers: int | None = None,
    backend: Backend = "local",
    address: str | None = None,
    inner_predictions: int = 0,
) -> dict:
    """Run (or resume) an experiment into ``out_dir``; returns the metrics written there.

    Everything is checked (``resolve``) and the data read before the folder is marked with
    ``config.json``, so a run that fails on its inputs blocks nothing. ``max_folds``: only
    the protocol's first folds (smoke runs). ``cache``: the feature cache root
    (:func:`default_cache`). ``save_model``: fit a final model on every sample with the same
    fixed recipe and save it as a bundle in ``out_dir/model``; ``save_fold_models``: also
    each fold's model in ``out_dir/fold_models/<fold>``. ``backend``: ``local`` (this
    machine; the stacked engine splits its folds over the cores) or ``ray`` (folds, members
    and stacked parts as Ray tasks on the cluster at ``address``, or a local Ray).
    ``inner_predictions``: also train each outer fold's recipe on this many
    leave-subjects-out splits of its training subjects and write their held-out predictions
    (:func:`write_inner_predictions`); the result itself does not change.
    """
    start = time.perf_counter()
    cfg = with_absolute_root(cfg)
    plan = resolve(cfg)
    if inner_predictions and (backend == "ray" or plan.protocol.inner is not None):
        raise ConfigError("--inner-predictions runs with the local backend, without protocol.inner")
    if inner_predictions == 1:
        raise ConfigError("--inner-predictions: at least 2 splits (0 for none)")
    if save_fold_models and backend == "ray":
        raise ConfigError("per-fold weights are saved by the local backend only")
    if plan.train.record_epochs and (backend == "ray" or plan.protocol.inner is not None):
        raise ConfigError(
            "train.record_epochs (a diagnostic) runs with the local backend, without protocol.inner"
        )
    if plan.protocol.inner is not None:
        if save_fold_models:
            raise ConfigError("protocol.inner: per-fold weights are not saved")
        from microexpr.train.sweep import run_nested  # sweep.py builds on this module

        return run_nested(cfg, out_dir, progress, max_folds, cache, save_model, backend, address)
    config = cfg.model_dump(mode="json")
    out_dir = Path(out_dir)
    _check_config(out_dir, config)
    if plan.weights:  # a bad weights file fails here, before any fold
        tqdm.write(create_model(plan)[1].summary())
    report = Report()
    samples = load_samples(plan, report)
    inputs = model_inputs(samples, plan, cache or default_cache(), workers, progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomicio.write_text(out_dir / "config.json", json.dumps(config, indent=2))
    atomicio.write_text(out_dir / "plan.json", plan.model_dump_json(indent=2))
    skipped = {p.where: p.reason for p in report.errors} | inputs.failed
    if skipped:
        atomicio.write_text(out_dir / "skipped.json", json.dumps(skipped, indent=2))
        tqdm.write(
            f"{len(report.errors)} rows skipped by the reader, {len(inputs.failed)} samples "
            "not preprocessed (skipped.json)"
        )
    samples = inputs.samples
    targets = encode_labels(samples, plan.classes)
    protocol_folds = make_folds(plan.protocol.name, samples, **plan.protocol.options)[:max_folds]
    folds = training_order(plan, samples, protocol_folds)
    keep = None
    if save_fold_models:

        def keep(fold: Fold, members: list[nn.Module]) -> None:
            record = trained_on(plan, samples, list(fold.train))
            save_bundle(out_dir / "fold_models" / fold.name, members, plan, config, record)

    if backend == "ray":
        predictions = _run_on_ray(plan, inputs, targets, folds, out_dir, address, progress)
    else:
        record = None
        if plan.train.record_epochs:
            record = leakage.epoch_writer(out_dir / "folds", samples, plan.classes)
        fit_predict, group = make_fit_predict(plan, inputs, targets, progress, keep, record=record)
        if plan.ensemble > 1:
            fit_predict = ensembled(fit_predict, plan.ensemble)
        predictions = run_folds(samples, folds, fit_predict, plan.classes, out_dir, group, progress)
    section = ""
    if plan.train.record_epochs:  # the diagnostic: beside the result, never part of it
        members = {f.name: [m.name for m in member_folds(f, plan.ensemble)] for f in folds}
        diagnostic = leakage.best_epoch_selection(
            predictions, plan.classes, out_dir / "folds", members
        )
        leakage.write_diagnostic(out_dir, diagnostic)
        section = leakage.section(diagnostic)
    seconds = time.perf_counter() - start
    metrics = write_report(
        predictions, plan.classes, out_dir, config, seconds, plan.name, plan.train.device, section
    )
    if inner_predictions:
        write_inner_predictions(
            plan, inputs, targets, protocol_folds, out_dir, inner_predictions, progress
        )
    if save_model and not (out_dir / "model" / MANIFEST).is_file():
        save_final_model(plan, inputs, targets, out_dir / "model", config, progress)
    return metrics


def write_inner_predictions(
    plan: Plan,
    inputs: ModelInputs,
    targets: torch.Tensor,
    outer: list[Fold],
    out_dir: Path,
    splits: int,
    progress: bool = True,
) -> None:
    """The run's recipe trained on ``splits`` leave-subjects-out splits of every outer
    fold's training subjects (``protocols.inner_folds``, fold ``<outer>~inner<j>``), their
    held-out probabilities pooled into ``INNER_PREDICTIONS``. ``outer`` comes in protocol
    order, before any reordering for training, so runs of any recipe split alike. An outer
    test subject is in none of its own fold's inner splits, so a choice scored on these rows
    never sees it. Fold files go to ``out_dir/inner/folds``, so an interrupted run resumes."""
    samples = inputs.samples
    flat = [f for fold in outer for f in inner_folds(fold, samples, splits)]
    flat = training_order(plan, samples, flat)
    fit_predict, group = make_fit_predict(plan, inputs, targets, progress)
    if plan.ensemble > 1:
        fit_predict = ensembled(fit_predict, plan.ensemble)
    table = run_folds(samples, flat, fit_predict, plan.classes, out_dir / "inner", group, progress)
    atomicio.write_text(out_dir / INNER_PREDICTIONS, table.to_csv(index=False))


def _run_on_ray(
    plan: Plan,
    inputs: ModelInputs,
    targets: torch.Tensor,
    folds: list[Fold],
    out_dir: Path,
    address: str | None,
    progress: bool,
):
    """The folds as Ray tasks: one per fold (and ensemble member) for per_fold, or the
    stacked engine's parts (``folds_per_call`` folds, else one part per cluster CPU, as the
    local engine splits over cores), each written as it finishes."""
    ray_backend.connect(address)
    fit_predict, _ = make_fit_predict(plan, inputs, targets, False, processes=1)
    fit_predict = ray_backend.remote_fit(fit_predict, task_per_fold=plan.engine == "per_fold")
    if plan.ensemble > 1:
        fit_predict = ensembled(fit_predict, plan.ensemble)
    if plan.engine == "per_fold":
        groups = [[fold] for fold in folds]
    elif plan.folds_per_call:
        size = plan.folds_per_call
        groups = [folds[i : i + size] for i in range(0, len(folds), size)]
    else:
        groups = split_folds(folds, ray_backend.cluster_cpus())
    return ray_backend.run_folds_concurrently(
        inputs.samples, groups, fit_predict, plan.classes, out_dir, progress
    )


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
    if plan.engine == "stacked":  # every member in one stack, as the folds were trained
        net = train_stacked(
            inputs.images,
            targets,
            member_folds(everyone, plan.ensemble),
            plan.train,
            len(plan.classes),
            plan.model_options,
            progress,
            weights=plan.weights,
        )
        members = [net.fold_model(i) for i in range(net.folds)]
    else:
        subjects = [subject_key(s) for s in samples]
        members = [
            fit(plan, inputs, targets, member, subjects, progress)
            for member in member_folds(everyone, plan.ensemble)
        ]
    record = trained_on(plan, samples, list(everyone.train))
    save_bundle(path, members, plan, config, record)
    manifest = json.loads((path / MANIFEST).read_text())
    return Bundle(path, plan, [m.eval() for m in members], manifest)
