"""Issue 15: the stacked STSTNet engine computes what training each fold alone computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch.nn import functional as F

from microexpr.config import AugmentConfig, DataConfig, ExperimentConfig, TrainConfig
from microexpr.inference import mirror, predict_proba
from microexpr.models import load_weights
from microexpr.models.flow_nets import StackedSTSTNet, conv_patches, ststnet
from microexpr.protocols import Fold
from microexpr.recipe import resolve
from microexpr.train.stacked import (
    CellDropout,
    FlipDraw,
    predict_stacked,
    split_folds,
    train_folds_stacked,
    train_stacked,
)
from microexpr.train.trainer import train_fold


def _data(n: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.rand(n, 3, 28, 28) * 255, torch.randint(0, 3, (n,))


# Unequal training sets: a shorter fold runs out of batches first; 17 % 8 == 1 drops a last
# batch of one sample every epoch, as train_fold's loader does.
FOLDS = [
    Fold("a", tuple(range(0, 22)), tuple(range(22, 30))),
    Fold("b", tuple(range(8, 30)) + (0, 1, 2), tuple(range(3, 8))),
    Fold("c", tuple(range(0, 17)), tuple(range(17, 30))),
]


def _alone(images, targets, fold: Fold, cfg: TrainConfig, weights: str | None = None) -> np.ndarray:
    """The official loop's work: the fold's own seeded STSTNet (started from ``weights`` when
    given) trained by train_fold."""
    train = cfg.model_copy(update={"seed": fold.seed(cfg.seed)})
    torch.manual_seed(train.seed)
    model = ststnet(3, 3, drop_rate=0.0)
    if weights:
        load_weights(model, "ststnet", weights)
    train_fold(model, (images[list(fold.train)], targets[list(fold.train)]), train, 3, False)
    return predict_proba(model, images[list(fold.test)], device="cpu")


@pytest.mark.parametrize("shuffle", [False, True])
def test_stacked_engine_equals_each_fold_trained_alone(shuffle):
    images, targets = _data()
    cfg = TrainConfig(epochs=4, batch_size=8, lr=1e-3, device="cpu", shuffle=shuffle)
    stacked = train_folds_stacked(images, targets, FOLDS, cfg, 3, {"drop_rate": 0.0}, False, 1)
    for fold, probs in zip(FOLDS, stacked, strict=True):
        np.testing.assert_allclose(probs, _alone(images, targets, fold, cfg), atol=1e-4)


def test_stacked_engine_starts_every_fold_from_the_weights_file(tmp_path):
    """A pretrained STSTNet of seven classes: each stacked fold loads all but its classifier,
    as a fold trained alone does, and training from it differs from random init."""
    torch.manual_seed(99)
    weights = str(tmp_path / "pre.safetensors")
    save_file(ststnet(7, 3).state_dict(), weights)
    images, targets = _data()
    cfg = TrainConfig(epochs=3, batch_size=8, lr=1e-3, device="cpu")
    args = (images, targets, FOLDS, cfg, 3, {"drop_rate": 0.0}, False, 1)
    started, plain = train_folds_stacked(*args, weights=weights), train_folds_stacked(*args)
    for fold, probs, own in zip(FOLDS, started, plain, strict=True):
        np.testing.assert_allclose(probs, _alone(images, targets, fold, cfg, weights), atol=1e-4)
        assert not np.allclose(probs, own, atol=1e-3)


@pytest.mark.slow  # starts two processes (each imports torch)
def test_folds_split_over_processes_give_the_same_predictions():
    images, targets = _data()
    cfg = TrainConfig(epochs=3, batch_size=8, lr=1e-3, device="cpu")
    alone = train_folds_stacked(images, targets, FOLDS, cfg, 3, None, False, 1)
    split = train_folds_stacked(images, targets, FOLDS, cfg, 3, None, False, 2)
    assert [len(p) for p in split_folds(FOLDS, 2)] == [2, 1]
    for a, b in zip(alone, split, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def _reference_loss(model, x, y, keep) -> torch.Tensor:
    """STSTNet's training forward (batch statistics) with given dropout multipliers."""
    streams = [
        bn(torch.relu(conv(x)))
        for conv, bn in (
            (model.conv1, model.bn1),
            (model.conv2, model.bn2),
            (model.conv3, model.bn3),
        )
    ]
    pooled = F.max_pool2d(torch.cat(streams, 1), kernel_size=3, stride=3, padding=1) * keep
    return F.cross_entropy(model.fc(torch.flatten(model.avgpool(pooled), 1)), y)


