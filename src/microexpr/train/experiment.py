"""Config in, result files out: reader -> taxonomy -> inputs -> protocol -> folds -> report."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from microexpr import datasets, labels, models
from microexpr.config import ExperimentConfig
from microexpr.evaluate.report import write_report
from microexpr.inputs import (
    CLIP_KINDS,
    ClipDataset,
    clip_length,
    encode_labels,
    load_clips,
    load_images,
)
from microexpr.samples import Sample, subject_key
from microexpr.train.protocols import FitPredict, Fold, make_folds, run_folds
from microexpr.train.stacked import supports_stacking, train_folds_stacked
from microexpr.train.trainer import predict_proba, resolve_device, train_fold


def load_samples(cfg: ExperimentConfig) -> tuple[list[Sample], tuple[str, ...]]:
    """Read the dataset and keep the samples the taxonomy covers, relabelled to its classes."""
    if cfg.data.root is None:
        raise ValueError("data.root is not set: pass --data DIR or set it in the config")
    taxonomy = labels.get(cfg.data.taxonomy)
    samples = taxonomy.apply(datasets.load(cfg.data.name, cfg.data.root, **cfg.data.options))
    if not samples:
        raise ValueError(f"no {cfg.data.name} samples fall in taxonomy {taxonomy.name}")
    return samples, taxonomy.classes


def build_model(
    cfg: ExperimentConfig, num_classes: int, in_chans: int, **defaults
) -> torch.nn.Module:
    """The configured model; ``defaults`` are builder options the config may override."""
    model = models.create(
        cfg.model.name,
        num_classes=num_classes,
        in_chans=in_chans,
        **{**defaults, **cfg.model.options},
    )
    if cfg.model.weights:
        from safetensors.torch import load_file

        path = Path(cfg.model.weights)
        state = (
            load_file(path)
            if path.suffix == ".safetensors"
            else torch.load(path, map_location="cpu")
        )
        model.load_state_dict(state, strict=False)
    return model


def model_info(cfg: ExperimentConfig) -> models.ModelInfo:
    """The configured model's registry entry, reading ``model.input_kind`` if one is set."""
    info = models.info(cfg.model.name)
    if cfg.model.input_kind is None:
        return info
    if info.input_kind in CLIP_KINDS:
        raise ValueError(f"{info.name} is a clip model; model.input_kind is for 2-D models")
    return replace(info, input_kind=cfg.model.input_kind)


def make_fit_predict(
    cfg: ExperimentConfig, samples: list[Sample], classes: tuple[str, ...], progress: bool
) -> tuple[FitPredict, int]:
    """The callable that trains and predicts a group of folds, and the group size to use."""
    info = model_info(cfg)
    in_chans = cfg.model.in_chans or info.in_chans
    targets = encode_labels(samples, classes)
    if info.input_kind in CLIP_KINDS:
        if cfg.engine == "stacked":
            raise ValueError("the stacked engine runs ststnet only, not clip models")
        return _clip_fit_predict(cfg, samples, targets, len(classes), in_chans, progress), 1
    images = load_images(samples, info, in_chans, cfg.model.input_size, cfg.model.scaling, progress)
    # Stacking pays on a GPU (one launch-bound step for all folds); on a CPU the folds'
    # convolutions cost the same either way and one fold at a time is faster (BENCHMARKS.md).
    stacked = cfg.engine == "stacked" or (
        cfg.engine == "auto"
        and resolve_device(cfg.train.device).type == "cuda"
        and supports_stacking(cfg.model.name, cfg.train)
    )
    if stacked:
        if not supports_stacking(cfg.model.name, cfg.train):
            raise ValueError("the stacked engine runs ststnet with Adam and cross-entropy only")

        def fit_stacked(folds: list[Fold]) -> list[np.ndarray]:
            return train_folds_stacked(
                images, targets, folds, cfg.train, len(classes), cfg.model.options, progress
            )

        return fit_stacked, cfg.folds_per_call or 10**9

    def data(indices: list[int], train: bool) -> tuple[torch.Tensor, ...] | torch.Tensor:
        return (images[indices], targets[indices]) if train else images[indices]

    return _per_fold(cfg, data, _subjects(samples), len(classes), in_chans, progress), 1


