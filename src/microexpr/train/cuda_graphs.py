"""A training step replayed as one CUDA graph.

Image models at small batches (32 faces of 96x96) are launch-bound on a GPU: a step of
DenseNet-201 is thousands of kernels of a few microseconds each, and the host spends longer
launching them than the device spends running them. Capturing the whole step (augmentation,
forward, loss, backward, optimiser update) once and replaying it launches them all at once,
following PyTorch's "whole network capture" recipe (torch.cuda.graphs).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from microexpr.config import AugmentConfig
from microexpr.train.augment import augment_batch

LossFn = Callable[[nn.Module, object, torch.Tensor], torch.Tensor]


class GraphedStep:
    """Run training steps, replaying a captured CUDA graph for every full batch.

    The first ``warmup`` full batches run eagerly on a side stream (cuDNN and cuBLAS set up
    their workspaces there, as capture requires); the next is captured and every later full
    batch replays it. A partial batch (another shape) runs eagerly. The optimiser's learning
    rate is baked into the graph, so a change of rate (the plateau schedule) re-captures.

    Autocast uses bfloat16 when ``amp``: it needs no loss scaling, whose inf check reads a
    value back to the host and cannot be captured. The optimiser must be ``capturable``
    (Adam's step count lives on the device).
    """

    def __init__(
        self,
        model: nn.Module,
        criterion: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: LossFn,
        batch_size: int,
        augment: AugmentConfig | None = None,
        amp: bool = True,
        warmup: int = 3,
    ) -> None:
        self.model, self.criterion, self.optimizer = model, criterion, optimizer
        self.loss_fn, self.batch_size, self.augment = loss_fn, batch_size, augment
        self.amp, self.warmup = amp, warmup
        self.warmed = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.graph_lrs: tuple[float, ...] = ()
        self.static_x = self.static_y = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if len(x) != self.batch_size:
            self._step(x, y)
            return
        if self.warmed < self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._step(x, y)
            torch.cuda.current_stream().wait_stream(side)
            self.warmed += 1
            return
        lrs = tuple(float(group["lr"]) for group in self.optimizer.param_groups)
        if self.graph is None or lrs != self.graph_lrs:
            self._capture(x, y)
            self.graph_lrs = lrs
        self.static_x.copy_(x)
        self.static_y.copy_(y)
        self.graph.replay()

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.augment is not None:
            x = augment_batch(x, self.augment)
        with torch.autocast("cuda", torch.bfloat16, enabled=self.amp, cache_enabled=False):
            loss = self.loss_fn(self.criterion, self.model(x), y)
        loss.backward()
        self.optimizer.step()

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.graph = None  # free the previous graph's memory first
        self.static_x, self.static_y = x.clone(), y.clone()
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            self._step(self.static_x, self.static_y)
        self.graph = graph
