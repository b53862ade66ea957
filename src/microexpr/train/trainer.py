"""Train one model on one fold with a fixed schedule: nothing here ever sees the test fold."""

from __future__ import annotations

import random
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from microexpr.losses import create_loss


class TrainConfig(BaseModel):
    """Optimiser, loss and schedule. Defaults are the published STSTNet recipe."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = 800
    batch_size: int = 256
    lr: float = 5e-5
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    loss: str = "cross_entropy"
    loss_kwargs: dict = {}
    shuffle: bool = False  # the STSTNet loop feeds batches in file order
    amp: bool = True  # mixed precision, used on CUDA only
    device: str = "auto"
    seed: int = 0
    num_workers: int = 0


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """One seed for Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    optimizer = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return optimizer(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_fold(
    model: nn.Module,
    train_set: Dataset | tuple[torch.Tensor, torch.Tensor],
    cfg: TrainConfig,
    num_classes: int,
    criterion: nn.Module | None = None,
    progress: bool = True,
    desc: str = "train",
) -> nn.Module:
    """Run the fixed schedule on the training data and return the trained model.

    ``criterion`` lets a caller pass a loss with its own parameters (learnable centres), in
    which case those parameters are optimised too.
    """
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    if isinstance(train_set, tuple):
        train_set = TensorDataset(*train_set)
    criterion = criterion or create_loss(cfg.loss, num_classes, **cfg.loss_kwargs)
    model.to(device).train()
    criterion.to(device)
    params = list(model.parameters()) + list(criterion.parameters())
    optimizer = make_optimizer(params, cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        shuffle=cfg.shuffle,
        generator=generator,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
    )
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    for _ in tqdm(range(cfg.epochs), desc=desc, disable=not progress, leave=False):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, enabled=use_amp):
                loss = _loss(criterion, model(x), y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
    return model


def _loss(criterion: nn.Module, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Feature-based losses (centre, island) take features too; models expose them by
    # returning (logits, features), which plain cross-entropy never sees.
    if isinstance(logits, tuple):
        return criterion(*logits, y)
    return criterion(logits.float(), y)


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    data: Dataset | torch.Tensor,
    batch_size: int = 256,
    device: str = "auto",
) -> np.ndarray:
    """Softmax probabilities (N, classes) in eval mode."""
    dev = resolve_device(device)
    model.to(dev).eval()
    if isinstance(data, torch.Tensor):
        data = TensorDataset(data)
    outputs = []
    for batch in DataLoader(data, batch_size=batch_size):
        logits = model(batch[0].to(dev))
        if isinstance(logits, tuple):
            logits = logits[0]
        outputs.append(torch.softmax(logits.float(), dim=1).cpu())
    return torch.cat(outputs).numpy()