# Training (train=True) or test data of the given sample indices, as train_fold and
# predict_proba take it.
FoldData = Callable[[list[int], bool], Dataset | tuple[torch.Tensor, ...] | torch.Tensor]


def _subjects(samples: list[Sample]) -> list[str]:
    return [subject_key(s) for s in samples]


def _per_fold(
    cfg: ExperimentConfig,
    data: FoldData,
    subjects: list[str],
    num_classes: int,
    in_chans: int,
    progress: bool,
    **model_defaults,
) -> FitPredict:
    """Train a fresh model on each fold's training data and predict its test data.

    ``subjects`` (one per sample) let a validation split hold out whole training subjects.
    """

    def fit_one(folds: list[Fold]) -> list[np.ndarray]:
        results = []
        for fold in folds:
            fold_cfg = cfg.train.model_copy(update={"seed": fold.seed(cfg.train.seed)})
            torch.manual_seed(fold_cfg.seed)
            model = build_model(cfg, num_classes, in_chans, **model_defaults)
            train, test = list(fold.train), list(fold.test)
            train_fold(
                model,
                data(train, True),
                fold_cfg,
                num_classes,
                groups=[subjects[i] for i in train],
                progress=progress,
                desc=fold.name,
            )
            results.append(
                predict_proba(model, data(test, False), cfg.train.batch_size, cfg.train.device)
            )
        return results

    return fit_one


def _clip_fit_predict(
    cfg: ExperimentConfig,
    samples: list[Sample],
    targets: torch.Tensor,
    num_classes: int,
    in_chans: int,
    progress: bool,
) -> FitPredict:
    """3-D models on clips held in memory (frames, or flow sequences); the clip length and
    size also size the model (its ``num_frames`` and ``input_size`` options)."""
    info = models.info(cfg.model.name)
    size = cfg.model.input_size or info.input_size
    num_frames = clip_length(cfg.clip, info)
    clips, apexes = load_clips(samples, info, cfg.clip, size, progress)

    def data(indices: list[int], train: bool) -> ClipDataset:
        return ClipDataset(
            [clips[i] for i in indices],
            targets[indices],
            num_frames,
            in_chans,
            train,
            cfg.clip,
            [apexes[i] for i in indices],
            cfg.model.scaling,
            flow=info.input_kind == "flow_clip",
        )

    return _per_fold(
        cfg,
        data,
        _subjects(samples),
        num_classes,
        in_chans,
        progress,
        num_frames=num_frames,
        input_size=size,
    )


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


def group_by_label(fold: Fold, samples: list[Sample], classes: tuple[str, ...]) -> Fold:
    """The fold with its training samples ordered by class (stable within a class)."""
    train = sorted(fold.train, key=lambda i: classes.index(samples[i].label))
    return replace(fold, train=tuple(train))


def run_experiment(
    cfg: ExperimentConfig, out_dir: Path, progress: bool = True, max_folds: int | None = None
) -> dict:
    """Run (or resume) an experiment into ``out_dir``; returns the metrics written there.

    ``max_folds``: only the protocol's first folds (smoke runs); name the config for it, as
    the folder refuses folds of another configuration.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    config_file = out_dir / "config.json"
    config = cfg.model_dump(mode="json")
    if config_file.exists() and json.loads(config_file.read_text()) != config:
        raise ValueError(
            f"{out_dir} holds folds of a different configuration ({config_file}); "
            "use another --out or delete it"
        )
    config_file.write_text(json.dumps(config, indent=2))
    start = time.perf_counter()
    samples, classes = load_samples(cfg)
    folds = make_folds(cfg.protocol.name, samples, **cfg.protocol.options)[:max_folds]
    if cfg.train.group_by_label and not cfg.train.shuffle:
        folds = [group_by_label(fold, samples, classes) for fold in folds]
    fit_predict, group = make_fit_predict(cfg, samples, classes, progress)
    if cfg.ensemble > 1:
        fit_predict = ensembled(fit_predict, cfg.ensemble)
    predictions = run_folds(samples, folds, fit_predict, classes, out_dir, group, progress)
    seconds = time.perf_counter() - start
    return write_report(predictions, classes, out_dir, config, seconds, title=cfg.name)
