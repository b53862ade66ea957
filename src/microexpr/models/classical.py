"""Classical baseline: histograms of oriented optical flow (HOOF) and a linear SVM.

HOOF: Chaudhry, Ravichandran, Hager and Vidal, "Histograms of oriented optical flow and
Binet-Cauchy kernels on nonlinear dynamical systems for the recognition of human actions",
CVPR 2009: flow vectors binned by orientation, each weighted by its magnitude, the
histogram normalised to sum 1. Used per face block in micro-expression work since (e.g.
the HOOF and MDMO baselines of MEGC and MEB). Here it is computed on the 28 x 28 flow
images (channels ``spec.FLOW_IMAGE_CHANNELS``) per block of a ``grid`` x ``grid``
partition, plus each block's mean strain.

The composite's flow images are min-max normalised per channel, so zero motion is not at a
known grey level: u and v are taken relative to their per-image median (most of the face
does not move). The classifier is scikit-learn's LinearSVC (one-vs-rest) on standardised
features, fitted by ``train/classical.py``; its scaler and hyperplanes are kept here as
buffers, so the fitted model is an ``nn.Module`` whose output is the SVM's decision values
(the harness's softmax of them keeps the SVM's own argmax) and a bundle saves it as
safetensors like any network.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from microexpr.models.registry import register_model
from microexpr.spec import FLOW_IMAGE_CHANNELS, InputSpec

# The flow image as stored: raw 0..255, channels strain, v, u (OpenCV's B, G, R).
U, V, STRAIN = (FLOW_IMAGE_CHANNELS.index(name) for name in ("u", "v", "strain"))
HOOF_SPEC = InputSpec(kind="flow_image", size=28, in_chans=3, scaling="raw")


def hoof_features(x: torch.Tensor, grid: int = 7, bins: int = 8) -> torch.Tensor:
    """(N, 3, H, W) raw flow images (channels :data:`FLOW_IMAGE_CHANNELS`) ->
    (N, grid * grid * (bins + 1)): per block, the magnitude-weighted orientation histogram
    (all blocks together sum to 1 per sample), then the block's mean strain in 0..1."""
    n, _, h, w = x.shape
    if h % grid or w % grid:
        raise ValueError(f"a {h} x {w} image cannot be cut into a {grid} x {grid} grid")
    u = x[:, U] - x[:, U].flatten(1).median(dim=1).values[:, None, None]
    v = x[:, V] - x[:, V].flatten(1).median(dim=1).values[:, None, None]
    magnitude = torch.hypot(u, v)
    angle = torch.atan2(v, u) % (2 * math.pi)
    index = (angle / (2 * math.pi) * bins).long().clamp(max=bins - 1)
    rows = torch.arange(h, device=x.device) // (h // grid)
    cols = torch.arange(w, device=x.device) // (w // grid)
    block = (rows[:, None] * grid + cols[None, :]).expand(n, h, w)
    cell = (block * bins + index).flatten(1)
    hist = torch.zeros(n, grid * grid * bins, device=x.device, dtype=x.dtype)
    hist.scatter_add_(1, cell, magnitude.flatten(1))
    hist = hist / hist.sum(1, keepdim=True).clamp(min=1e-12)
    block_side = (h // grid, w // grid)
    strain = nn.functional.avg_pool2d(x[:, STRAIN : STRAIN + 1] / 255.0, block_side).flatten(1)
    return torch.cat([hist, strain], dim=1)


class ClassicalModel(nn.Module):
    """A fixed feature map followed by a linear classifier on standardised features, whose
    parameters an sklearn estimator fits (``train/classical.py``) and ``set_linear`` stores.

    ``estimator_options`` are the estimator's settings (the config's model options)."""

    def __init__(self, num_features: int, num_classes: int, estimator_options: dict):
        super().__init__()
        self.estimator_options = dict(estimator_options)
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("scale", torch.ones(num_features))
        self.register_buffer("weight", torch.zeros(num_classes, num_features))
        self.register_buffer("bias", torch.zeros(num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def set_linear(self, mean, scale, weight, bias) -> None:
        """Store a fitted scaler (mean, scale) and hyperplanes (weight, bias)."""
        for name, value in (("mean", mean), ("scale", scale), ("weight", weight), ("bias", bias)):
            buffer = getattr(self, name)
            buffer.copy_(torch.as_tensor(value, dtype=buffer.dtype).reshape(buffer.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (self.features(x.float()) - self.mean) / self.scale
        return z @ self.weight.T + self.bias


class HoofSVM(ClassicalModel):
    """HOOF (``grid`` x ``grid`` blocks, ``bins`` orientations) + block strain, linear SVM
    with regularisation ``C`` and ``class_weight`` (``balanced``: each class weighted by the
    inverse of its training frequency, as UF1 and UAR weigh classes equally)."""

    def __init__(
        self,
        num_classes: int = 3,
        in_chans: int = 3,
        grid: int = 7,
        bins: int = 8,
        C: float = 1.0,  # noqa: N803  (scikit-learn's name)
        class_weight: str | None = "balanced",
    ):
        if in_chans != 3:
            raise ValueError("HOOF reads u, v and strain: in_chans must be 3")
        options = {"C": C, "class_weight": class_weight}
        super().__init__(grid * grid * (bins + 1), num_classes, options)
        self.grid, self.bins = grid, bins

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return hoof_features(x, self.grid, self.bins)


@register_model(HOOF_SPEC)
def hoof_svm(num_classes: int = 3, in_chans: int = 3, **kwargs) -> HoofSVM:
    return HoofSVM(num_classes=num_classes, in_chans=in_chans, **kwargs)
