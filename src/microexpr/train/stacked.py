"""Many folds at once: every fold of a LOSO run trained as one stacked STSTNet.

A small flow network on 28x28 images is far too small to keep a CPU or GPU busy one fold at
a time: the official STSTNet loop spends most of its time in framework kernels built for wide
layers and in kernel launches. Here every fold's step is one column block of a few wide
matrix products with a closed-form backward pass (``StackedSTSTNet.backprop``), while each
fold keeps its own initialisation (its fold seed), batches (those ``train_fold``'s loader
yields, last batch of one dropped), batch-norm statistics, Adam state and dropout draws, so
the per-fold computation is that of training the folds one by one, up to float rounding.

On a CPU the folds are split over one process per core, one thread each (threads of one
process spin-wait on each other when the machine is shared); on CUDA each step is replayed
as a CUDA graph (the step makes no host round trips), so a step costs its kernels' device
time rather than their launch overhead. docs/speed.md has the measurements.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from microexpr.config import AugmentConfig, TrainConfig
from microexpr.inference import mirror, torch_device
from microexpr.models import load_weights
from microexpr.models.flow_nets import CONV_SIDE, POOL_SIDE, StackedSTSTNet, conv_patches, ststnet
from microexpr.models.weights import read_state_dict
from microexpr.processes import exit_with_parent
from microexpr.protocols import Fold

# Floats of hidden maps per pass on a CPU (samples x 900 x 16 per fold): one sample of 34
# folds per pass measured fastest (75 us per sample-fold step; 8 samples: 103 us).
CPU_CHUNK_FLOATS = 2**18
# Below this many sample-steps summed over folds (about 15 s of work) one process is
# faster than starting one per core (each worker imports torch afresh).
PROCESS_MIN_WORK = 200_000
_MASK32 = 0xFFFFFFFF


class FoldAdam:
    """Adam over stacked parameters whose first axis is the fold.

    ``torch.optim.Adam`` keeps one step count per tensor; here folds take different numbers
    of steps (a fold with fewer training samples runs out of batches first), so the step
    count, moments and update are per fold, and a fold without samples in a batch is left
    untouched. The arithmetic is that of ``torch.optim.Adam`` (L2 weight decay). Every
    operation stays on the device, so a step can be captured in a CUDA graph.
    """

    def __init__(
        self,
        params: list[torch.Tensor],
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

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor], active: torch.Tensor) -> None:
        """One Adam step with ``grads`` (one per parameter) for the folds where ``active``."""
        beta1, beta2 = self.betas
        self.steps += active.float()
        steps = self.steps.clamp(min=1)
        bias1, bias2_sqrt = 1 - beta1**steps, (1 - beta2**steps).sqrt()
        for p, grad, m, v in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, strict=True):
            shape = (-1,) + (1,) * (p.dim() - 1)
            on = active.view(shape)
            if self.wd:
                grad = grad + self.wd * p
            m.copy_(torch.where(on, beta1 * m + (1 - beta1) * grad, m))
            v.copy_(torch.where(on, beta2 * v + (1 - beta2) * grad * grad, v))
            denom = v.sqrt() / bias2_sqrt.view(shape) + self.eps
            update = (self.lr / bias1.view(shape)) * m / denom
            p.sub_(torch.where(on, update, torch.zeros_like(update)))


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (two multiply-xorshift rounds) of int64 values in [0, 2^32).
    Both multipliers are below 2^31, so no product leaves int64 on any device."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x2C1B3C6D) & _MASK32
    return x ^ (x >> 16)


class CellDropout:
    """Dropout multipliers for the pooled cells (the ones STSTNet's dropout sees).

    Each draw is a hash of (fold seed, epoch, batch, sample, cell, channel): a fold's draws
    do not depend on which folds share its run or on the device, and there is no generator
    state, so a CUDA graph can replay it (the epoch counter lives on the device). Each 32-bit
    hash gives four 8-bit uniforms (its bytes, little-endian as every supported device is);
    a unit is kept when its uniform is at least ``round(rate * 256)``, which is exact for
    STSTNet's rate 0.5 (other rates are rounded to 1/256).
    """

    def __init__(self, seeds: list[int], rate: float, num_samples: int, device: torch.device):
        self.threshold = round(rate * 256)
        self.scale = 1 / (1 - rate)
        self.fold_keys = _mix32(torch.tensor(seeds, dtype=torch.long, device=device) & _MASK32)
        quarter = POOL_SIDE**2 // 4
        sample = torch.arange(num_samples, device=device)[:, None, None]
        cell = torch.arange(quarter, device=device)[None, :, None]
        channel = torch.arange(16, device=device)[None, None, :]
        self.index = (sample * quarter + cell) * 16 + channel  # (N, 25, 16)

    def __call__(self, ids: torch.Tensor, epoch: torch.Tensor, batch: int) -> torch.Tensor:
        """(U, 100, F*16) multipliers (0 or 1/(1-rate)) for samples ``ids`` in the given
        epoch (a device scalar) and batch of it."""
        keys = _mix32(_mix32(self.fold_keys ^ (epoch & _MASK32)) ^ batch)
        hashes = _mix32(self.index[ids][:, :, None, :] ^ keys[None, None, :, None])
        uniform = hashes.view(torch.uint8).view(*hashes.shape, 8)[..., :4]  # the low 4 bytes
        keep = (uniform >= self.threshold).permute(0, 1, 4, 2, 3)
        return keep.reshape(len(ids), POOL_SIDE**2, -1).to(torch.float32).mul_(self.scale)


class FlipDraw:
    """Which samples a step feeds mirrored (``train.augment.hflip``): a hash of (train seed,
    epoch, batch, sample), like :class:`CellDropout` free of generator state so that a CUDA
    graph can replay it. The draw is shared by the folds of a run (each fold still sees every
    sample mirrored with probability ``hflip``, independently over epochs)."""

    def __init__(self, seed: int, rate: float, num_samples: int, device: torch.device):
        self.threshold = round(rate * 256)
        self.key = _mix32(torch.tensor(seed, dtype=torch.long, device=device) & _MASK32)
        self.num_samples = num_samples

    def rows(self, ids: torch.Tensor, epoch: torch.Tensor, batch: int) -> torch.Tensor:
        """The rows of ``ids`` in the (originals, mirrored) patch table for this step."""
        keys = _mix32(_mix32(self.key ^ (epoch & _MASK32)) ^ batch)
        uniform = _mix32(ids ^ keys) & 0xFF
        return ids + self.num_samples * (uniform < self.threshold).long()


def fold_loader(size: int, cfg: TrainConfig, seed: int) -> DataLoader:
    """The index batches ``train_fold``'s loader yields for ``size`` training samples: the
    same sampler, generator and last-batch-of-one rule, so the batches are the same."""
    return DataLoader(
        range(size),
        batch_size=cfg.batch_size,
        shuffle=cfg.shuffle,
        generator=torch.Generator().manual_seed(seed),
        drop_last=size > 1 and size % cfg.batch_size == 1,
    )


@dataclass
class Step:
    """One stacked step: the samples any fold uses (``ids``) and which fold uses which."""

    ids: torch.Tensor  # (U,) sample indices
    member: torch.Tensor  # (F, U) float, 1 where the sample is in the fold's batch


def epoch_steps(folds: list[Fold], loaders: list[DataLoader], ids: torch.Tensor) -> list[Step]:
    """This epoch's steps: batch k of every fold together, over the samples ``ids``."""
    column = {int(i): c for c, i in enumerate(ids.tolist())}
    batches = [list(loader) for loader in loaders]
    steps = []
    for k in range(max(len(b) for b in batches)):
        member = torch.zeros(len(folds), len(ids))
        for f, (fold, fold_batches) in enumerate(zip(folds, batches, strict=True)):
            if k < len(fold_batches):
                chosen = [column[fold.train[i]] for i in fold_batches[k].tolist()]
                member[f, chosen] = 1.0
        steps.append(Step(ids, member))
    return steps


def _only_used(step: Step) -> Step:
    """The step restricted to the samples some fold uses in it (unshuffled runs, where the
    folds' batches nearly coincide)."""
    used = step.member.any(0)
    return Step(step.ids[used], step.member[:, used])


def train_stacked(
    images: torch.Tensor,
    targets: torch.Tensor,
    folds: list[Fold],
    cfg: TrainConfig,
    num_classes: int,
    model_kwargs: dict | None = None,
    progress: bool = True,
    *,
    weights: str | None = None,
) -> StackedSTSTNet:
    """One STSTNet per fold (fold-seeded init, then the tensors of ``weights`` that fit, as
    the per-fold engine starts), all trained at once in this process."""
    device = torch_device(cfg.device)
    seeds = [fold.seed(cfg.seed) for fold in folds]
    state = read_state_dict(weights) if weights else None  # read once, loaded into every fold
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        model = ststnet(num_classes, images.shape[1], **(model_kwargs or {}))
        if state is not None:
            load_weights(model, "ststnet", state)
        models.append(model)
    net = StackedSTSTNet(models).to(device)
    images = images.to(device)
    flips = None
    if cfg.augment is not None and cfg.augment.hflip:
        flips = FlipDraw(cfg.seed, cfg.augment.hflip, len(images), device)
        images = torch.cat([images, mirror(images, cfg.augment.flip_reflect)])
    patches, targets = conv_patches(images), targets.to(device)
    loaders = [fold_loader(len(f.train), cfg, s) for f, s in zip(folds, seeds, strict=True)]
    everyone = torch.tensor(sorted({i for f in folds for i in f.train}), dtype=torch.long)
    fixed = None if cfg.shuffle else [_only_used(s) for s in epoch_steps(folds, loaders, everyone)]
    samples = len(targets)
    dropout = CellDropout(seeds, net.drop_rate, samples, device) if net.drop_rate else None
    optimizer = FoldAdam(list(net.parameters()), len(folds), cfg.lr, weight_decay=cfg.weight_decay)
    runner = StepRunner(net, optimizer, dropout, patches, targets, device, flips)
    for _ in tqdm(range(cfg.epochs), desc=f"{len(folds)} folds", disable=not progress):
        for k, step in enumerate(fixed or epoch_steps(folds, loaders, everyone)):
            runner(k, step)
        runner.epoch += 1
    return net


class StepRunner:
    """Runs stacked steps: eagerly on a CPU (cache-sized chunks), as CUDA graphs on CUDA.

    A CUDA graph per step position k of the epoch is captured after ``WARMUP`` eager epochs
    (cuBLAS and the allocator set up there, on a side stream as capture requires) and
    replayed with the step's samples and member matrix copied into its static inputs.
    """

    WARMUP = 2

    def __init__(
        self,
        net: StackedSTSTNet,
        optimizer: FoldAdam,
        dropout: CellDropout | None,
        patches: torch.Tensor,
        targets: torch.Tensor,
        device: torch.device,
        flips: FlipDraw | None = None,
    ):
        self.net, self.optimizer, self.dropout, self.flips = net, optimizer, dropout, flips
        self.patches, self.targets, self.device = patches, targets, device
        self.graphed = device.type == "cuda"
        per_sample = CONV_SIDE**2 * net.width
        self.chunk = len(patches) if self.graphed else max(1, CPU_CHUNK_FLOATS // per_sample)
        self.hidden = patches.new_empty(2, self.chunk * per_sample)
        self.epoch = torch.zeros((), dtype=torch.long, device=device)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, dict[str, torch.Tensor]]] = {}
        self.eager: dict[int, int] = {}  # eager steps run at each position k

    def __call__(self, k: int, step: Step) -> None:
        if not self.graphed:
            self._run(k, self._inputs(step), signed=bool((self.net.bn_weight < 0).any()))
            return
        inputs = self._inputs(step)
        if self.eager.get(k, 0) < self.WARMUP:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._run(k, inputs, signed=True)
            torch.cuda.current_stream().wait_stream(side)
            self.eager[k] = self.eager.get(k, 0) + 1
            return
        if k not in self.graphs or self.graphs[k][1]["ids"].shape != inputs["ids"].shape:
            self.graphs[k] = self._capture(k, inputs)
        graph, static = self.graphs[k]
        for name, value in inputs.items():
            static[name].copy_(value)
        graph.replay()

    def _inputs(self, step: Step) -> dict[str, torch.Tensor]:
        return {
            "ids": step.ids.to(self.device, non_blocking=True),
            "member": step.member.to(self.device, non_blocking=True),
        }

    def _run(self, batch: int, inputs: dict[str, torch.Tensor], signed: bool) -> None:
        ids, member = inputs["ids"], inputs["member"]
        keep = None
        if self.dropout is not None:

            def keep(rows: slice) -> torch.Tensor:
                return self.dropout(ids[rows], self.epoch, batch)

        rows = ids if self.flips is None else self.flips.rows(ids, self.epoch, batch)
        grads, _ = self.net.backprop(
            self.patches[rows], self.targets[ids], member, keep, self.hidden, self.chunk, signed
        )
        self.optimizer.step(grads, member.sum(1) > 0)

    def _capture(self, batch: int, inputs: dict[str, torch.Tensor]):
        static = {name: value.clone() for name, value in inputs.items()}
        graph = torch.cuda.CUDAGraph()
        pool = next(iter(self.graphs.values()))[0].pool() if self.graphs else None
        with torch.cuda.graph(graph, pool=pool):
            self._run(batch, static, signed=True)
        return graph, static


