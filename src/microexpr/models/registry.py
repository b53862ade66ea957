"""Models by name, as timm does: ``create("ststnet", num_classes=3)``.

Each entry declares the input it takes, so protocols and the CLI build the right tensors
without special cases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import nn

from microexpr.registry import Registry

InputKind = Literal["flow_image", "apex_image", "image", "clip", "flow_clip"]


@dataclass(frozen=True)
class ModelInfo:
    """What a registered model eats: input kind, default spatial size, channels, frames."""

    name: str
    builder: Callable[..., nn.Module]
    input_kind: InputKind
    input_size: int
    in_chans: int = 3
    num_frames: int | None = None
    family: str = ""


MODELS: Registry[ModelInfo] = Registry("model")


def register_model(
    input_kind: InputKind,
    input_size: int,
    in_chans: int = 3,
    num_frames: int | None = None,
    name: str | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator for builder functions; the function name is the model name."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or fn.__name__
        MODELS.add(
            key,
            ModelInfo(
                key, fn, input_kind, input_size, in_chans, num_frames, fn.__module__.split(".")[-1]
            ),
        )
        return fn

    return wrap


def info(name: str) -> ModelInfo:
    return MODELS.get(name)


def create(name: str, num_classes: int, in_chans: int | None = None, **kwargs) -> nn.Module:
    """Build a registered model with random init (weights only ever come from a local file)."""
    entry = info(name)
    return entry.builder(
        num_classes=num_classes,
        in_chans=entry.in_chans if in_chans is None else in_chans,
        **kwargs,
    )


def list_models() -> list[str]:
    return MODELS.names()
