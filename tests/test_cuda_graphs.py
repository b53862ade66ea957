"""CUDA-graph training steps (train/cuda_graphs.py): same training as eager steps, seed losses
capturable. The CUDA tests skip on machines without a GPU (CI); the CPU test always runs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from microexpr import models
from microexpr.config import AugmentConfig, TrainConfig
from microexpr.losses import create_loss
from microexpr.train.cuda_graphs import GraphedStep
from microexpr.train.trainer import make_optimizer, train_fold, training_loss

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _small_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


def _data(n: int = 22) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 12, 12, generator=generator), torch.arange(n) % 3


def test_cuda_graph_flag_is_ignored_on_cpu():
    cfg = TrainConfig(epochs=3, batch_size=8, lr=1e-2, device="cpu", shuffle=True)
    plain = train_fold(_small_net(0), _data(), cfg, 3, progress=False)
    flagged = train_fold(
        _small_net(0), _data(), cfg.model_copy(update={"cuda_graph": True}), 3, progress=False
    )
    for a, b in zip(plain.state_dict().values(), flagged.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@cuda
def test_graphed_steps_train_as_eager_steps_through_an_lr_change():
    """Full batches replay the graph, the partial batch runs eagerly, and a new learning rate
    is picked up (re-capture); parameters and BN statistics end as with eager float32 steps."""
    x, y = (t.cuda() for t in _data())
    batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, len(x), 8)]  # 8, 8, 6
    results = []
    for graphed in (False, True):
        model = _small_net(0).cuda().train()
        criterion = nn.CrossEntropyLoss()
        cfg = TrainConfig(lr=1e-2)
        optimizer = make_optimizer(model.parameters(), cfg, capturable=True)
        step = GraphedStep(model, criterion, optimizer, training_loss, 8, amp=False, warmup=2)
        for epoch in range(8):
            if epoch == 5:
                for group in optimizer.param_groups:
                    group["lr"] = 1e-3
            for xb, yb in batches:
                if graphed:
                    step(xb, yb)
                else:
                    step._step(xb, yb)
        torch.cuda.synchronize()
        results.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        if graphed:
            assert step.graph is not None and step.graph_lrs == (1e-3,)
    for key, eager in results[0].items():
        torch.testing.assert_close(results[1][key], eager, rtol=1e-4, atol=1e-5, msg=key)


@cuda
@pytest.mark.parametrize(
    ("name", "loss", "loss_kwargs", "options", "augment"),
    [
        ("densenet121_eca", "cross_entropy", {}, {}, AugmentConfig(hflip=0.5, rotation=10)),
        (
            "psa_resnet50",
            "island",
            {"feat_dim": 2048, "lr": 1e-3},
            {"return_features": True},
            AugmentConfig(hflip=0.5, translate=0.05),
        ),
        ("se_resnext50_32x4d", "focal", {"gamma": 2.0}, {}, AugmentConfig(grayscale=0.5)),
    ],
)
def test_seed_models_and_losses_train_under_a_cuda_graph(name, loss, loss_kwargs, options, augment):
    torch.manual_seed(0)
    model = models.create(name, num_classes=3, in_chans=3, **options)
    criterion = create_loss(loss, 3, **loss_kwargs)
    before = [p.detach().clone() for p in criterion.parameters()]
    images = torch.randn(20, 3, 32, 32)
    cfg = TrainConfig(
        epochs=3,
        batch_size=8,
        lr=1e-3,
        device="cuda",
        shuffle=True,
        cuda_graph=True,
        loss=loss,
        augment=augment,
    )
    trained = train_fold(model, (images, torch.arange(20) % 3), cfg, 3, criterion, False)
    for value in trained.state_dict().values():
        assert torch.isfinite(value.float()).all()
    for old, new in zip(before, criterion.parameters(), strict=True):
        assert not torch.equal(old, new.detach().cpu()), "the loss's centres did not move"