@torch.no_grad()
def predict_stacked(
    net: StackedSTSTNet,
    images: torch.Tensor,
    folds: list[Fold],
    device: torch.device,
    augment: AugmentConfig | None = None,
) -> list[np.ndarray]:
    """Each fold's softmax probabilities on its own test samples, in eval mode; with
    ``augment.test_hflip`` averaged with those of the mirror images, as
    ``inference.class_probabilities`` does for one model."""
    net.eval()
    views = [images.to(device)]
    if augment is not None and augment.test_hflip:
        views.append(mirror(views[0], augment.flip_reflect))
    per_sample = CONV_SIDE**2 * net.width
    chunk = len(images) if device.type == "cuda" else max(1, CPU_CHUNK_FLOATS // per_sample)
    probs = sum(torch.softmax(net.logits(conv_patches(v), chunk), dim=2) for v in views)
    probs = (probs / len(views)).cpu().numpy()
    return [probs[i, list(f.test)] for i, f in enumerate(folds)]


def default_processes(device: torch.device, folds: list[Fold], cfg: TrainConfig) -> int:
    """One process per core on a CPU when the run is long enough to pay for starting them."""
    if device.type != "cpu" or len(folds) < 2:
        return 1
    work = sum(len(f.train) for f in folds) * cfg.epochs
    if work < PROCESS_MIN_WORK:
        return 1
    return min(len(os.sched_getaffinity(0)), len(folds))


def split_folds(folds: list[Fold], parts: int) -> list[list[Fold]]:
    """``parts`` contiguous groups of near-equal size (a fold's result does not depend on the
    group beyond float rounding; the same split gives the same bits)."""
    bounds = np.linspace(0, len(folds), parts + 1).round().astype(int)
    return [list(folds[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def train_folds_stacked(
    images: torch.Tensor,
    targets: torch.Tensor,
    folds: list[Fold],
    cfg: TrainConfig,
    num_classes: int,
    model_kwargs: dict | None = None,
    progress: bool = True,
    processes: int | None = None,
    *,
    weights: str | None = None,
) -> list[np.ndarray]:
    """Train one STSTNet per fold, all at once; return each fold's test probabilities.

    ``processes``: how many processes share the folds (one thread each); None: one per core
    on a CPU for a long run (:func:`default_processes`), else this process alone.
    """
    device = torch_device(cfg.device)
    processes = processes or default_processes(device, folds, cfg)
    if processes > 1:
        parts = split_folds(folds, processes)
        return _in_processes(
            images, targets, parts, cfg, num_classes, model_kwargs, progress, weights
        )
    net = train_stacked(
        images, targets, folds, cfg, num_classes, model_kwargs, progress, weights=weights
    )
    return predict_stacked(net, images, folds, device, cfg.augment)


def one_thread_while_parent_lives(parent: int, poll_seconds: float = 1.0) -> None:
    """Pool worker set-up: one torch thread, and exit as soon as ``parent`` is gone
    (:func:`~microexpr.processes.exit_with_parent`)."""
    torch.set_num_threads(1)
    exit_with_parent(parent, poll_seconds)


def _in_processes(
    images: torch.Tensor,
    targets: torch.Tensor,
    parts: list[list[Fold]],
    cfg: TrainConfig,
    num_classes: int,
    model_kwargs: dict | None,
    progress: bool,
    weights: str | None,
) -> list[np.ndarray]:
    """Each part of the folds in its own spawned process with one thread."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        len(parts),
        mp_context=context,
        initializer=one_thread_while_parent_lives,
        initargs=(os.getpid(),),
    ) as pool:
        jobs = [
            pool.submit(
                train_folds_stacked,
                images,
                targets,
                part,
                cfg,
                num_classes,
                model_kwargs,
                progress and i == 0,
                1,
                weights=weights,
            )
            for i, part in enumerate(parts)
        ]
        return [probs for job in jobs for probs in job.result()]
