"""Train one model on one fold with a fixed schedule: nothing here ever sees the test fold."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset
from tqdm.auto import tqdm

from microexpr.config import AugmentConfig, TrainConfig
from microexpr.inference import torch_device
from microexpr.losses import create_loss
from microexpr.train.augment import augment_batch
from microexpr.train.cuda_graphs import GraphedStep
from microexpr.train.schedule import validation_split


def seed_everything(seed: int) -> None:
    """One seed for Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(params, cfg: TrainConfig, capturable: bool = False) -> torch.optim.Optimizer:
    """``capturable``: Adam keeps its step count on the device, as a CUDA graph needs."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    optimizer = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return optimizer(params, lr=cfg.lr, weight_decay=cfg.weight_decay, capturable=capturable)


def param_groups(model: nn.Module, criterion: nn.Module, cfg: TrainConfig) -> list[dict]:
    """The model's parameters at ``cfg.lr``; a loss's own (centres) at its ``lr`` if it has one."""
    groups = [{"params": list(model.parameters())}]
    loss_params = list(criterion.parameters())
    if loss_params:
        groups.append({"params": loss_params, "lr": getattr(criterion, "lr", None) or cfg.lr})
    return groups


def train_fold(
    model: nn.Module,
    train_set: Dataset | tuple[torch.Tensor, torch.Tensor],
    cfg: TrainConfig,
    num_classes: int,
    criterion: nn.Module | None = None,
    progress: bool = True,
    desc: str = "train",
    groups: Sequence | None = None,
) -> nn.Module:
    """Run the fixed schedule on the training data and return the trained model.

    ``criterion`` lets a caller pass a loss with its own parameters (learnable centres), in
    which case those parameters are optimised too. ``groups`` (subject of each training
    sample) makes ``cfg.plateau``'s validation split hold out whole subjects.
    """
    device = torch_device(cfg.device)
    seed_everything(cfg.seed)
    labels = None
    if isinstance(train_set, tuple):
        labels = train_set[1].tolist()
        train_set = TensorDataset(*train_set)
    val_set = None
    if groups is not None and len(train_set) != len(groups):
        # An expanded set (ClipDataset's x10 copies) is copy-major: copy k of sample i sits
        # at k * n + i, so every copy keeps its subject and stays on its side of the split.
        if len(train_set) % len(groups):
            raise ValueError(f"{len(groups)} groups for {len(train_set)} training samples")
        groups = list(groups) * (len(train_set) // len(groups))
    if cfg.plateau is not None:
        fit, val = validation_split(
            len(train_set), cfg.plateau.val_fraction, cfg.seed, labels, groups
        )
        train_set, val_set = Subset(train_set, fit.tolist()), Subset(train_set, val.tolist())
    criterion = criterion or create_loss(cfg.loss, num_classes, **cfg.loss_kwargs)
    model.to(device).train()
    criterion.to(device)
    graphed = cfg.cuda_graph and device.type == "cuda"
    optimizer = make_optimizer(param_groups(model, criterion, cfg), cfg, capturable=graphed)
    scheduler = None
    if cfg.plateau is not None:
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            factor=cfg.plateau.factor,
            patience=cfg.plateau.patience,
            min_lr=cfg.plateau.min_lr,
        )
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        shuffle=cfg.shuffle,
        generator=generator,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        # a last batch of one sample breaks BatchNorm (one value per channel after pooling)
        drop_last=len(train_set) > 1 and len(train_set) % cfg.batch_size == 1,
    )
    use_amp = cfg.amp and device.type == "cuda"
    if graphed:
        step = GraphedStep(
            model, criterion, optimizer, training_loss, cfg.batch_size, cfg.augment, use_amp
        )
    else:
        step = eager_step(model, criterion, optimizer, cfg.augment, device, use_amp)
    for _ in tqdm(range(cfg.epochs), desc=desc, disable=not progress, leave=False):
        for x, y in loader:
            step(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
        if scheduler is not None:
            scheduler.step(_mean_loss(model, criterion, val_set, cfg.batch_size, device, use_amp))
    return model


def eager_step(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    augment: AugmentConfig | None,
    device: torch.device,
    use_amp: bool,
) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One training step per call: float16 autocast with loss scaling when ``use_amp``."""
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        if augment is not None:
            x = augment_batch(x, augment)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=use_amp):
            loss = training_loss(criterion, model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


@torch.no_grad()
def _mean_loss(
    model: nn.Module,
    criterion: nn.Module,
    data: Dataset,
    batch_size: int,
    device: torch.device,
    use_amp: bool,
) -> float:
    """Mean loss over ``data`` in eval mode (the plateau schedule's validation loss)."""
    model.eval()
    total, count = 0.0, 0
    for x, y in DataLoader(data, batch_size=batch_size):
        x, y = x.to(device), y.to(device)
        with torch.autocast(device.type, enabled=use_amp):
            total += float(training_loss(criterion, model(x), y)) * len(y)
        count += len(y)
    model.train()
    return total / count


def training_loss(criterion: nn.Module, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Feature-based losses (centre, island) take features too; models expose them by
    # returning (logits, features), which plain cross-entropy never sees.
    if isinstance(logits, tuple):
        return criterion(*logits, y)
    return criterion(logits.float(), y)
