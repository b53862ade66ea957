"""Shallow networks on a single optical-flow image (u, v, strain): STSTNet and Off-ApexNet.

Both take the 28x28 flow images that public MER code computes between onset and apex.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from microexpr.models.registry import register_model
from microexpr.spec import InputSpec

# 28 x 28 u/v/strain images, raw 0..255 as the published loop feeds them.
STSTNET_SPEC = InputSpec(kind="flow_image", size=28, in_chans=3, scaling="raw")
# u and v only (Off-ApexNet's input).
OFFAPEX_SPEC = InputSpec(kind="flow_image", size=28, in_chans=2, scaling="raw")


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


@register_model(STSTNET_SPEC)
def ststnet(num_classes: int = 3, in_chans: int = 3, **kwargs) -> STSTNet:
    return STSTNet(num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model(OFFAPEX_SPEC)
def offapexnet(num_classes: int = 3, in_chans: int = 2, **kwargs) -> OffApexNet:
    return OffApexNet(num_classes=num_classes, in_chans=in_chans, **kwargs)


class StackedSTSTNet(nn.Module):
    """``F`` independent STSTNets evaluated as one network, one per cross-validation fold.

    The three streams share kernel size and padding, so they are one 16-map convolution;
    the ``F`` copies become one grouped convolution and one batched matrix product. Batch
    norm is written out because each fold's statistics must cover only that fold's real
    samples (``mask``), which ``nn.BatchNorm2d`` cannot do; dropout takes a generator so a
    group of folds is reproducible. Training all folds of a LOSO run this way gives the
    same per-fold computation as training each STSTNet alone, at a fraction of the cost.
    """

    def __init__(self, models: list[STSTNet], momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        first = models[0]
        self.folds = len(models)
        self.in_chans = first.conv1.in_channels
        self.drop_rate = first.dropout.p
        self.momentum, self.eps = momentum, eps

        def stack(get) -> torch.Tensor:
            return torch.stack([get(m).detach().clone() for m in models])

        def streams(m: STSTNet, prefix: str, attr: str) -> torch.Tensor:
            return torch.cat([getattr(getattr(m, f"{prefix}{i}"), attr) for i in (1, 2, 3)])

        self.conv_weight = nn.Parameter(stack(lambda m: streams(m, "conv", "weight")))
        self.conv_bias = nn.Parameter(stack(lambda m: streams(m, "conv", "bias")))
        self.bn_weight = nn.Parameter(stack(lambda m: streams(m, "bn", "weight")))
        self.bn_bias = nn.Parameter(stack(lambda m: streams(m, "bn", "bias")))
        self.register_buffer("running_mean", stack(lambda m: streams(m, "bn", "running_mean")))
        self.register_buffer("running_var", stack(lambda m: streams(m, "bn", "running_var")))
        self.fc_weight = nn.Parameter(stack(lambda m: m.fc.weight))
        self.fc_bias = nn.Parameter(stack(lambda m: m.fc.bias))

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """x: (F, B, C, H, W); mask: (F, B) of real samples; returns logits (F, B, classes)."""
        folds, batch = x.shape[:2]
        if x.is_cuda:  # cuDNN runs the grouped convolution well
            h = x.transpose(0, 1).reshape(batch, folds * self.in_chans, *x.shape[-2:])
            h = F.conv2d(
                h, self.conv_weight.flatten(0, 1), self.conv_bias.flatten(), padding=2, groups=folds
            )
        else:  # on CPU a grouped convolution's backward is several times slower than a loop
            h = torch.cat(
                [
                    F.conv2d(x[f], self.conv_weight[f], self.conv_bias[f], padding=2)
                    for f in range(folds)
                ],
                dim=1,
            )
        h = torch.relu(h)
        if self.training and mask is not None and not bool(mask.all()):
            h = self._masked_batch_norm(h.view(batch, folds, 16, *h.shape[-2:]), mask).flatten(1, 2)
        else:  # every fold has the full batch: per-channel statistics are per-fold statistics
            h = F.batch_norm(
                h,
                self.running_mean.view(-1),
                self.running_var.view(-1),
                self.bn_weight.flatten(),
                self.bn_bias.flatten(),
                training=self.training,
                momentum=self.momentum,
                eps=self.eps,
            )
        h = F.max_pool2d(h, kernel_size=3, stride=3, padding=1)
        if self.training and self.drop_rate > 0:
            keep = torch.rand(h.shape, generator=generator, device=h.device) >= self.drop_rate
            h = h * keep / (1 - self.drop_rate)
        h = F.avg_pool2d(h, kernel_size=2, stride=2).view(batch, folds, -1)
        return torch.einsum("bfi,fki->fbk", h, self.fc_weight) + self.fc_bias[:, None, :]

    def _masked_batch_norm(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Training-mode batch norm of h (B, F, 16, H, W) over each fold's real samples."""
        shape = (1, self.folds, 16, 1, 1)
        weights = mask.T.float()[:, :, None, None, None]
        count = weights.sum(0, keepdim=True).clamp(min=1) * h.shape[-1] * h.shape[-2]
        mean = (h * weights).sum((0, 3, 4), keepdim=True) / count
        var = (((h - mean) ** 2) * weights).sum((0, 3, 4), keepdim=True) / count
        with torch.no_grad():  # folds without samples in this batch keep their statistics
            unbiased = var * count / (count - 1).clamp(min=1)
            m = self.momentum * (weights.sum(0).view(self.folds, 1) > 0)
            self.running_mean.mul_(1 - m).add_(m * mean.view(self.folds, 16))
            self.running_var.mul_(1 - m).add_(m * unbiased.view(self.folds, 16))
        scale = self.bn_weight.view(shape) * torch.rsqrt(var + self.eps)
        return (h - mean) * scale + self.bn_bias.view(shape)

    def fold_model(self, index: int) -> STSTNet:
        """Fold ``index`` as a plain STSTNet (published parameter names), e.g. to save it."""
        num_classes = self.fc_weight.shape[1]
        model = STSTNet(num_classes, self.in_chans, self.drop_rate)
        state = {}
        start = 0
        for i, width in ((1, 3), (2, 5), (3, 8)):
            part = slice(start, start + width)
            state[f"conv{i}.weight"] = self.conv_weight[index, part]
            state[f"conv{i}.bias"] = self.conv_bias[index, part]
            state[f"bn{i}.weight"] = self.bn_weight[index, part]
            state[f"bn{i}.bias"] = self.bn_bias[index, part]
            state[f"bn{i}.running_mean"] = self.running_mean[index, part]
            state[f"bn{i}.running_var"] = self.running_var[index, part]
            state[f"bn{i}.num_batches_tracked"] = torch.tensor(0)
            start += width
        state["fc.weight"] = self.fc_weight[index]
        state["fc.bias"] = self.fc_bias[index]
        model.load_state_dict({k: v.detach().cpu() for k, v in state.items()})
        return model
