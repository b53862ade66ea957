"""Seed 002: SE-ResNeXt-50 (32x4d, SE r = 16) on the apex frame, and plain ResNeXt-50.

Both are timm's ResNet with cardinality 32 and base width 4; SE sits after each bottleneck's
last BN, before the residual sum (figure 5 of the seed). ResNet-50, the third model of the
seed's ablation, is registered in :mod:`microexpr.models.psa_resnet`.
"""

from __future__ import annotations

from timm.models.resnet import ResNet

from microexpr.models.backbones import create_timm
from microexpr.models.registry import register_model
from microexpr.spec import InputSpec

# Seed S2's aligned 224 x 224 apex face, ImageNet mean/std.
APEX_SPEC = InputSpec(kind="apex_image", size=224, in_chans=3, scaling="imagenet")


@register_model(APEX_SPEC)
def se_resnext50_32x4d(
    num_classes: int, in_chans: int = 3, return_features: bool = False, **kwargs
) -> ResNet:
    """SE-ResNeXt-50 32x4d, SE reduction 16 (seed 002's model; 27.56 M params at 1000 classes)."""
    return create_timm("seresnext50_32x4d", num_classes, in_chans, return_features, **kwargs)


@register_model(APEX_SPEC)
def resnext50_32x4d(
    num_classes: int, in_chans: int = 3, return_features: bool = False, **kwargs
) -> ResNet:
    """ResNeXt-50 32x4d without SE (seed 002's ablation)."""
    return create_timm("resnext50_32x4d", num_classes, in_chans, return_features, **kwargs)
