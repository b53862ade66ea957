"""Attention layers of the 2-D seeds: ECA (seed 000), SE, CBAM, AFF and PSA (seed 001).

timm's layers are used where their formula is the seed's (SE, CBAM, the ECA convolution);
AFF and PSA are not in timm, so they are written here after their papers and released code.
Every layer takes the channel count as its first argument, as timm's ``attn_layer`` expects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from timm.layers import EcaModule, SEModule
from timm.layers.cbam import CbamModule
from torch import nn


def eca_kernel_size(channels: int, gamma: float = 2.0, beta: float = 1.0) -> int:
    """Seed 000's ECA kernel: k = |log2(C) / gamma + beta / gamma|, to the nearest odd number.

    timm's EcaModule rounds the same way but never goes below 3; the seed's formula gives 1 for
    C < 8, so the size is computed here and handed to timm's layer.
    """
    t = abs(math.log2(channels) / gamma + beta / gamma)
    return max(1, 2 * math.floor((t - 1) / 2 + 0.5) + 1)  # ties round up, as ECA-Net's code


class ECA(EcaModule):
    """Efficient channel attention: global average pool, 1-D conv over channels, sigmoid, scale."""

    def __init__(self, channels: int, gamma: float = 2.0, beta: float = 1.0, **kwargs) -> None:
        super().__init__(kernel_size=eca_kernel_size(channels, gamma, beta), **kwargs)


class SE(SEModule):
    """Squeeze-and-excitation with reduction ``r`` (16 in seeds 001 and 002).

    ``exact=True`` uses C // r hidden units as SENet and EPSANet do; by default timm's rounding
    to a multiple of 8 is kept, so timm's SE-ResNeXt-50 (27.56 M parameters) is unchanged.
    """

    def __init__(self, channels: int, r: int = 16, exact: bool = False, **kwargs) -> None:
        hidden = max(1, channels // r) if exact else None
        super().__init__(channels, rd_ratio=1.0 / r, rd_channels=hidden, **kwargs)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The sigmoid channel weights (N, C, 1, 1) that ``forward`` multiplies x by."""
        pooled = x.mean((2, 3), keepdim=True)
        return self.gate(self.fc2(self.act(self.bn(self.fc1(pooled)))))


class CBAM(CbamModule):
    """Convolutional block attention (Woo et al., 2018): channel then 7x7 spatial attention."""

    def __init__(self, channels: int, r: int = 16, **kwargs) -> None:
        super().__init__(channels, rd_ratio=1.0 / r, **kwargs)


class _ContextBranch(nn.Sequential):
    """Point-wise bottleneck conv-BN-ReLU-conv-BN, optionally after global average pooling."""

    def __init__(self, channels: int, hidden: int, pool: bool) -> None:
        layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1)] if pool else []
        layers += [
            nn.Conv2d(channels, hidden, 1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.BatchNorm2d(channels),
        ]
        super().__init__(*layers)


class AFF(nn.Module):
    """Attentional feature fusion (Dai et al., WACV 2021) of two same-shape maps x and y.

    MS-CAM weights M = sigmoid(local(x + y) + global(x + y)) mix the inputs:
    out = 2 * (M * x + (1 - M) * y). The factor 2 is the authors' released code: at M = 0.5 it
    equals the plain residual sum x + y that AFF replaces. Not in timm, hence written here.
    """

    def __init__(self, channels: int, r: int = 4) -> None:
        super().__init__()
        hidden = max(1, channels // r)
        self.local_att = _ContextBranch(channels, hidden, pool=False)
        self.global_att = _ContextBranch(channels, hidden, pool=True)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xy = x + y
        weight = torch.sigmoid(self.local_att(xy) + self.global_att(xy))
        return 2 * (x * weight + y * (1 - weight))


class PSAModule(nn.Module):
    """Pyramid split attention (EPSANet, Zhang et al. 2022), seed 001's replacement for the
    bottleneck's 3x3 conv.

    S = len(kernels) branches, each a grouped k x k conv from all input channels to
    ``out_channels / S`` maps (kernels 3/5/7/9; groups 2/4/8/16 = 2^((k-1)/2) by the seed's
    formula, 1/4/8/16 in EPSANet's release). One SE layer (r = 16, shared by the branches as in
    EPSANet's code) scores every branch; a softmax across the branches turns the scores into
    weights per channel. Not in timm, hence written here. Module names and the concatenation
    order (last branch first) follow EPSANet's code so its released weights load unchanged.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        kernels: Sequence[int] = (3, 5, 7, 9),
        conv_groups: Sequence[int] = (2, 4, 8, 16),
        r: int = 16,
    ) -> None:
        super().__init__()
        if len(kernels) != len(conv_groups):
            raise ValueError(f"{len(kernels)} kernels but {len(conv_groups)} conv_groups")
        self.splits = len(kernels)
        if out_channels % self.splits:
            raise ValueError(f"{out_channels} channels do not split into {self.splits} groups")
        self.split_channels = out_channels // self.splits
        for i, (k, g) in enumerate(zip(kernels, conv_groups, strict=True), start=1):
            conv = nn.Conv2d(
                in_channels, self.split_channels, k, stride, k // 2, groups=g, bias=False
            )
            self.add_module(f"conv_{i}", conv)
        self.se = SE(self.split_channels, r=r, exact=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = torch.stack([getattr(self, f"conv_{i}")(x) for i in range(1, self.splits + 1)], 1)
        batch, splits, channels, height, width = feats.shape
        scores = self.se.weights(feats.flatten(0, 1))  # every branch through the shared SE
        weights = torch.softmax(scores.view(batch, splits, channels, 1, 1), dim=1)
        return (feats * weights).flip(1).reshape(batch, splits * channels, height, width)
