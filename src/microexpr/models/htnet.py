"""HTNet: the hierarchical transformer network over four facial regions of the flow image.

Source: Wang, Zhang, Luo and Sankaranarayana, "HTNet for micro-expression recognition",
Neurocomputing 602 (2024) 128196 (arXiv 2307.14637), and its public code
(github.com/wangzhifengharrison/HTNet, ``Model.py`` and ``main_HTNet.py``).

The input is a 28 x 28 mosaic of four 14 x 14 crops of the u/v/strain flow image, centred
on the left eye, right eye, left and right mouth corners found on the apex face: the
``flow_regions`` input kind, made by the data pipeline (``preprocess/pipelines.py``), never
by this model. The network is a nested transformer: 7 x 7 patches embedded by a 1x1
convolution, then three hierarchy levels, each a stack of pre-norm transformer blocks
applied inside square blocks of the map (4 x 4 blocks, then 2 x 2, then the whole map)
followed, below the top, by an aggregation (3x3 convolution, channel layer norm, 3/2
max-pool) that doubles the width and halves the side. A channel layer norm, global mean
and a linear layer classify.

Sizes and parameter names follow the public code (dim 256, heads 3, block repeats (2, 2,
10), MLP ratio 4, no dropout), so its per-subject weights load with ``load_state_dict``.
With those sizes every block of every level holds exactly one token, so each attention is
softmax over one logit, that is 1, and its output is the value projection: region
interactions come from the aggregation convolutions alone. :class:`Attention` skips the
query and key products in that case (the result and the gradients are the same: a
one-element softmax has zero derivative), which saves a sixth of the step's arithmetic.
"""

from __future__ import annotations

import torch
from torch import nn

from microexpr.models.registry import register_model
from microexpr.spec import InputSpec

# The four-region mosaic of the 28 x 28 flow image, raw 0..255 BGR as the public loop reads it.
HTNET_SPEC = InputSpec(kind="flow_regions", size=28, in_chans=3, scaling="raw")


