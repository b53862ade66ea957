"""Self-supervised pretraining inside a fold (``train.pretext``): before a fold trains on its
labels, the same network learns to tell which of four turns (0, 90, 180, 270 degrees) each of
the fold's own training images was given (RotNet: Gidaris, Singh and Komodakis, ICLR 2018).

The images are the fold's training samples only, so the test subject reaches neither the
pretext nor the labels; the pretext's four-way classifier is then dropped and the network
fine-tunes from the rest, as it would from a pretrained file (``models.load_weights``).
Augmentation is left out of the pretext: a mirror turns a 90-degree turn into a 270-degree
one of the mirrored image, so the turn would no longer be a label.
"""

from __future__ import annotations

import torch
from torch import nn

from microexpr import models
from microexpr.config import TrainConfig
from microexpr.plan import Plan
from microexpr.train.trainer import train_fold

TURNS = 4


def rotated_copies(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image at 0, 90, 180 and 270 degrees (turn-major), with the turn as its label.

    Images (N, C, H, W) or clips (N, C, T, H, W) turn in their last two axes, which must be
    square so that every turn has the input's shape."""
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(
            f"train.pretext rotation needs square inputs, not {images.shape[-2]}x{images.shape[-1]}"
        )
    turned = torch.cat([torch.rot90(images, k, dims=(-2, -1)) for k in range(TURNS)])
    labels = torch.arange(TURNS).repeat_interleave(len(images))
    return turned, labels


def pretext_state(
    plan: Plan, images: torch.Tensor, train: TrainConfig, progress: bool, desc: str
) -> dict[str, torch.Tensor]:
    """The weights of the Plan's network after the rotation pretext on ``images`` (a fold's
    training inputs), started like the fold itself: seeded by ``train.seed``, then from
    ``plan.weights`` when set. The optimiser and batch are the fold's; plain cross-entropy."""
    assert train.pretext is not None
    torch.manual_seed(train.seed)
    net: nn.Module = models.create(
        plan.model, num_classes=TURNS, in_chans=plan.input.in_chans, **plan.model_options
    )
    if plan.weights:
        models.load_weights(net, plan.model, plan.weights)
    cfg = train.model_copy(
        update={
            "epochs": train.pretext.epochs,
            "loss": "cross_entropy",
            "loss_kwargs": {},
            "augment": None,
            "plateau": None,
            "pretext": None,
            "record_epochs": 0,
        }
    )
    train_fold(net, rotated_copies(images), cfg, TURNS, progress=progress, desc=f"{desc} pretext")
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}
