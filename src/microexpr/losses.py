"""Training losses by name (cross-entropy here; focal, centre and island join as seeds need)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

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


class MultiHeadCrossEntropy(nn.Module):
    """Sum of per-head cross-entropies for models with several classifier heads.

    Takes (B, heads, classes) logits (ms_resnet3d50 in training mode), or plain (B, classes)
    logits, which give ordinary cross-entropy (the fused output in evaluation mode).
    ``weights``: one weight per head (default 1 each).
    """

    def __init__(self, weights: Sequence[float] | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.weights = None if weights is None else tuple(float(w) for w in weights)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.dim() == 2:
            return F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)
        heads = logits.shape[1]
        weights = self.weights or (1.0,) * heads
        if len(weights) != heads:
            raise ValueError(f"multi_head_ce has {len(weights)} weights for {heads} heads")
        return sum(
            w * F.cross_entropy(logits[:, h], target, label_smoothing=self.label_smoothing)
            for h, w in enumerate(weights)
        )


@register_loss("multi_head_ce")
def multi_head_ce(
    num_classes: int, weights: Sequence[float] | None = None, label_smoothing: float = 0.0
) -> nn.Module:
    return MultiHeadCrossEntropy(weights, label_smoothing)
