"""A model from a Plan, and its class probabilities: what training and every saved-model
consumer (bundles, video analysis, export) share, so a model is built and read one way."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from microexpr import models
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


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    data: Dataset | torch.Tensor,
    batch_size: int = 256,
    device: str = "auto",
) -> np.ndarray:
    """Softmax probabilities (N, classes) in eval mode."""
    dev = torch_device(device)
    model.to(dev).eval()
    if isinstance(data, torch.Tensor):
        data = TensorDataset(data)
    outputs = []
    for batch in DataLoader(data, batch_size=batch_size):
        logits = model(batch[0].to(dev))
        if isinstance(logits, tuple):
            logits = logits[0]
        outputs.append(torch.softmax(logits.float(), dim=1).cpu())
    if not outputs:
        return np.zeros((0, 0), np.float32)
    return torch.cat(outputs).numpy()
