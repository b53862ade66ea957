"""Training losses by name: cross-entropy, focal (seed 002), centre and island (seed 001).

A loss is called ``loss(logits, y)``, or ``loss(logits, features, y)`` when the model returns
``(logits, features)`` (option ``return_features``), which centre and island losses need.
Losses with learnable class centres carry ``lr``: the trainer gives their parameters that
learning rate (None = the model's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.nn import functional as F

from microexpr.registry import Registry

LOSSES: Registry[Callable[..., nn.Module]] = Registry("loss")
register_loss = LOSSES.register


def create_loss(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Loss module by name; every builder takes ``num_classes`` (centre-based losses need it)."""
    return LOSSES.get(name)(num_classes=num_classes, **kwargs)


@register_loss("cross_entropy")
def cross_entropy(
    num_classes: int, label_smoothing: float = 0.0, weight: Sequence[float] | None = None
) -> nn.Module:
    """``weight``: one per class (``train.class_weight: balanced`` fills it per fold)."""
    weights = None if weight is None else torch.tensor(weight, dtype=torch.float32)
    return nn.CrossEntropyLoss(weight=weights, label_smoothing=label_smoothing)


def balanced_class_weights(labels: Sequence[int], num_classes: int) -> list[float]:
    """scikit-learn's ``class_weight="balanced"``: n_samples / (n_classes * count of the
    class), so every class weighs the same in the loss. Refuses a class with no samples."""
    labels = np.asarray(labels)
    missing = sorted(set(range(num_classes)) - set(labels.tolist()))
    if missing:
        raise ValueError(
            f"train.class_weight balanced: class(es) {missing} have no training samples"
        )
    classes = np.arange(num_classes)
    return compute_class_weight("balanced", classes=classes, y=labels).tolist()


class MultiHeadCrossEntropy(nn.Module):
    """Sum of per-head cross-entropies for models with several classifier heads.

    Takes (B, heads, classes) logits (ms_resnet3d50 in training mode), or plain (B, classes)
    logits, which give ordinary cross-entropy (the fused output in evaluation mode).
    ``weights``: one weight per head (default 1 each).
    """

    def __init__(self, weights: Sequence[float] | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.weights = None if weights is None else tuple(float(w) for w in weights)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.dim() == 2:
            return F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)
        heads = logits.shape[1]
        weights = self.weights or (1.0,) * heads
        if len(weights) != heads:
            raise ValueError(f"multi_head_ce has {len(weights)} weights for {heads} heads")
        return sum(
            w * F.cross_entropy(logits[:, h], target, label_smoothing=self.label_smoothing)
            for h, w in enumerate(weights)
        )


@register_loss("multi_head_ce")
def multi_head_ce(
    num_classes: int, weights: Sequence[float] | None = None, label_smoothing: float = 0.0
) -> nn.Module:
    return MultiHeadCrossEntropy(weights, label_smoothing)


class FocalLoss(nn.Module):
    """Softmax focal loss (Lin et al., 2017): mean over the batch of
    -alpha[y] * (1 - p_y)^gamma * log p_y. Equals cross-entropy at gamma 0 without alpha.

    Written here because torchvision's ``sigmoid_focal_loss`` is the binary (sigmoid) form.
    """

    def __init__(self, gamma: float = 2.0, alpha: Sequence[float] | None = None) -> None:
        super().__init__()
        self.gamma = float(gamma)
        weights = None if alpha is None else torch.tensor(alpha, dtype=torch.float32)
        self.register_buffer("alpha", weights, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=1).gather(1, target[:, None]).squeeze(1)
        loss = -((1.0 - log_p.exp()) ** self.gamma) * log_p
        if self.alpha is not None:
            if len(self.alpha) != logits.shape[1]:
                raise ValueError(
                    f"focal alpha has {len(self.alpha)} weights, not {logits.shape[1]}"
                )
            loss = loss * self.alpha[target]
        return loss.mean()


@register_loss("focal")
def focal(num_classes: int, gamma: float = 2.0, alpha: Sequence[float] | None = None) -> nn.Module:
    return FocalLoss(gamma, alpha)


class CentreLoss(nn.Module):
    """Centre loss (Wen et al., 2016): half the mean squared distance of each feature to its
    class centre. The centres are parameters, learnt by gradient descent at their own lr."""

    def __init__(self, num_classes: int, feat_dim: int) -> None:
        super().__init__()
        self.centres = nn.Parameter(torch.randn(num_classes, feat_dim) * 0.01)

    def forward(self, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if features.shape[1] != self.centres.shape[1]:
            raise ValueError(
                f"the model gives {features.shape[1]}-d features but the centres are "
                f"{self.centres.shape[1]}-d: set the loss's feat_dim to {features.shape[1]}"
            )
        diff = features.float() - self.centres[target]
        return 0.5 * diff.pow(2).sum(dim=1).mean()


class IslandLoss(CentreLoss):
    """Island loss (Cai et al., 2018; seed 001, eq. 7): centre loss plus
    lambda1 * sum over ordered pairs of centres j != k of (cos(c_j, c_k) + 1),
    which pulls each feature to its centre and pushes the centres apart in angle."""

    def __init__(self, num_classes: int, feat_dim: int, lambda1: float = 1.0) -> None:
        super().__init__(num_classes, feat_dim)
        self.lambda1 = float(lambda1)

    def pair_term(self) -> torch.Tensor:
        unit = F.normalize(self.centres, dim=1)
        cosine = unit @ unit.T
        diagonal = torch.eye(len(unit), dtype=torch.bool, device=unit.device)
        # masked_fill, not boolean indexing: no host sync, so a CUDA graph can capture it
        return (cosine + 1.0).masked_fill(diagonal, 0.0).sum()

    def forward(self, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(features, target) + self.lambda1 * self.pair_term()


class JointLoss(nn.Module):
    """Classification loss on the logits + ``weight`` * a centre-based loss on the features
    (seed 001: softmax + island, weight 1). ``lr``: learning rate of the centres."""

    def __init__(
        self,
        classification: nn.Module,
        feature_loss: CentreLoss,
        weight: float = 1.0,
        lr: float | None = None,
    ) -> None:
        super().__init__()
        self.classification = classification
        self.feature_loss = feature_loss
        self.weight = float(weight)
        self.lr = lr

    def forward(self, logits: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        if len(rest) != 2:
            raise ValueError(
                "centre and island losses need the model's features: "
                "set model option return_features: true"
            )
        features, target = rest
        return self.classification(logits.float(), target) + self.weight * self.feature_loss(
            features, target
        )


@register_loss("centre")
def centre(
    num_classes: int, feat_dim: int, weight: float = 1.0, lr: float | None = None
) -> nn.Module:
    """Cross-entropy + weight * centre loss."""
    return JointLoss(nn.CrossEntropyLoss(), CentreLoss(num_classes, feat_dim), weight, lr)


@register_loss("island")
def island(
    num_classes: int,
    feat_dim: int,
    lambda1: float = 1.0,
    weight: float = 1.0,
    lr: float | None = None,
) -> nn.Module:
    """Seed 001's joint loss: cross-entropy + weight * island loss, centres at their own lr."""
    return JointLoss(nn.CrossEntropyLoss(), IslandLoss(num_classes, feat_dim, lambda1), weight, lr)
