"""3D-VGG clip network of Wu et al. (High Technology Letters 2022), seed S3.

Eight 3x3x3 convolutions (32, 32, 64, 64, 128, 128, 128, 128 filters, stride 1, same
padding), each followed by batch norm and ReLU; max pools shrink (16, 128, 128) to (1, 4, 4),
so the last feature map is 128 x 1 x 4 x 4 = 2048 values; dense 1024 then the classes.

Where the pools sit. The paper fixes the first pool at (1, 2, 2) (no temporal pooling yet),
all later ones at (2, 2, 2), and the output at (1, 4, 4). From 128 px to 4 px takes five
spatial halvings and from 16 frames to 1 takes four temporal ones, so there are five pools:
one after conv1, one after conv2, then one after each pair (conv3-4, conv5-6, conv7-8). This
is C3D's pooling plan (Tran et al. 2015) with the paper's filter counts:

=======  ========  ==========  ===================
stage    convs     pool        output (T, H, W)
=======  ========  ==========  ===================
1        32        (1, 2, 2)   16 x 64 x 64
2        32        (2, 2, 2)   8 x 32 x 32
3        64, 64    (2, 2, 2)   4 x 16 x 16
4        128, 128  (2, 2, 2)   2 x 8 x 8
5        128, 128  (2, 2, 2)   1 x 4 x 4
=======  ========  ==========  ===================

Dropout 0.25 follows every pooled stage and 0.5 the dense layer, as the paper gives. Pools
use ``ceil_mode`` so that smaller test-scale clips (8 frames, 32 px) still reach a 1-frame
map; on the paper's 16 x 128 x 128 every division is exact, so nothing changes there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from microexpr.models.registry import register_model
from microexpr.spec import InputSpec

# Seed S3's input: 16 frames of 128 x 128, 0..1.
CLIP_SPEC = InputSpec(kind="clip", size=128, in_chans=3, scaling="unit", num_frames=16)

SEED_WIDTHS = (32, 32, 64, 64, 128, 128, 128, 128)
# How many of the eight convolutions each pooled stage holds (see the table above).
STAGE_DEPTHS = (1, 1, 2, 2, 2)


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.Conv3d(cin, cout, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
    ]


class C3DVGG(nn.Module):
    """3D-VGG (seed S3): input (B, C, T, H, W), output logits (B, classes).

    ``widths``: the eight filter counts (reduce them for test-scale runs); ``hidden``: the
    dense layer's width; ``num_frames`` / ``input_size`` size the first dense layer.
    """

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        num_frames: int = 16,
        input_size: int = 128,
        widths: Sequence[int] = SEED_WIDTHS,
        hidden: int = 1024,
        conv_drop: float = 0.25,
        dense_drop: float = 0.5,
    ):
        super().__init__()
        if len(widths) != sum(STAGE_DEPTHS):
            raise ValueError(f"c3d_vgg takes {sum(STAGE_DEPTHS)} widths, got {len(widths)}")
        layers: list[nn.Module] = []
        cin, t, s, k = in_chans, num_frames, input_size, 0
        for stage, depth in enumerate(STAGE_DEPTHS):
            for _ in range(depth):
                layers += _conv_bn_relu(cin, widths[k])
                cin, k = widths[k], k + 1
            pool = (1, 2, 2) if stage == 0 else (2, 2, 2)
            layers += [nn.MaxPool3d(pool, pool, ceil_mode=True), nn.Dropout(conv_drop)]
            t, s = math.ceil(t / pool[0]), math.ceil(s / 2)
        self.features = nn.Sequential(*layers)
        self.feature_shape = (cin, t, s, s)  # (128, 1, 4, 4) on the seed's input
        self.num_features = cin * t * s * s  # 2048 on the seed's input
        self.fc = nn.Linear(self.num_features, hidden)
        self.head = nn.Sequential(nn.ReLU(inplace=True), nn.Dropout(dense_drop))
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.features(x), 1)
        return self.classifier(self.head(self.fc(x)))


@register_model(CLIP_SPEC)
def c3d_vgg(num_classes: int, in_chans: int = 3, **kwargs) -> C3DVGG:
    """Seed S3's 3D-VGG on 16 x 128 x 128 clips (options: C3DVGG's arguments)."""
    return C3DVGG(num_classes, in_chans, **kwargs)
