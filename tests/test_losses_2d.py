"""Focal, centre and island losses (seeds 001 and 002) and the centres' own learning rate."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from microexpr.config import TrainConfig
from microexpr.losses import CentreLoss, FocalLoss, IslandLoss, create_loss
from microexpr.train.trainer import param_groups


def test_focal_equals_cross_entropy_at_gamma_zero():
    logits, target = torch.randn(16, 5), torch.randint(0, 5, (16,))
    assert torch.allclose(FocalLoss(gamma=0.0)(logits, target), F.cross_entropy(logits, target))
    ones = FocalLoss(gamma=0.0, alpha=[1.0] * 5)
    assert torch.allclose(ones(logits, target), F.cross_entropy(logits, target))


def test_focal_down_weights_easy_samples_and_applies_alpha():
    logits = torch.tensor([[4.0, 0.0], [0.0, 0.5]])
    target = torch.tensor([0, 1])
    per_sample_ce = F.cross_entropy(logits, target, reduction="none")
    focal = FocalLoss(gamma=2.0)(logits, target)
    assert focal < per_sample_ce.mean()
    p = torch.softmax(logits, 1)[torch.arange(2), target]
    expected = (-((1 - p) ** 2) * torch.log(p) * torch.tensor([0.25, 0.75])).mean()
    assert torch.allclose(FocalLoss(2.0, alpha=[0.25, 0.75])(logits, target), expected)
    with pytest.raises(ValueError, match="3 weights"):
        FocalLoss(2.0, alpha=[1, 1, 1])(logits, target)


def test_island_loss_on_hand_built_centres():
    loss = IslandLoss(num_classes=3, feat_dim=2, lambda1=0.5)
    with torch.no_grad():
        loss.centres.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]]))
    # ordered pairs: cos(0,1) = 0, cos(0,2) = -1, cos(1,2) = 0, each twice
    assert float(loss.pair_term().detach()) == pytest.approx(2 * ((0 + 1) + (-1 + 1) + (0 + 1)))
    features = torch.tensor([[1.0, 0.0], [0.0, 3.0]])  # on centre 0; 1 away from centre 1
    target = torch.tensor([0, 1])
    centre_term = 0.5 * (0.0 + 1.0) / 2  # half the mean squared distance
    assert float(loss(features, target).detach()) == pytest.approx(centre_term + 0.5 * 4.0)
    assert float(CentreLoss.forward(loss, features, target).detach()) == pytest.approx(centre_term)


def test_island_gradient_pushes_centres_apart():
    loss = IslandLoss(num_classes=3, feat_dim=4, lambda1=1.0)
    with torch.no_grad():
        loss.centres.copy_(torch.tensor([[1.0, 0.1, 0, 0], [1.0, -0.1, 0, 0], [0.9, 0, 0.2, 0]]))
    optimiser = torch.optim.SGD(loss.parameters(), lr=0.05)

    def mean_cosine() -> float:
        unit = F.normalize(loss.centres.detach(), dim=1)
        return float((unit @ unit.T)[~torch.eye(3, dtype=torch.bool)].mean())

    before = mean_cosine()
    for _ in range(20):
        optimiser.zero_grad()
        loss.pair_term().backward()
        optimiser.step()
    assert mean_cosine() < before - 0.1


def test_joint_island_loss_needs_features_and_matching_width():
    joint = create_loss("island", num_classes=3, feat_dim=8, lambda1=1.0, lr=0.5)
    logits, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    total = joint(logits, torch.randn(4, 8), target)
    assert total > F.cross_entropy(logits, target)
    with pytest.raises(ValueError, match="return_features"):
        joint(logits, target)
    with pytest.raises(ValueError, match="feat_dim to 6"):
        joint(logits, torch.randn(4, 6), target)


def test_centres_get_their_own_learning_rate():
    model = torch.nn.Linear(8, 3)
    cfg = TrainConfig(lr=1e-3)
    groups = param_groups(model, create_loss("centre", num_classes=3, feat_dim=8, lr=0.5), cfg)
    assert [g.get("lr") for g in groups] == [None, 0.5]  # the model's group takes cfg.lr
    assert groups[1]["params"][0].shape == (3, 8)
    same = param_groups(model, create_loss("island", num_classes=3, feat_dim=8), cfg)
    assert same[1]["lr"] == 1e-3
    assert len(param_groups(model, create_loss("focal", num_classes=3), cfg)) == 1