def test_closed_form_gradients_equal_autograd_with_dropout_and_negative_scales():
    images, targets = _data(12)
    torch.manual_seed(3)
    nets = [ststnet(3, 3) for _ in range(2)]
    with torch.no_grad():  # negative batch-norm scales: pooled minima become the maxima
        nets[1].bn2.weight[:3] *= -1
        nets[0].bn3.weight[::2] *= -0.5
    stack = StackedSTSTNet(nets)
    member = torch.tensor([[1.0] * 8 + [0.0] * 4, [0.0] * 3 + [1.0] * 9])
    keep = (torch.rand(12, 100, 32) > 0.5).float() * 2
    workspace = torch.empty(2, 4 * 900 * 32)
    grads, loss = stack.backprop(
        conv_patches(images), targets, member, lambda rows: keep[rows], workspace, 4
    )
    conv, bn_weight, bn_bias, fc_weight, fc_bias = grads
    for f, net in enumerate(nets):
        rows = member[f].bool()
        mask = keep[rows][:, :, f * 16 : (f + 1) * 16].permute(0, 2, 1).reshape(-1, 16, 10, 10)
        reference = _reference_loss(net.train(), images[rows], targets[rows], mask)
        reference.backward()
        assert loss[f].item() == pytest.approx(reference.item(), rel=1e-5)
        expected_conv = torch.cat(
            [getattr(net, f"conv{i}").weight.grad.flatten(1) for i in (1, 2, 3)]
        )
        expected_bias = torch.cat([getattr(net, f"conv{i}").bias.grad for i in (1, 2, 3)])
        expected_bn = torch.cat([getattr(net, f"bn{i}").weight.grad for i in (1, 2, 3)])
        expected_shift = torch.cat([getattr(net, f"bn{i}").bias.grad for i in (1, 2, 3)])
        torch.testing.assert_close(conv[f][:, :-1], expected_conv, rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(conv[f][:, -1], expected_bias, rtol=1e-3, atol=1e-5)
        torch.testing.assert_close(bn_weight[f], expected_bn, rtol=1e-3, atol=1e-5)
        torch.testing.assert_close(bn_bias[f], expected_shift, rtol=1e-3, atol=1e-5)
        torch.testing.assert_close(fc_weight[f], net.fc.weight.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(fc_bias[f], net.fc.bias.grad, rtol=1e-4, atol=1e-6)
        running = torch.cat([getattr(net, f"bn{i}").running_var for i in (1, 2, 3)])
        torch.testing.assert_close(stack.running_var[f], running, rtol=1e-4, atol=1e-4)


def test_a_folds_dropout_does_not_depend_on_the_other_folds():
    ids, epoch = torch.arange(5), torch.tensor(7)
    together = CellDropout([11, 22, 33], 0.5, 5, torch.device("cpu"))(ids, epoch, 1)
    alone = CellDropout([22], 0.5, 5, torch.device("cpu"))(ids, epoch, 1)
    assert torch.equal(together[:, :, 16:32], alone)
    assert set(together.unique().tolist()) == {0.0, 2.0}
    assert abs((together > 0).float().mean().item() - 0.5) < 0.02
    dropout = CellDropout([22], 0.5, 5, torch.device("cpu"))
    assert not torch.equal(alone, dropout(ids, epoch + 1, 1))
    assert not torch.equal(alone, dropout(ids, epoch, 2))


def test_auto_stacks_ststnet_on_every_device_and_not_other_recipes():
    assert resolve(ExperimentConfig(data=DataConfig(root="x"))).engine == "stacked"
    focal = ExperimentConfig(data=DataConfig(root="x"), train=TrainConfig(loss="focal"))
    assert resolve(focal).engine == "per_fold"
    flips = TrainConfig(augment=AugmentConfig(hflip=0.5))
    plan = resolve(ExperimentConfig(data=DataConfig(root="x"), train=flips))
    assert plan.engine == "stacked"
    assert plan.train.augment.flip_reflect == (2, 127.5)  # raw strain/v/u: u reflects
    turns = TrainConfig(augment=AugmentConfig(hflip=0.5, rotation=5))
    assert resolve(ExperimentConfig(data=DataConfig(root="x"), train=turns)).engine == "per_fold"


def test_stacked_flips_train_on_the_mirrored_flow_images():
    """hflip 1 feeds every sample mirrored with u negated: the same training as no
    augmentation on the mirrored images; hflip 0.5 mirrors about half of the samples."""
    images, targets = _data()
    flip = AugmentConfig(hflip=1.0, flip_reflect=(0, 127.5))
    cfg = TrainConfig(epochs=3, batch_size=8, lr=1e-3, device="cpu")
    cpu = torch.device("cpu")
    always = cfg.model_copy(update={"augment": flip})
    mirrored = mirror(images, flip.flip_reflect)
    on_mirrored = train_stacked(mirrored, targets, FOLDS, cfg, 3, None, False)
    flipped = train_stacked(images, targets, FOLDS, always, 3, None, False)
    plain = train_stacked(images, targets, FOLDS, cfg, 3, None, False)
    for a, b in zip(on_mirrored.parameters(), flipped.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(plain.conv_matrix(), flipped.conv_matrix(), atol=1e-4)
    half = cfg.model_copy(update={"augment": flip.model_copy(update={"hflip": 0.5})})
    halves = predict_stacked(train_stacked(images, targets, FOLDS, half, 3), images, FOLDS, cpu)
    for a, b in zip(halves, predict_stacked(plain, images, FOLDS, cpu), strict=True):
        assert not np.allclose(a, b, atol=1e-4)
    draw = FlipDraw(0, 0.5, 1000, cpu)
    rows = draw.rows(torch.arange(1000), torch.tensor(3), 0)
    assert abs((rows >= 1000).float().mean().item() - 0.5) < 0.05
    assert not torch.equal(rows, draw.rows(torch.arange(1000), torch.tensor(4), 0))
    assert torch.equal(rows % 1000, torch.arange(1000))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graphed_engine_equals_the_cpu_engine():
    images, targets = _data()
    cpu = TrainConfig(epochs=5, batch_size=8, lr=1e-3, device="cpu")
    gpu = cpu.model_copy(update={"device": "cuda"})
    on_cpu = train_folds_stacked(images, targets, FOLDS, cpu, 3, None, False, 1)
    on_gpu = train_folds_stacked(images, targets, FOLDS, gpu, 3, None, False, 1)
    for a, b in zip(on_cpu, on_gpu, strict=True):  # same dropout draws on both devices
        np.testing.assert_allclose(a, b, atol=1e-3)
