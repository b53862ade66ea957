"""Multi-scale 3D-ResNet-50 with attentional feature fusion and a multi-output head (seed S4).

Seed S4 (Jin, He, Li and Yang, AIMS) is known only by its abstract: a deep 3D-ResNet-50
skeleton on optical-flow maps, multi-scale convolution modules "of varying sizes to integrate
both global and local information", an "attention mechanism feature fusion module" for
context, and "a discriminative network structure with multiple output channels". Everything
below that sentence level is our design; the reasons are given next to each part and in
docs/models3d.md.

Input: (B, 3, T, H, W) flow clips, channels u, v and optical strain (default 16 x 112 x 112,
the customary 3D-ResNet input).

1. Skeleton: the 3D-ResNet-50 of Hara et al. (CVPR 2018): bottlenecks (1x1x1, 3x3x3, 1x1x1,
   expansion 4) in stages of 3, 4, 6, 3 blocks with widths 64, 128, 256, 512 (2048 output
   channels), stride 2 in all three axes at the first block of stages 2-4.
2. Multi-scale stem (global and local): three parallel convolutions with temporal kernel 3
   and spatial kernels 3, 5 and 7, stride (1, 2, 2), concatenated, then batch norm and ReLU and
   a 3x3x3 max pool with stride (1, 2, 2). Flow maps carry motion of very different spatial
   extent (an eyelid twitch is a few pixels, a brow raise spans the forehead), and the stem is
   the one place where large kernels are cheap (3 input channels). Time is not strided in the
   stem: micro-expressions last few frames.
3. Multi-scale bottleneck (``MultiScaleConv3d``): the middle 3x3x3 conv of every bottleneck is
   split into ``len(dilations)`` parallel 3x3x3 branches with spatial dilations 1, 2, 3, 4
   (receptive fields 3, 5, 7, 9 pixels), each producing a quarter of the channels, then
   concatenated. Same weights and FLOPs as the plain 3x3x3 conv; dilation instead of real
   5x5x5 / 7x7x7 kernels because those would cost 5-13x more in 3-D. The time axis keeps
   kernel 3 and dilation 1: at stage 3-4 only 2 or 1 frames remain.
4. Attentional feature fusion (``AFF``, Dai et al., WACV 2021): the mid-level stage-3 map
   (finer, more local) is projected by a strided 1x1x1 conv to stage 4's shape and fused with
   the stage-4 map (coarser, more context) as Z = M(X + Y) * X + (1 - M(X + Y)) * Y, where the
   multi-scale channel attention M adds a global (pooled) and a local (per-position) bottleneck
   MLP and applies a sigmoid. The network thus weighs, per channel and position, detail
   against context instead of simply adding them.
5. Multi-output discriminative head: three classifiers (dropout + linear) on the pooled
   stage-3, stage-4 and fused features. In training the model returns their logits stacked as
   (B, 3, classes) and the ``multi_head_ce`` loss adds the heads' cross-entropies (deep
   supervision: the small micro-expression sets give the middle stages a direct gradient). In
   evaluation it returns one fused (B, classes) output: the log of the heads' mean softmax
   probability, so ``softmax`` of it is exactly the averaged probability (a small ensemble).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from microexpr.models.registry import register_model
from microexpr.spec import InputSpec

# 16 u/v/strain maps of 112 x 112, normalised per clip (docs/models3d.md).
FLOW_CLIP_SPEC = InputSpec(
    kind="flow_clip", size=112, in_chans=3, scaling="flow_max", num_frames=16
)


def _bn_relu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm3d(channels), nn.ReLU(inplace=True)]


class MultiScaleStem(nn.Module):
    """Parallel (3, k, k) convolutions for k in ``kernels``, concatenated (stride (1, 2, 2))."""

    def __init__(self, in_chans: int, out_chans: int, kernels: Sequence[int] = (3, 5, 7)):
        super().__init__()
        splits = _split(out_chans, len(kernels))
        self.branches = nn.ModuleList(
            nn.Conv3d(
                in_chans, c, (3, k, k), stride=(1, 2, 2), padding=(1, k // 2, k // 2), bias=False
            )
            for c, k in zip(splits, kernels, strict=True)
        )
        self.post = nn.Sequential(
            *_bn_relu(out_chans), nn.MaxPool3d(3, stride=(1, 2, 2), padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(torch.cat([branch(x) for branch in self.branches], dim=1))


def _split(channels: int, parts: int) -> list[int]:
    """``channels`` shared as evenly as possible among ``parts`` branches."""
    return [channels // parts + (i < channels % parts) for i in range(parts)]


class MultiScaleConv3d(nn.Module):
    """3x3x3 branches with spatial dilations ``dilations``, each giving a share of the output
    channels, concatenated: receptive fields 3, 5, 7, 9 px at the cost of one 3x3x3 conv."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        stride: int = 1,
        dilations: Sequence[int] = (1, 2, 3, 4),
    ):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv3d(
                in_chans, c, 3, stride=stride, padding=(1, d, d), dilation=(1, d, d), bias=False
            )
            for c, d in zip(_split(out_chans, len(dilations)), dilations, strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class Bottleneck3d(nn.Module):
    """ResNet bottleneck (1x1x1, multi-scale 3x3x3, 1x1x1; expansion 4) in 3-D."""

    expansion = 4

    def __init__(
        self, in_chans: int, width: int, stride: int = 1, dilations: Sequence[int] = (1, 2, 3, 4)
    ):
        super().__init__()
        out = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv3d(in_chans, width, 1, bias=False),
            *_bn_relu(width),
            MultiScaleConv3d(width, width, stride, dilations),
            *_bn_relu(width),
            nn.Conv3d(width, out, 1, bias=False),
            nn.BatchNorm3d(out),
        )
        self.shortcut = (
            nn.Sequential(
                nn.Conv3d(in_chans, out, 1, stride=stride, bias=False), nn.BatchNorm3d(out)
            )
            if stride != 1 or in_chans != out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x), inplace=True)


