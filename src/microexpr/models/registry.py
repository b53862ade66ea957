"""Models by name, as timm does: ``create("ststnet", num_classes=3)``.

Each entry declares the input it takes (an InputSpec), so protocols, the cache, the CLI and
inference build the right tensors without special cases, and names its first convolution
and classifier, so pretrained weights can be adapted to other channels and classes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from microexpr.models.weights import LoadReport, load_pretrained
from microexpr.registry import Registry
from microexpr.spec import InputSpec


@dataclass(frozen=True)
class ModelEntry:
    """A registered builder, its input, and the module names of its first convolution(s) and
    classifier(s) (None: found from the weights, models/weights.py)."""

    name: str
    builder: Callable[..., nn.Module]
    input: InputSpec
    family: str = ""
    first_conv: str | tuple[str, ...] | None = None
    classifier: str | tuple[str, ...] | None = None


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(
    input: InputSpec,
    first_conv: str | tuple[str, ...] | None = None,
    classifier: str | tuple[str, ...] | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator for builder functions; the function name is the model name."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        family = fn.__module__.split(".")[-1]
        MODELS.add(fn.__name__, ModelEntry(fn.__name__, fn, input, family, first_conv, classifier))
        return fn

    return wrap


def info(name: str) -> ModelEntry:
    return MODELS.get(name)


def create(name: str, num_classes: int, in_chans: int | None = None, **kwargs) -> nn.Module:
    """Build a registered model with random init (weights only ever come from a local file)."""
    entry = info(name)
    channels = entry.input.in_chans if in_chans is None else in_chans
    return entry.builder(num_classes=num_classes, in_chans=channels, **kwargs)


def load_weights(
    model: nn.Module, name: str, path: str | Path | Mapping[str, torch.Tensor]
) -> LoadReport:
    """Load a local weights file (or a state dict in memory) into ``model``, built as
    registered model ``name``, with the input conv and classifier its entry names (a
    classifier of another class count is left at init)."""
    entry = info(name)
    return load_pretrained(model, path, first_conv=entry.first_conv, classifier=entry.classifier)


def list_models() -> list[str]:
    return MODELS.names()
