"""RCN: recurrent convolutional networks with parameter-free modules (RCN-A, -S, -W, -P).

Source: Xia, Peng, Khor, Feng and Zhao, "Revealing the invisible with model and data
shrinking for composite-database micro-expression recognition", IEEE Transactions on Image
Processing 29 (2020), and its public code (github.com/xiazhaoqiang/
ParameterFreeRCNs-MicroExpressionRec, ``MeNets.py``). The paper's point is that a shallow
network on low-resolution flow images degrades least across databases: one 5x5 stem and
one recurrent block, then one of three modules that add no learnable parameters:

* RCN-A, attention unit: a class-activation map built from the classifier's own weights
  rescales the pooled features;
* RCN-S, shortcut connection: the recurrent block becomes a dense block whose one 3x3
  convolution is applied three times to running sums of its own outputs;
* RCN-W, wide expansion: the stem becomes three parallel stride-3 streams (3x3 with
  dilation 1, 2 and 3) of half, a quarter and a quarter of the maps;
* RCN-P, the combination the paper's architecture search found: two stride-1 streams
  (dilation 1 and 3) with max-pooling, the dense block and the attention unit.

Layer order, initialisation (Kaiming fan-out for convolutions, N(0, 0.01) for the
classifier) and dropout (0.5 after the stem and after each block) follow the public code.
Two departures, neither of which changes what the network computes: the dense block's third
convolution, which the public code creates but never calls, is left out (so the public
count is 9,312 parameters higher at 32 maps); and the attention map's max-normalisation
divides by ``max + 1e-12``, so a flat map gives zeros instead of NaN.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from microexpr.models.registry import register_model
from microexpr.spec import InputSpec

# The public loop reads each flow PNG as stored (ToTensor: RGB, 0..1) without resizing;
# the composite's flow images are 28 x 28.
RCN_SPEC = InputSpec(kind="flow_image", size=28, in_chans=3, scaling="unit")


def _conv_bn_relu(inputs: int, maps: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, maps, kernel_size=kernel, padding=kernel // 2),
        nn.BatchNorm2d(maps),
        nn.ReLU(inplace=True),
    )


def _downsample() -> nn.Sequential:
    return nn.Sequential(nn.MaxPool2d(kernel_size=2, stride=2), nn.Dropout())


class RecurrentBlock(nn.Module):
    """y = ff(x); y = rr(x + y); y = rr(x + y): one 3x3 convolution (with its batch norm)
    unrolled over two recurrent steps, then max-pool 2 and dropout."""

    def __init__(self, maps: int):
        super().__init__()
        self.ffconv = _conv_bn_relu(maps, maps, 1)
        self.rrconv = _conv_bn_relu(maps, maps, 3)
        self.downsample = _downsample()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ffconv(x)
        y = self.rrconv(x + y)
        y = self.rrconv(x + y)
        return self.downsample(y)


class DenseBlock(nn.Module):
    """The shortcut module: y = c1(x), z = c2(x + y), e = c2(x + y + z), out = c2(x + y + z
    + e), one shared 3x3 convolution over running sums, then max-pool 2 and dropout."""

    def __init__(self, maps: int):
        super().__init__()
        self.conv1 = _conv_bn_relu(maps, maps, 1)
        self.conv2 = _conv_bn_relu(maps, maps, 3)
        self.downsample = _downsample()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x)
        z = self.conv2(x + y)
        e = self.conv2(x + y + z)
        return self.downsample(self.conv2(x + y + z + e))


def class_attention(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The attention unit: for each class, the classifier's weights (reshaped to the pooled
    feature map) times the features, averaged over channels and min-max normalised per
    sample; the mean over classes, (N, 1, P, P). No parameters of its own."""
    n, channels, height, width = features.shape
    maps = (weight.view(-1, channels, height, width)[None] * features[:, None]).mean(2)
    maps = maps - maps.amin((2, 3), keepdim=True)
    maps = maps / (maps.amax((2, 3), keepdim=True) + 1e-12)
    return maps.mean(1, keepdim=True)


