"""Shallow networks on a single optical-flow image (u, v, strain): STSTNet and Off-ApexNet.

Both take the 28x28 flow images that public MER code computes between onset and apex.
"""

from __future__ import annotations

from collections.abc import Callable

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


# The pooled cells are a ninth of the maps: their passes take this many map chunks at once.
CELL_CHUNKS = 16
# The stacked STSTNet's layout: 3 + 5 + 8 maps, a 30x30 convolution output (28x28 input,
# padding 2) max-pooled (kernel 3, stride 3, padding 1) to 10x10 cells, then 2x2 averages.
STREAM_WIDTH = 16
CONV_SIDE = 30
POOL_SIDE = 10


def conv_patches(images: torch.Tensor) -> torch.Tensor:
    """(N, C, 28, 28) images -> (N, 900, C*9 + 1) im2col rows of STSTNet's 3x3 convolutions,
    raster order, with a column of ones for the bias: the convolution is one matrix product."""
    cols = F.unfold(images, kernel_size=3, padding=2)
    ones = cols.new_ones(cols.shape[0], 1, cols.shape[2])
    return torch.cat([cols, ones], 1).transpose(1, 2).contiguous()


class StackedSTSTNet(nn.Module):
    """``F`` independent STSTNets as one network, one per cross-validation fold, with a
    closed-form backward pass.

    Why not autograd: an STSTNet step is 1.6 MFLOP of convolution per sample and PyTorch's
    eager CPU step spends 10-20x that in framework kernels built for wide layers (3-, 5- and
    8-map convolutions, batch norm and max-pool each a separate pass over 16x30x30 maps,
    their backward passes again). Here the three streams of every fold are one matrix product
    of the samples' im2col rows (shared by all folds) with a (C*9+1, F*16) weight matrix, so
    the product is wide enough to run near the CPU's peak, and batch norm before max-pool is
    folded analytically: its statistics are two sums, the pooled maxima are taken on the ReLU
    output (per channel, batch norm is monotonic: the maxima of h map to the maxima of
    BN(h); a channel with a negative scale takes the minima), and its backward is a
    per-channel affine map of h plus the pooled cells' gradients, so one more product gives
    the convolution weights' gradient. Each fold keeps its own parameters, batch-norm
    statistics (over its own samples only, ``member``) and running statistics; the arithmetic
    is that of training each STSTNet alone, up to float rounding.
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

        def conv(m: STSTNet) -> torch.Tensor:
            weight, bias = streams(m, "conv", "weight"), streams(m, "conv", "bias")
            return torch.cat([weight.flatten(1), bias[:, None]], 1)

        def frozen(t: torch.Tensor) -> nn.Parameter:  # gradients are computed in closed form
            return nn.Parameter(t, requires_grad=False)

        self.conv = frozen(stack(conv))  # (F, 16, C*9 + 1), bias last
        self.bn_weight = frozen(stack(lambda m: streams(m, "bn", "weight")))
        self.bn_bias = frozen(stack(lambda m: streams(m, "bn", "bias")))
        self.register_buffer("running_mean", stack(lambda m: streams(m, "bn", "running_mean")))
        self.register_buffer("running_var", stack(lambda m: streams(m, "bn", "running_var")))
        self.fc_weight = frozen(stack(lambda m: m.fc.weight))  # (F, classes, 400)
        self.fc_bias = frozen(stack(lambda m: m.fc.bias))

    @property
    def width(self) -> int:
        """Columns of the hidden maps: every fold's 16 channels side by side."""
        return self.folds * STREAM_WIDTH

    def conv_matrix(self) -> torch.Tensor:
        """(C*9 + 1, F*16): column ``f*16 + c`` is fold f's channel c."""
        return self.conv.permute(2, 0, 1).reshape(self.conv.shape[2], self.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Eval-mode logits (F, B, classes) of x (F, B, C, H, W): each fold on its own inputs."""
        folds, batch = x.shape[:2]
        patches = conv_patches(x.flatten(0, 1)).view(folds, batch * CONV_SIDE**2, -1)
        hidden = torch.bmm(patches, self.conv.transpose(1, 2)).relu_()
        hidden = hidden.view(folds, batch, CONV_SIDE**2, STREAM_WIDTH).permute(1, 2, 0, 3)
        return self._eval_head(hidden.reshape(batch, CONV_SIDE**2, self.width))

    @torch.no_grad()
    def logits(self, patches: torch.Tensor, chunk: int) -> torch.Tensor:
        """Eval-mode logits (F, N, classes) of every fold on the same samples' patches."""
        weight = self.conv_matrix()
        parts = []
        for rows in _chunks(patches.shape[0], chunk):
            hidden = (patches[rows].flatten(0, 1) @ weight).relu_()
            parts.append(self._eval_head(hidden.view(-1, CONV_SIDE**2, self.width)))
        return torch.cat(parts, 1)

    def _eval_head(self, hidden: torch.Tensor) -> torch.Tensor:
        scale = self.bn_weight * torch.rsqrt(self.running_var + self.eps)
        cells, _ = pool_cells(hidden, torch.where(scale >= 0, 1.0, -1.0).flatten())
        pooled = (cells - self.running_mean.flatten()) * scale.flatten() + self.bn_bias.flatten()
        return self._classify(pooled)

    def _classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled cells (N, 100, F*16) -> 2x2 averages -> each fold's linear layer (F, N, k)."""
        return torch.baddbmm(
            self.fc_bias[:, None, :], _average(pooled, self.folds), self.fc_weight.transpose(1, 2)
        )

    @torch.no_grad()
    def backprop(
        self,
        patches: torch.Tensor,
        targets: torch.Tensor,
        member: torch.Tensor,
        keep: Callable[[slice], torch.Tensor] | None,
        hidden: torch.Tensor,
        chunk: int,
        signed: bool = True,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """One training step's forward and backward pass for every fold at once.

        patches (U, 900, C*9+1) of the step's samples, targets (U,); member (F, U): 1 where a
        sample is in that fold's batch; keep(rows): dropout multipliers (S, 100, F*16) of
        those samples' pooled cells (None: no dropout); hidden: a (2, chunk*900*F*16)
        workspace, reused across steps; chunk: samples per pass (cache-sized on a CPU: every
        pass over per-sample data runs chunk by chunk, and the backward pass recomputes the
        convolution, which costs less than reading it back from memory); signed=False skips the
        minima of negative-scale channels when the caller knows there are none. Updates the
        running statistics of folds with samples and returns the gradients (in
        ``parameters()`` order) and each fold's mean cross-entropy.
        """
        samples, width, folds = patches.shape[0], self.width, self.folds
        spots = CONV_SIDE**2
        weight = self.conv_matrix()
        sums, squares = patches.new_empty(samples, width), patches.new_empty(samples, width)
        cells = patches.new_empty(samples, POOL_SIDE**2, width)
        where = torch.empty(cells.shape, dtype=torch.long, device=patches.device)
        sign = torch.where(self.bn_weight >= 0, 1.0, -1.0).flatten() if signed else None
        parts = _chunks(samples, chunk)
        cell_parts = _chunks(samples, chunk * CELL_CHUNKS)
        for rows in parts:  # convolution, ReLU, batch-norm sums, pooled extremes
            h = _convolve(patches[rows], weight, hidden).relu_()
            torch.sum(h, 1, out=sums[rows])
            torch.linalg.vecdot(h, h, dim=1, out=squares[rows])
            cells[rows], where[rows] = pool_cells(h, sign)

        counts = member.sum(1)
        weights = member.T.double()[:, :, None]
        n = (counts.double() * spots).clamp(min=1)[:, None]
        mean = ((sums.double().view(samples, folds, -1) * weights).sum(0) / n).float()
        mean_sq = (squares.double().view(samples, folds, -1) * weights).sum(0) / n
        var = (mean_sq - mean.double() ** 2).clamp(min=0).float()
        std = torch.sqrt(var + self.eps)
        scale = self.bn_weight / std
        shift = (self.bn_bias - mean * scale).flatten()
        features = patches.new_empty(folds, samples, self.fc_weight.shape[2])
        kept = []
        for rows in cell_parts:  # batch norm of the pooled cells, dropout, 2x2 averages
            pooled = torch.addcmul(shift, cells[rows], scale.flatten())
            if keep is not None:
                kept.append(keep(rows))
                pooled *= kept[-1]
            features[:, rows] = _average(pooled, folds)
        logits = torch.baddbmm(self.fc_bias[:, None, :], features, self.fc_weight.transpose(1, 2))
        log_probs = torch.log_softmax(logits, 2)
        per_sample = member / counts.clamp(min=1)[:, None]
        picked = log_probs.gather(2, targets.view(1, -1, 1).expand(folds, -1, 1)).squeeze(2)
        loss = -(picked * per_sample).sum(1)

        classes = torch.arange(logits.shape[2], device=targets.device)
        onehot = (targets[:, None] == classes).to(logits.dtype)  # F.one_hot may sync
        d_logits = (log_probs.exp() - onehot) * per_sample[:, :, None]
        d_fc_weight = torch.bmm(d_logits.transpose(1, 2), features)
        d_fc_bias = d_logits.sum(1)
        d_features = torch.bmm(d_logits, self.fc_weight)
        d_shift, d_cells_x = cells.new_zeros(width), cells.new_zeros(width)
        for i, rows in enumerate(cell_parts):  # back through averages, dropout, batch norm
            d_cells = _average_backward(d_features[:, rows], width)
            if keep is not None:
                d_cells *= kept[i]
            d_shift += d_cells.sum((0, 1))
            d_cells_x += torch.linalg.vecdot(d_cells, cells[rows], dim=1).sum(0)
            cells[rows] = d_cells * scale.flatten()  # the pooled cells' share of d loss / d h
        d_bn_bias = d_shift.view(folds, -1)
        d_bn_weight = (d_cells_x.view(folds, -1) - mean * d_bn_bias) / std
        nf = n.float()
        slope = -scale * d_bn_weight / (std * nf)  # d loss / d h = slope*h + offset (+ cells)
        offset = -scale * d_bn_bias / nf - slope * mean
        in_batch = member.T[:, :, None]
        slope_u = (in_batch * slope).reshape(samples, 1, width)
        offset_u = (in_batch * offset).reshape(samples, 1, width)

        d_conv = weight.new_zeros(weight.shape)
        grad = hidden[1]
        for rows in parts:  # the convolution again (cheaper than storing it), back through it
            z = _convolve(patches[rows], weight, hidden)
            g = torch.addcmul(offset_u[rows], z, slope_u[rows], out=grad[: z.numel()].view(z.shape))
            g.scatter_add_(1, where[rows], cells[rows])
            torch.ops.aten.threshold_backward.grad_input(g, z, 0, grad_input=g)  # ReLU'
            d_conv.addmm_(patches[rows].flatten(0, 1).T, g.view(-1, width))

        active = (counts > 0).to(mean.dtype)[:, None] * self.momentum
        unbiased = var * (n / (n - 1).clamp(min=1)).float()
        self.running_mean.mul_(1 - active).add_(active * mean)
        self.running_var.mul_(1 - active).add_(active * unbiased)
        d_conv = d_conv.view(-1, folds, STREAM_WIDTH).permute(1, 2, 0)
        return [d_conv, d_bn_weight, d_bn_bias, d_fc_weight, d_fc_bias], loss

    def fold_model(self, index: int) -> STSTNet:
        """Fold ``index`` as a plain STSTNet (published parameter names), e.g. to save it."""
        num_classes = self.fc_weight.shape[1]
        model = STSTNet(num_classes, self.in_chans, self.drop_rate)
        conv = self.conv[index]
        state = {}
        start = 0
        for i, width in ((1, 3), (2, 5), (3, 8)):
            part = slice(start, start + width)
            state[f"conv{i}.weight"] = conv[part, :-1].reshape(width, self.in_chans, 3, 3)
            state[f"conv{i}.bias"] = conv[part, -1]
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


def _convolve(patches: torch.Tensor, weight: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """Every fold's convolution of a chunk's patches (S, 900, K) into the workspace's first
    row: (S, 900, F*16)."""
    batch, spots, width = patches.shape[0], patches.shape[1], weight.shape[1]
    out = hidden[0, : batch * spots * width].view(batch * spots, width)
    return torch.mm(patches.flatten(0, 1), weight, out=out).view(batch, spots, width)


def pool_cells(
    hidden: torch.Tensor, sign: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Max-pool (kernel 3, stride 3, padding 1) of ReLU maps (N, 900, W) held channels-last:
    each cell's extreme value (N, 100, W) and its position 0..899. ``sign`` (W,) of -1 takes a
    channel's minimum instead (batch norm with a negative scale turns minima into maxima)."""
    batch, _, width = hidden.shape
    grid = hidden if sign is None else hidden * sign
    grid = grid.view(batch, CONV_SIDE, CONV_SIDE, width).permute(0, 3, 1, 2)
    values, where = F.max_pool2d(grid, kernel_size=3, stride=3, padding=1, return_indices=True)
    values = values.permute(0, 2, 3, 1).reshape(batch, POOL_SIDE**2, width)
    where = where.permute(0, 2, 3, 1).reshape(batch, POOL_SIDE**2, width)
    return (values if sign is None else values * sign), where


def _average(cells: torch.Tensor, folds: int) -> torch.Tensor:
    """2x2 average pool of cells (N, 100, F*16) -> each fold's flattened features (F, N, 400),
    in STSTNet's order (channel, row, column)."""
    batch, _, width = cells.shape
    grid = cells.view(batch, POOL_SIDE, POOL_SIDE, width).permute(0, 3, 1, 2)
    means = F.avg_pool2d(grid, kernel_size=2).permute(0, 2, 3, 1)  # channels-last kernel
    means = means.reshape(batch, -1, folds, STREAM_WIDTH).permute(2, 0, 3, 1)
    return means.reshape(folds, batch, -1)


def _average_backward(grad: torch.Tensor, width: int) -> torch.Tensor:
    """Gradient of :func:`_average`: (F, N, 400) -> (N, 100, F*16)."""
    half = POOL_SIDE // 2
    folds, batch = grad.shape[:2]
    grad = grad.view(folds, batch, STREAM_WIDTH, half, half).permute(1, 3, 4, 0, 2)
    grad = grad.reshape(batch, half, 1, half, 1, width).expand(-1, -1, 2, -1, 2, -1)
    return grad.reshape(batch, POOL_SIDE**2, width) / 4


def _chunks(total: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, total)) for i in range(0, total, size)]