class MSCAM3d(nn.Module):
    """Multi-scale channel attention of AFF: global (pooled) plus local (per-position)
    bottleneck MLPs of 1x1x1 convs, summed, sigmoid."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        inner = max(channels // reduction, 1)

        def mlp() -> nn.Sequential:
            return nn.Sequential(
                nn.Conv3d(channels, inner, 1, bias=False),
                *_bn_relu(inner),
                nn.Conv3d(inner, channels, 1, bias=False),
                nn.BatchNorm3d(channels),
            )

        self.local_mlp = mlp()
        # The global branch sees one pooled vector per clip: batch norm over those fails at a
        # training batch of 1 and is noisy on the small batches clip models train with, so this
        # branch uses biases instead.
        self.global_mlp = nn.Sequential(
            nn.AdaptiveAvgPool3d(1),
            nn.Conv3d(channels, inner, 1),
            nn.ReLU(inplace=True),
            nn.Conv3d(inner, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.local_mlp(x) + self.global_mlp(x))


class AFF3d(nn.Module):
    """Attentional feature fusion: Z = M(X + Y) * X + (1 - M(X + Y)) * Y."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.attention = MSCAM3d(channels, reduction)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        weight = self.attention(x + y)
        return weight * x + (1 - weight) * y


class MSResNet3d(nn.Module):
    """Multi-scale 3D-ResNet with AFF fusion of stages 3 and 4 and three heads (see module
    docstring). ``layers`` / ``widths`` / ``stem_width`` shrink it for test-scale runs;
    ``num_frames`` / ``input_size`` are only recorded (the pooling is adaptive)."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        layers: Sequence[int] = (3, 4, 6, 3),
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 64,
        stem_kernels: Sequence[int] = (3, 5, 7),
        dilations: Sequence[int] = (1, 2, 3, 4),
        reduction: int = 4,
        drop_rate: float = 0.5,
        num_frames: int = 16,
        input_size: int = 112,
    ):
        super().__init__()
        self.input_shape = (in_chans, num_frames, input_size, input_size)
        self.stem = MultiScaleStem(in_chans, stem_width, stem_kernels)
        stages, cin = [], stem_width
        for i, (depth, width) in enumerate(zip(layers, widths, strict=True)):
            blocks = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(Bottleneck3d(cin, width, stride, dilations))
                cin = width * Bottleneck3d.expansion
            stages.append(nn.Sequential(*blocks))
        self.stage1, self.stage2, self.stage3, self.stage4 = stages
        mid, top = widths[2] * Bottleneck3d.expansion, cin
        self.lateral = nn.Sequential(
            nn.Conv3d(mid, top, 1, stride=2, bias=False), nn.BatchNorm3d(top)
        )
        self.fuse = AFF3d(top, reduction)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Dropout(drop_rate), nn.Linear(c, num_classes)) for c in (mid, top, top)
        )
        self.num_features = top

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.stage1(self.stem(x)))
        mid = self.stage3(x)
        top = self.stage4(mid)
        fused = self.fuse(self.lateral(mid), top)
        logits = torch.stack(
            [
                head(torch.flatten(self.pool(f), 1))
                for head, f in zip(self.heads, (mid, top, fused), strict=True)
            ],
            dim=1,
        )
        if self.training:
            return logits  # (B, heads, classes) for multi_head_ce
        return fuse_heads(logits)


def fuse_heads(logits: torch.Tensor) -> torch.Tensor:
    """(B, heads, classes) -> (B, classes) log of the heads' mean probability."""
    return torch.logsumexp(F.log_softmax(logits.float(), dim=2), dim=1) - math.log(logits.shape[1])


@register_model(FLOW_CLIP_SPEC)
def ms_resnet3d50(num_classes: int, in_chans: int = 3, **kwargs) -> MSResNet3d:
    """Seed S4's multi-scale 3D-ResNet-50 on u/v/strain flow clips (options: MSResNet3d's)."""
    return MSResNet3d(num_classes, in_chans, **kwargs)
