"""Many folds at once: every fold of a LOSO run trained as one stacked network.

A small flow network on 28x28 images is far too small to keep a CPU or GPU busy one fold
at a time (the official STSTNet loop spends most of its time in Python and kernel launch
overhead). Stacking the folds turns 68 tiny steps into one step of reasonable size while
each fold keeps its own weights, batch-norm statistics, batches and optimiser state, so the
per-fold computation is that of training the folds one by one.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from microexpr.config import TrainConfig
from microexpr.inference import torch_device
from microexpr.models.flow_nets import StackedSTSTNet, ststnet
from microexpr.protocols import Fold


class FoldAdam:
    """Adam over stacked parameters whose first axis is the fold.

    ``torch.optim.Adam`` keeps one step count per tensor; here folds take different numbers
    of steps (a fold with fewer training samples runs out of batches first), so the step
    count, moments and update are per fold, and a fold without samples in a batch is left
    untouched. The arithmetic is that of ``torch.optim.Adam`` (L2 weight decay).
    """

    def __init__(
        self,
        params: list[nn.Parameter],
        folds: int,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        self.params, self.lr, self.betas, self.eps, self.wd = params, lr, betas, eps, weight_decay
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = torch.zeros(folds, device=params[0].device)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        """One Adam step for the folds where ``active`` (F,) is true."""
        beta1, beta2 = self.betas
        self.steps += active.float()
        steps = self.steps.clamp(min=1)
        bias1, bias2_sqrt = 1 - beta1**steps, (1 - beta2**steps).sqrt()
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            shape = (-1,) + (1,) * (p.dim() - 1)
            on = active.view(shape)
            grad = p.grad if self.wd == 0 else p.grad + self.wd * p
            m.copy_(torch.where(on, beta1 * m + (1 - beta1) * grad, m))
            v.copy_(torch.where(on, beta2 * v + (1 - beta2) * grad * grad, v))
            denom = v.sqrt() / bias2_sqrt.view(shape) + self.eps
            update = (self.lr / bias1.view(shape)) * m / denom
            p.sub_(torch.where(on, update, torch.zeros_like(update)))


def _padded(index_lists: list[tuple[int, ...]], device: torch.device):
    """(F, n_max) index matrix padded with 0, plus the (F, n_max) mask of real entries."""
    longest = max(len(ix) for ix in index_lists)
    index = torch.zeros(len(index_lists), longest, dtype=torch.long)
    mask = torch.zeros(len(index_lists), longest, dtype=torch.bool)
    for i, ix in enumerate(index_lists):
        index[i, : len(ix)] = torch.tensor(ix, dtype=torch.long)
        mask[i, : len(ix)] = True
    return index.to(device), mask.to(device)


def train_folds_stacked(
    images: torch.Tensor,
    targets: torch.Tensor,
    folds: list[Fold],
    cfg: TrainConfig,
    num_classes: int,
    model_kwargs: dict | None = None,
    progress: bool = True,
) -> list[np.ndarray]:
    """Train one STSTNet per fold, all at once; return each fold's test probabilities."""
    device = torch_device(cfg.device)
    models = []
    for fold in folds:
        torch.manual_seed(fold.seed(cfg.seed))
        models.append(ststnet(num_classes, images.shape[1], **(model_kwargs or {})))
    net = StackedSTSTNet(models).to(device)
    images, targets = images.to(device), targets.to(device)
    train_index, train_mask = _padded([f.train for f in folds], device)
    optimizer = FoldAdam(list(net.parameters()), len(folds), cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator(device).manual_seed(folds[0].seed(cfg.seed))
    net.train()
    longest = train_index.shape[1]
    # As train_fold's loader: a last batch of a single sample is dropped each epoch.
    lengths = train_mask.sum(1)
    used = lengths - ((lengths > 1) & (lengths % cfg.batch_size == 1)).long()
    for _ in tqdm(range(cfg.epochs), desc=f"{len(folds)} folds", disable=not progress):
        if cfg.shuffle:  # each fold shuffles its own samples; padding stays at the end
            keys = torch.rand(train_mask.shape, generator=generator, device=device)
            order = torch.where(train_mask, keys, 2.0).argsort(dim=1)
        else:
            order = torch.arange(longest, device=device).expand_as(train_index)
        for start in range(0, longest, cfg.batch_size):
            cols = order[:, start : start + cfg.batch_size]
            positions = torch.arange(start, start + cols.shape[1], device=device)
            index, mask = train_index.gather(1, cols), positions[None, :] < used[:, None]
            logits = net(images[index], mask, generator)
            losses = F.cross_entropy(
                logits.flatten(0, 1), targets[index].flatten(), reduction="none"
            ).view(mask.shape)
            per_fold = (losses * mask).sum(1) / mask.sum(1).clamp(min=1)
            optimizer.zero_grad()
            per_fold.sum().backward()
            optimizer.step(mask.any(1))
    return predict_stacked(net, images, folds, device)


@torch.no_grad()
def predict_stacked(
    net: StackedSTSTNet, images: torch.Tensor, folds: list[Fold], device: torch.device
) -> list[np.ndarray]:
    """Each fold's softmax probabilities on its own test samples, in eval mode."""
    net.eval()
    test_index, _ = _padded([f.test for f in folds], device)
    probs = torch.softmax(net(images[test_index]), dim=2).cpu().numpy()
    return [probs[i, : len(f.test)] for i, f in enumerate(folds)]