class ChannelLayerNorm(nn.Module):
    """Layer norm over the channels of an (N, C, H, W) map (biased variance, eps 1e-5)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1, dim, 1, 1))
        self.b = nn.Parameter(torch.zeros(1, dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.g + self.b


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = ChannelLayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class FeedForward(nn.Module):
    """1x1 conv to ``mult`` x dim, GELU, 1x1 conv back."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(dim, dim * mult, 1),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Conv2d(dim * mult, dim, 1),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Attention(nn.Module):
    """Multi-head self-attention over the positions of an (N, C, H, W) block; heads of
    ``dim // heads`` channels (so ``heads * (dim // heads)`` inner channels)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.dim_head = dim // heads
        inner = self.dim_head * heads
        self.scale = self.dim_head**-0.5
        self.to_qkv = nn.Conv2d(dim, inner * 3, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.to_out = nn.Sequential(nn.Conv2d(inner, dim, 1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        inner = self.heads * self.dim_head
        if h * w == 1:  # softmax over one position is 1: the output is the value
            values = nn.functional.conv2d(x, self.to_qkv.weight[2 * inner :])
            return self.to_out(values)
        q, k, v = (
            t.reshape(n, self.heads, self.dim_head, h * w).transpose(2, 3)
            for t in self.to_qkv(x).chunk(3, dim=1)
        )
        attn = self.dropout(torch.softmax(q @ k.transpose(2, 3) * self.scale, dim=-1))
        out = (attn @ v).transpose(2, 3).reshape(n, inner, h, w)
        return self.to_out(out)


class Transformer(nn.Module):
    """``depth`` pre-norm blocks with a learnt scalar position embedding per position."""

    def __init__(self, dim: int, seq_len: int, depth: int, heads: int, mlp_mult: int, dropout):
        super().__init__()
        self.pos_emb = nn.Parameter(torch.randn(seq_len))
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PreNorm(dim, Attention(dim, heads, dropout)),
                    PreNorm(dim, FeedForward(dim, mlp_mult, dropout)),
                ]
            )
            for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = x + self.pos_emb[: h * w].view(1, 1, h, w)
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return x


class PatchEmbedding(nn.Module):
    """(N, C, H, W) -> (N, p * p * C, H / p, W / p), channels ordered (row, column, channel)
    inside each patch as the public code's ``b c (h p1) (w p2) -> b (p1 p2 c) h w``."""

    def __init__(self, patch: int):
        super().__init__()
        self.patch = patch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p = self.patch
        x = x.reshape(n, c, h // p, p, w // p, p).permute(0, 3, 5, 1, 2, 4)
        return x.reshape(n, p * p * c, h // p, w // p)


class GlobalMean(nn.Module):
    """(N, C, H, W) -> (N, C), the mean over positions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


def _to_blocks(x: torch.Tensor, blocks: int) -> torch.Tensor:
    """(N, C, bH, bW) -> (N * b * b, C, H, W): the map cut into b x b blocks."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, blocks, h // blocks, blocks, w // blocks).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n * blocks * blocks, c, h // blocks, w // blocks)


def _from_blocks(x: torch.Tensor, blocks: int) -> torch.Tensor:
    nb, c, h, w = x.shape
    n = nb // (blocks * blocks)
    x = x.reshape(n, blocks, blocks, c, h, w).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(n, c, blocks * h, blocks * w)


class HTNet(nn.Module):
    """HTNet with the public code's defaults; widths double and heads double per level."""

    def __init__(
        self,
        num_classes: int = 3,
        in_chans: int = 3,
        input_size: int = 28,
        patch_size: int = 7,
        dim: int = 256,
        heads: int = 3,
        num_hierarchies: int = 3,
        block_repeats: tuple[int, ...] = (2, 2, 10),
        mlp_mult: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"input size {input_size} is not a multiple of patch {patch_size}")
        if len(block_repeats) != num_hierarchies:
            raise ValueError(f"block_repeats needs {num_hierarchies} entries")
        fmap = input_size // patch_size
        blocks = 2 ** (num_hierarchies - 1)
        if fmap % blocks:
            raise ValueError(f"a {fmap} x {fmap} patch map cannot be cut into {blocks} blocks")
        seq_len = (fmap // blocks) ** 2  # positions per block, the same at every level
        widths = [dim * 2**i for i in range(num_hierarchies)]
        self.to_patch_embedding = nn.Sequential(
            PatchEmbedding(patch_size), nn.Conv2d(in_chans * patch_size**2, widths[0], 1)
        )
        self.levels = list(reversed(range(num_hierarchies)))  # block-grid exponent per level
        self.layers = nn.ModuleList()
        for i, depth in enumerate(block_repeats):
            last = i == num_hierarchies - 1
            aggregate = (
                nn.Identity()
                if last
                else nn.Sequential(
                    nn.Conv2d(widths[i], widths[i + 1], 3, padding=1),
                    ChannelLayerNorm(widths[i + 1]),
                    nn.MaxPool2d(3, stride=2, padding=1),
                )
            )
            transformer = Transformer(widths[i], seq_len, depth, heads * 2**i, mlp_mult, dropout)
            self.layers.append(nn.ModuleList([transformer, aggregate]))
        self.mlp_head = nn.Sequential(
            ChannelLayerNorm(widths[-1]), GlobalMean(), nn.Linear(widths[-1], num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.to_patch_embedding(x)
        for level, (transformer, aggregate) in zip(self.levels, self.layers, strict=True):
            blocks = 2**level
            x = aggregate(_from_blocks(transformer(_to_blocks(x, blocks)), blocks))
        return self.mlp_head(x)


@register_model(HTNET_SPEC, classifier="mlp_head.2")
def htnet(num_classes: int = 3, in_chans: int = 3, **kwargs) -> HTNet:
    return HTNet(num_classes=num_classes, in_chans=in_chans, **kwargs)
