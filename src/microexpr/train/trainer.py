"""Train one model on one fold with a fixed schedule: nothing here ever sees the test fold.

A loss that turns NaN or infinite stops the fold (:class:`NonFiniteLossError`, naming the
fold, epoch and step) instead of training on garbage for hundreds of epochs. Each step's loss
is copied into a small buffer on the training device and the buffer is read once per epoch:
one host sync per epoch rather than one per step, which on CUDA would stall the queue of
launched kernels every step. A diverged fold thus runs at most one epoch too long.
"""

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
from microexpr.train.augment import augment_batch, mix_batch
from microexpr.train.cuda_graphs import GraphedStep
from microexpr.train.schedule import validation_split


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names fold, epoch and step."""


class LossWatch:
    """Every step's loss kept on its device; :meth:`check` reads one epoch's at once."""

    def __init__(self, steps: int, device: torch.device, fold: str, epochs: int):
        self.losses = torch.zeros(max(steps, 1), device=device)
        self.steps, self.fold, self.epochs = steps, fold, epochs

    def record(self, step: int, loss: torch.Tensor | None) -> None:
        if loss is not None:  # a replayed CUDA graph returns no loss to watch
            self.losses[step] = loss.detach().float()

    def check(self, epoch: int) -> None:
        """Raise for the epoch's first non-finite loss (one host sync)."""
        finite = torch.isfinite(self.losses[: self.steps])
        if bool(finite.all()):
            return
        step = int((~finite).nonzero()[0])
        value = float(self.losses[step])
        raise NonFiniteLossError(
            f"fold {self.fold}: training loss is {value} at epoch {epoch + 1} of {self.epochs}, "
            f"step {step + 1} of {self.steps}; the fold is stopped (lower train.lr, or look "
            "for NaN or infinite values in the inputs)"
        )


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
    on_epoch: Callable[[int, nn.Module], None] | None = None,
) -> nn.Module:
    """Run the fixed schedule on the training data and return the trained model.

    ``criterion`` lets a caller pass a loss with its own parameters (learnable centres), in
    which case those parameters are optimised too. ``groups`` (subject of each training
    sample) makes ``cfg.plateau``'s validation split hold out whole subjects.
    ``on_epoch(epoch, model)`` is called after every ``cfg.record_epochs``-th epoch and the last
    (the leakage diagnostic); it runs under a forked RNG with the model restored to training
    mode afterwards, so whatever it does (a DataLoader draws a seed from the global
    generator) leaves the training run, and so the final model, bit for bit the same.
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
    watch = LossWatch(len(loader), device, desc, cfg.epochs)
    for epoch in tqdm(range(cfg.epochs), desc=desc, disable=not progress or None, leave=False):
        for i, (x, y) in enumerate(loader):
            watch.record(i, step(x.to(device, non_blocking=True), y.to(device, non_blocking=True)))
        watch.check(epoch)
        if scheduler is not None:
            scheduler.step(_mean_loss(model, criterion, val_set, cfg.batch_size, device, use_amp))
        if on_epoch is not None and recorded_epoch(epoch, cfg.epochs, cfg.record_epochs):
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                on_epoch(epoch, model)
            model.train()
    return model


def recorded_epoch(epoch: int, epochs: int, every: int) -> bool:
    """Whether the diagnostic records (0-based) ``epoch``: every ``every``-th, and the last."""
    return every > 0 and ((epoch + 1) % every == 0 or epoch + 1 == epochs)


def eager_step(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    augment: AugmentConfig | None,
    device: torch.device,
    use_amp: bool,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """One training step per call, returning its loss (on the device, not synced): float16
    autocast with loss scaling when ``use_amp``."""
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        partners, lam = y, 1.0
        if augment is not None:
            x = augment_batch(x, augment)
            if augment.mixup:
                x, partners, lam = mix_batch(x, y, augment.mixup)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=use_amp):
            out = model(x)
            loss = training_loss(criterion, out, y)
            if lam < 1.0:
                loss = lam * loss + (1.0 - lam) * training_loss(criterion, out, partners)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss

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
