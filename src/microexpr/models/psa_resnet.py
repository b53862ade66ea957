"""Seed 001: PSA-ResNet50, its attention ablation (SE, CBAM, ECA, AFF) and its baselines.

All ResNet-50 variants are timm's ResNet (layout 3-4-6-3, 7x7 stem) with a different
bottleneck: PSA replaces the 3x3 conv (EPSANet's block), SE/CBAM/ECA re-weight the block's
output before the residual sum (timm's ``attn_layer`` slot, as SENet/CBAM/ECA-Net place them),
and AFF replaces the residual sum itself. Baselines VGG-16-BN and MobileNetV2 are timm's.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from timm.models.resnet import Bottleneck, ResNet
from torch import nn

from microexpr.models.attention import AFF, CBAM, ECA, SE, PSAModule
from microexpr.models.backbones import create_timm, with_features
from microexpr.models.registry import register_model
from microexpr.spec import InputSpec

# FER2013's 48 x 48 gray faces, 0..1 (seed S1).
FER_SPEC = InputSpec(kind="image", size=48, in_chans=1, scaling="unit")
# ImageNet-style 224 x 224 colour input (the baseline ResNet-50).
IMAGENET_SPEC = InputSpec(kind="apex_image", size=224, in_chans=3, scaling="imagenet")

SEED_GROUPS = (2, 4, 8, 16)  # the seed's G = 2^((k-1)/2) for kernels 3/5/7/9
EPSANET_GROUPS = (1, 4, 8, 16)  # EPSANet-50 (small) as released


class PSABottleneck(Bottleneck):
    """ResNet bottleneck whose 3x3 conv is a pyramid split attention module (EPSANet block)."""

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        kernels: Sequence[int] = (3, 5, 7, 9),
        conv_groups: Sequence[int] = SEED_GROUPS,
        **kwargs,
    ) -> None:
        super().__init__(inplanes, planes, stride, downsample, **kwargs)
        width = self.conv2.in_channels
        self.conv2 = PSAModule(width, width, stride, kernels, conv_groups)


class AFFBottleneck(Bottleneck):
    """ResNet bottleneck that fuses branch and shortcut by attentional feature fusion."""

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        aff_r: int = 4,
        **kwargs,
    ) -> None:
        super().__init__(inplanes, planes, stride, downsample, **kwargs)
        self.aff = AFF(planes * self.expansion, aff_r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.aa(self.act2(self.drop_block(self.bn2(self.conv2(x)))))
        x = self.bn3(self.conv3(x))
        if self.se is not None:
            x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x)
        return self.act3(self.aff(x, shortcut))


def _resnet50(
    num_classes: int,
    in_chans: int,
    return_features: bool,
    block: type[Bottleneck] = Bottleneck,
    block_args: dict | None = None,
    **kwargs,
) -> ResNet:
    model = ResNet(
        block=block,
        layers=(3, 4, 6, 3),
        num_classes=num_classes,
        in_chans=in_chans,
        block_args=block_args,
        **kwargs,
    )
    return with_features(model) if return_features else model


@register_model(FER_SPEC)
def psa_resnet50(
    num_classes: int,
    in_chans: int = 1,
    conv_groups: Sequence[int] = SEED_GROUPS,
    kernels: Sequence[int] = (3, 5, 7, 9),
    return_features: bool = False,
    **kwargs,
) -> ResNet:
    """PSA-ResNet50 (seed 001): 21.15 M parameters at 1000 classes with the seed's groups
    2/4/8/16, 22.56 M with ``conv_groups=(1, 4, 8, 16)`` (EPSANet-50 small as released)."""
    block_args = {"kernels": tuple(kernels), "conv_groups": tuple(conv_groups)}
    return _resnet50(num_classes, in_chans, return_features, PSABottleneck, block_args, **kwargs)


@register_model(FER_SPEC)
def se_resnet50(
    num_classes: int, in_chans: int = 1, r: int = 16, return_features: bool = False, **kwargs
) -> ResNet:
    """ResNet-50 + SE after each bottleneck (seed 001's SE ablation)."""
    block_args = {"attn_layer": partial(SE, r=r)}
    return _resnet50(num_classes, in_chans, return_features, block_args=block_args, **kwargs)


@register_model(FER_SPEC)
def cbam_resnet50(
    num_classes: int, in_chans: int = 1, r: int = 16, return_features: bool = False, **kwargs
) -> ResNet:
    """ResNet-50 + CBAM after each bottleneck (seed 001's CBAM ablation)."""
    block_args = {"attn_layer": partial(CBAM, r=r)}
    return _resnet50(num_classes, in_chans, return_features, block_args=block_args, **kwargs)


@register_model(FER_SPEC)
def eca_resnet50(
    num_classes: int, in_chans: int = 1, return_features: bool = False, **kwargs
) -> ResNet:
    """ResNet-50 + ECA (seed's kernel formula) after each bottleneck (seed 001's ECA ablation)."""
    return _resnet50(
        num_classes, in_chans, return_features, block_args={"attn_layer": ECA}, **kwargs
    )


@register_model(FER_SPEC)
def aff_resnet50(
    num_classes: int, in_chans: int = 1, r: int = 4, return_features: bool = False, **kwargs
) -> ResNet:
    """ResNet-50 whose residual sums are attentional feature fusions (seed 001's AFF ablation)."""
    return _resnet50(num_classes, in_chans, return_features, AFFBottleneck, {"aff_r": r}, **kwargs)


@register_model(IMAGENET_SPEC)
def resnet50(
    num_classes: int, in_chans: int = 3, return_features: bool = False, **kwargs
) -> ResNet:
    """Plain ResNet-50: the 'Basic' of seed 001's ablation and the ResNet baseline of seeds
    000 and 002."""
    return _resnet50(num_classes, in_chans, return_features, **kwargs)


@register_model(FER_SPEC)
def vgg16_bn(
    num_classes: int, in_chans: int = 1, return_features: bool = False, **kwargs
) -> nn.Module:
    """VGG-16 with batch norm (seed 001's VGGNet baseline; timm's, 7x7 conv head)."""
    return create_timm("vgg16_bn", num_classes, in_chans, return_features, **kwargs)


@register_model(FER_SPEC)
def mobilenetv2(
    num_classes: int, in_chans: int = 1, return_features: bool = False, **kwargs
) -> nn.Module:
    """MobileNetV2 width 1.0 (seed 001's MobileNetV2 baseline)."""
    return create_timm("mobilenetv2_100", num_classes, in_chans, return_features, **kwargs)
