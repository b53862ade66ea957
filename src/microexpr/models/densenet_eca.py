"""Seed 000: DenseNet with ECA channel attention at every dense block, and plain DenseNets.

Built on timm's DenseNet; an ECA layer (kernel from the seed's formula) is inserted into
``features`` in front of each dense block (``eca_position="before"``, the paper's section 3)
or behind it (``"after"``, its section 4 and figure 8), named ``eca1`` .. ``eca4``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

from timm.models.densenet import DenseBlock, DenseNet
from torch import nn

from microexpr.models.attention import ECA
from microexpr.models.backbones import create_timm
from microexpr.models.registry import register_model
from microexpr.spec import InputSpec

# Seed S0's 96 x 96 face (or mouth) crop, ImageNet mean/std.
FACE_SPEC = InputSpec(kind="apex_image", size=96, in_chans=3, scaling="imagenet")

EcaPosition = Literal["before", "after"]


def _block_channels(block: DenseBlock) -> tuple[int, int]:
    """(input, output) channels of a dense block."""
    layers = list(block.values())
    first = layers[0].norm1.num_features
    return first, first + len(layers) * layers[0].conv2.out_channels


def add_eca(model: DenseNet, position: EcaPosition = "after") -> DenseNet:
    """Insert an ECA layer before or after every dense block of a timm DenseNet."""
    if position not in ("before", "after"):
        raise ValueError(f"eca_position must be 'before' or 'after', not {position!r}")
    layers: list[tuple[str, nn.Module]] = []
    for name, module in model.features.named_children():
        if not isinstance(module, DenseBlock):
            layers.append((name, module))
            continue
        channels_in, channels_out = _block_channels(module)
        eca_name = name.replace("denseblock", "eca")
        if position == "before":
            layers += [(eca_name, ECA(channels_in)), (name, module)]
        else:
            layers += [(name, module), (eca_name, ECA(channels_out))]
    model.features = nn.Sequential(OrderedDict(layers))
    return model


def _densenet(
    variant: str,
    num_classes: int,
    in_chans: int,
    eca_position: EcaPosition | None,
    return_features: bool,
    **kwargs,
) -> nn.Module:
    model = create_timm(variant, num_classes, in_chans, return_features, **kwargs)
    return model if eca_position is None else add_eca(model, eca_position)


@register_model(FACE_SPEC)
def densenet201_eca(
    num_classes: int,
    in_chans: int = 3,
    eca_position: EcaPosition = "after",
    return_features: bool = False,
    **kwargs,
) -> nn.Module:
    """DenseNet-201 + ECA at every dense block (seed 000's model)."""
    return _densenet("densenet201", num_classes, in_chans, eca_position, return_features, **kwargs)


@register_model(FACE_SPEC)
def densenet121_eca(
    num_classes: int,
    in_chans: int = 3,
    eca_position: EcaPosition = "after",
    return_features: bool = False,
    **kwargs,
) -> nn.Module:
    """DenseNet-121 + ECA at every dense block (a lighter variant of seed 000's model)."""
    return _densenet("densenet121", num_classes, in_chans, eca_position, return_features, **kwargs)


@register_model(FACE_SPEC)
def densenet201(
    num_classes: int, in_chans: int = 3, return_features: bool = False, **kwargs
) -> nn.Module:
    """Plain DenseNet-201 (seed 000's DenseNet baseline)."""
    return _densenet("densenet201", num_classes, in_chans, None, return_features, **kwargs)


@register_model(FACE_SPEC)
def densenet121(
    num_classes: int, in_chans: int = 3, return_features: bool = False, **kwargs
) -> nn.Module:
    """Plain DenseNet-121 (seed 001's DenseNet baseline)."""
    return _densenet("densenet121", num_classes, in_chans, None, return_features, **kwargs)
