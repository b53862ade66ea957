"""Training losses by name (cross-entropy here; focal, centre and island join as seeds need)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_LOSSES: dict[str, Callable[..., nn.Module]] = {}


def register_loss(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _LOSSES[name] = fn
        return fn

    return wrap


def create_loss(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Loss module by name; every builder takes ``num_classes`` (centre-based losses need it)."""
    if name not in _LOSSES:
        raise KeyError(f"unknown loss {name!r}; known: {', '.join(sorted(_LOSSES))}")
    return _LOSSES[name](num_classes=num_classes, **kwargs)


@register_loss("cross_entropy")
def cross_entropy(num_classes: int, label_smoothing: float = 0.0) -> nn.Module:
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
