"""SSSNet: the shallow single-stream network on one optical-flow image.

Source: Varanka, Peng and Zhao, "Micro-expression recognition with noisy labels", IS&T
Electronic Imaging 2021 (HVEI-157), as released in the MEB toolkit
(github.com/tvaranka/meb, ``meb/models/me_networks.py``), whose composite benchmark gives
SSSNet UF1 0.7394 with fixed epochs (Varanka et al., "Data leakage and evaluation issues
in micro-expression analysis", IEEE TAC 2023). Not to be confused with the SSSN of Khor et
al. (ICIP 2019, the single-stream half of DSSN), a truncated ImageNet AlexNet at 227x227
that needs pretrained weights.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from microexpr.models.registry import register_model
from microexpr.spec import InputSpec

# MEB resizes the u/v/strain flow to 64 x 64; the first linear layer is sized for it.
SSSNET_SPEC = InputSpec(kind="flow_image", size=64, in_chans=3, scaling="unit")


def _conv_side(size: int) -> int:
    """Side of conv2's pooled maps: conv 5x5, max-pool 3/3, conv 3x3, max-pool 2/2."""
    return ((size - 4) // 3 - 2) // 2


class SSSNet(nn.Module):
    """Two conv blocks (conv, ReLU, max-pool, batch norm, channel dropout) and two linear
    layers: conv 5x5 (32 maps) + pool 3, conv 3x3 (64) + pool 2, linear 256, classes.

    At 64 x 64 the second block gives 64 x 9 x 9 features (1.35 M parameters in all, 1.33 M
    of them in the first linear layer). ``input_size`` sizes that layer for other inputs.
    """

    def __init__(
        self,
        num_classes: int = 3,
        in_chans: int = 3,
        input_size: int = 64,
        widths: tuple[int, int, int] = (32, 64, 256),
        drop_rate: float = 0.5,
    ):
        super().__init__()
        first, second, hidden = widths
        side = _conv_side(input_size)
        if side < 1:
            raise ValueError(f"SSSNet needs inputs of at least 16 pixels, got {input_size}")
        self.conv1 = nn.Conv2d(in_chans, first, kernel_size=5)
        self.pool1 = nn.MaxPool2d(kernel_size=3, stride=3)
        self.bn1 = nn.BatchNorm2d(first)
        self.drop1 = nn.Dropout2d(drop_rate)
        self.conv2 = nn.Conv2d(first, second, kernel_size=3)
        self.pool2 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.bn2 = nn.BatchNorm2d(second)
        self.drop2 = nn.Dropout2d(drop_rate)
        self.fc1 = nn.Linear(side * side * second, hidden)
        self.drop3 = nn.Dropout(drop_rate)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.bn1(self.pool1(F.relu(self.conv1(x)))))
        x = self.drop2(self.bn2(self.pool2(F.relu(self.conv2(x)))))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc(self.drop3(x))


@register_model(SSSNET_SPEC, first_conv="conv1", classifier="fc")
def sssnet(num_classes: int = 3, in_chans: int = 3, **kwargs) -> SSSNet:
    return SSSNet(num_classes=num_classes, in_chans=in_chans, **kwargs)
