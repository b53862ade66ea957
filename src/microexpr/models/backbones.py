"""timm backbones built offline, optionally returning the features for centre/island losses.

The trainer hands ``(logits, features)`` outputs to the loss as ``loss(logits, features, y)``.
Hooks are used instead of a wrapper module so the state dict keeps the backbone's own names
and weights saved from (or for) the plain model load unchanged.
"""

from __future__ import annotations

import timm
import torch
from torch import nn


def create_timm(
    name: str, num_classes: int, in_chans: int, return_features: bool = False, **kwargs
) -> nn.Module:
    """A timm model with random weights: pretrained=False always, so nothing is downloaded;
    weights come only from a local file (``ModelConfig.weights``)."""
    model = timm.create_model(
        name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs
    )
    return with_features(model) if return_features else model


def with_features(model: nn.Module) -> nn.Module:
    """Make ``model(x)`` return (logits, features); features = input of ``get_classifier()``."""
    classifier = model.get_classifier()
    captured: list[torch.Tensor] = []

    def keep(_module: nn.Module, args: tuple) -> None:
        captured.append(args[0])

    def pair(_module: nn.Module, _args: tuple, logits: torch.Tensor) -> tuple:
        return logits, captured.pop()

    classifier.register_forward_pre_hook(keep)
    model.register_forward_hook(pair)
    return model


def feature_dim(model: nn.Module) -> int:
    """Width of the features :func:`with_features` yields (the classifier's input)."""
    return model.get_classifier().in_features
