"""Shallow networks on a single optical-flow image (u, v, strain): STSTNet and Off-ApexNet.

Both take the 28x28 flow images that public MER code computes between onset and apex.
"""

from __future__ import annotations

import torch
from torch import nn

from microexpr.models.registry import register_model


class STSTNet(nn.Module):
    """STSTNet (Liong et al., FG 2019): three parallel 3x3 conv streams of 3, 5 and 8 maps.

    Module and parameter names (conv1..3, bn1..3, fc) and the layer order (conv, ReLU, BN,
    max-pool, dropout) follow the published PyTorch code, so its per-subject weights load
    with ``load_state_dict`` unchanged. The published recipe feeds raw 0..255 BGR pixels.
    """

    def __init__(self, num_classes: int = 3, in_chans: int = 3, drop_rate: float = 0.5):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 3, kernel_size=3, padding=2)
        self.conv2 = nn.Conv2d(in_chans, 5, kernel_size=3, padding=2)
        self.conv3 = nn.Conv2d(in_chans, 8, kernel_size=3, padding=2)
        self.relu = nn.ReLU()
        self.bn1 = nn.BatchNorm2d(3)
        self.bn2 = nn.BatchNorm2d(5)
        self.bn3 = nn.BatchNorm2d(8)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=3, padding=1)
        self.avgpool = nn.AvgPool2d(kernel_size=2, stride=2, padding=0)
        self.dropout = nn.Dropout(p=drop_rate)
        self.fc = nn.Linear(5 * 5 * 16, num_classes)

    def _stream(self, x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
        return self.dropout(self.maxpool(bn(self.relu(conv(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat(
            (
                self._stream(x, self.conv1, self.bn1),
                self._stream(x, self.conv2, self.bn2),
                self._stream(x, self.conv3, self.bn3),
            ),
            dim=1,
        )
        return self.fc(torch.flatten(self.avgpool(x), 1))


class OffApexNet(nn.Module):
    """Off-ApexNet (Gan et al., 2019): one LeNet-like stream per flow component, fused by FCs.

    Each stream: conv 5x5 (6 maps, same padding), ReLU, max-pool 2, conv 5x5 (16 maps), ReLU,
    max-pool 2, so a 28x28 input gives 16x7x7 features per stream. The streams are concatenated
    and pass through two fully connected layers of 1024 units with dropout before the output.
    The paper feeds the horizontal and vertical flow (two streams); ``in_chans=3`` adds strain.
    """

    def __init__(
        self, num_classes: int = 3, in_chans: int = 2, input_size: int = 28, drop_rate: float = 0.5
    ):
        super().__init__()
        self.streams = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(1, 6, kernel_size=5, padding=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
                nn.Conv2d(6, 16, kernel_size=5, padding=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
                nn.Flatten(),
            )
            for _ in range(in_chans)
        )
        features = in_chans * 16 * (input_size // 4) ** 2
        self.head = nn.Sequential(
            nn.Linear(features, 1024),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
            nn.Linear(1024, 1024),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
            nn.Linear(1024, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [stream(x[:, i : i + 1]) for i, stream in enumerate(self.streams)]
        return self.head(torch.cat(parts, dim=1))


@register_model(input_kind="flow_image", input_size=28, in_chans=3)
def ststnet(num_classes: int = 3, in_chans: int = 3, **kwargs) -> STSTNet:
    return STSTNet(num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model(input_kind="flow_image", input_size=28, in_chans=2)
def offapexnet(num_classes: int = 3, in_chans: int = 2, **kwargs) -> OffApexNet:
    return OffApexNet(num_classes=num_classes, in_chans=in_chans, **kwargs)