class RCN(nn.Module):
    """One RCN variant (``variant``: ``a``, ``s``, ``w`` or ``p``); ``maps`` feature maps,
    features average-pooled to ``pool_size`` x ``pool_size`` before the classifier."""

    def __init__(
        self,
        num_classes: int = 3,
        in_chans: int = 3,
        variant: str = "a",
        maps: int = 32,
        pool_size: int = 5,
    ):
        super().__init__()
        if variant not in ("a", "s", "w", "p"):
            raise ValueError(f"RCN variant {variant!r}: choose a, s, w or p")
        self.variant = variant
        self.pool_size = pool_size
        half = maps // 2
        if variant in ("a", "s"):
            self.streams = nn.ModuleList(
                [
                    nn.Sequential(
                        nn.Conv2d(in_chans, maps, kernel_size=5),
                        nn.BatchNorm2d(maps),
                        nn.ReLU(inplace=True),
                        nn.MaxPool2d(kernel_size=2, stride=2),
                        nn.Dropout(),
                    )
                ]
            )
        elif variant == "w":  # stride-3 streams, ReLU before batch norm as published
            self.streams = nn.ModuleList(
                nn.Sequential(
                    nn.Conv2d(in_chans, width, 3, stride=3, padding=dilation, dilation=dilation),
                    nn.ReLU(inplace=True),
                    nn.BatchNorm2d(width),
                    nn.Dropout(),
                )
                for width, dilation in ((half, 1), (half // 2, 2), (maps - half - half // 2, 3))
            )
        else:
            self.streams = nn.ModuleList(
                nn.Sequential(
                    nn.Conv2d(in_chans, width, 3, padding=dilation, dilation=dilation),
                    nn.ReLU(inplace=True),
                    nn.BatchNorm2d(width),
                    nn.MaxPool2d(kernel_size=3, stride=3, padding=1),
                    nn.Dropout(),
                )
                for width, dilation in ((half, 1), (maps - half, 3))
            )
        self.block = DenseBlock(maps) if variant in ("s", "p") else RecurrentBlock(maps)
        self.classifier = nn.Linear(pool_size * pool_size * maps, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([stream(x) for stream in self.streams], dim=1)
        attention = None
        if self.variant in ("a", "p"):  # from the stem's maps, pooled to the classifier's grid
            pooled = F.adaptive_avg_pool2d(x, self.pool_size)
            attention = class_attention(pooled, self.classifier.weight)
        x = F.adaptive_avg_pool2d(self.block(x), self.pool_size)
        if attention is not None:
            x = x * attention
        return self.classifier(torch.flatten(x, 1))


@register_model(RCN_SPEC, classifier="classifier")
def rcn_a(num_classes: int = 3, in_chans: int = 3, **kwargs) -> RCN:
    """RCN-A: stem, recurrent block, attention unit."""
    return RCN(num_classes=num_classes, in_chans=in_chans, variant="a", **kwargs)


@register_model(RCN_SPEC, classifier="classifier")
def rcn_s(num_classes: int = 3, in_chans: int = 3, **kwargs) -> RCN:
    """RCN-S: stem, dense (shortcut) block."""
    return RCN(num_classes=num_classes, in_chans=in_chans, variant="s", **kwargs)


@register_model(RCN_SPEC, classifier="classifier")
def rcn_w(num_classes: int = 3, in_chans: int = 3, **kwargs) -> RCN:
    """RCN-W: three dilated stride-3 streams, recurrent block."""
    return RCN(num_classes=num_classes, in_chans=in_chans, variant="w", **kwargs)


@register_model(RCN_SPEC, classifier="classifier")
def rcn_p(num_classes: int = 3, in_chans: int = 3, **kwargs) -> RCN:
    """RCN-P: two dilated streams, dense block, attention unit (the searched combination)."""
    return RCN(num_classes=num_classes, in_chans=in_chans, variant="p", **kwargs)
