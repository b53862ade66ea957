"""A model from a Plan, and its class probabilities: what training and every saved-model
consumer (bundles, video analysis, export) share, so a model is built and read one way."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from microexpr import models
from microexpr.config import AugmentConfig
from microexpr.plan import Plan


def torch_device(name: str = "auto") -> torch.device:
    """The torch device of a device name (``auto``: CUDA when present); the recipe has
    already refused a device that is not there."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(plan: Plan) -> nn.Module:
    """The Plan's model with random init (the caller seeds torch first)."""
    return models.create(
        plan.model,
        num_classes=len(plan.classes),
        in_chans=plan.input.in_chans,
        **plan.model_options,
    )


def reflect(
    x: torch.Tensor, reflection: tuple[int, float], samples: torch.Tensor | None = None
) -> torch.Tensor:
    """``x`` (B, C, ...) with channel ``reflection[0]`` mapped v -> 2 * centre - v in the
    ``samples`` picked (a (B,) bool mask; None: all): the horizontal flow of a mirrored face
    is the original's negated, and min-max scaled flow images reflect about the middle of
    their range, as min-max scaling of -u gives (``train.augment.flip_reflect``)."""
    channel, centre = reflection
    shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
    picked = torch.arange(x.shape[1], device=x.device).view(shape) == channel
    if samples is not None:
        picked = samples.view(-1, *([1] * (x.dim() - 1))) & picked
    return torch.where(picked, 2 * centre - x, x)


def mirror(x: torch.Tensor, reflection: tuple[int, float] | None) -> torch.Tensor:
    """``x`` (B, C, ..., W) mirrored left to right, with :func:`reflect` of u for flow
    inputs (``reflection``; None for a plain mirror). Flip and elementwise ops, so it exports."""
    flipped = x.flip(-1)
    return flipped if reflection is None else reflect(flipped, reflection)


def class_probabilities(
    model: nn.Module, x: torch.Tensor, augment: AugmentConfig | None = None
) -> torch.Tensor:
    """Softmax of the model's class output (the logits of a (logits, features) pair); with
    ``augment.test_hflip`` the mean of that on ``x`` and on its mirror image."""
    views = [x]
    if augment is not None and augment.test_hflip:
        views.append(mirror(x, augment.flip_reflect))
    probs = []
    for view in views:
        logits = model(view)
        if isinstance(logits, tuple):
            logits = logits[0]
        probs.append(torch.softmax(logits.float(), dim=1))
    return probs[0] if len(probs) == 1 else (probs[0] + probs[1]) / 2


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    data: Dataset | torch.Tensor,
    batch_size: int = 256,
    device: str = "auto",
    augment: AugmentConfig | None = None,
) -> np.ndarray:
    """Softmax probabilities (N, classes) in eval mode (:func:`class_probabilities`)."""
    dev = torch_device(device)
    model.to(dev).eval()
    if isinstance(data, torch.Tensor):
        data = TensorDataset(data)
    outputs = [
        class_probabilities(model, batch[0].to(dev), augment).cpu()
        for batch in DataLoader(data, batch_size=batch_size)
    ]
    if not outputs:
        return np.zeros((0, 0), np.float32)
    return torch.cat(outputs).numpy()
