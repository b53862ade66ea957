"""Pretraining: a config's model trained on another source first, written as a bundle whose
``weights.safetensors`` the micro-expression run then starts from (``model.weights``).

No backbone can be downloaded here, so the starting points are what a user can have: a
macro-expression database they hold (FER2013, CK+: any reader), or synthetic clips with
planted facial actions from the project's generator (``synth.sources``). Neither holds a
subject of the micro-expression databases, so the weights can start every LOSO fold without
leaking a test subject. The source's classes differ from the target's: ``load_pretrained``
drops the classifier, as timm does for a pretrained model with another class count.
"""

from __future__ import annotations

from pathlib import Path

from microexpr.bundle import Bundle
from microexpr.config import ConfigError, DataConfig, ExperimentConfig
from microexpr.inputs import encode_labels, model_inputs
from microexpr.recipe import resolve
from microexpr.train.experiment import default_cache, load_samples, save_final_model


def pretrain(
    cfg: ExperimentConfig,
    out_dir: Path,
    source: DataConfig,
    progress: bool = True,
    cache: str | Path | None = None,
    workers: int | None = None,
) -> Bundle:
    """Train ``cfg``'s model and recipe on every sample of ``source`` and save the bundle in
    ``out_dir``; its protocol is not used (nothing here is scored), and one model is trained
    even when ``cfg`` asks for an ensemble, so that the weights file is a plain state dict."""
    model = cfg.model.model_copy(update={"weights": None})
    source_cfg = cfg.model_copy(update={"data": source, "model": model, "ensemble": 1})
    plan, target = resolve(source_cfg), resolve(cfg).input.kind
    if plan.input.kind != target:
        raise ConfigError(
            f"{source.name} gives {plan.input.kind} inputs, the model is trained on {target}: "
            "set model.input_kind or choose another source"
        )
    samples = load_samples(plan)
    inputs = model_inputs(samples, plan, cache or default_cache(), workers, progress)
    if len({s.label for s in inputs.samples}) < 2:
        raise ConfigError(f"{source.root}: pretraining needs samples of at least two classes")
    targets = encode_labels(inputs.samples, plan.classes)
    config = source_cfg.model_dump(mode="json")
    return save_final_model(plan, inputs, targets, Path(out_dir), config, progress)
