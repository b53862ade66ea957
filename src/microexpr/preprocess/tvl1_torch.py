"""Dual TV-L1 optical flow in PyTorch, many image pairs at once, on CPU or CUDA.

The algorithm is OpenCV's ``cv2.optflow.DualTVL1OpticalFlow`` (Zach, Pock and Bischof 2007, as
written up by Sánchez, Meinhardt-Llopis and Facciolo, IPOL 2013), step for step and with its
defaults, so that flows from :func:`tvl1_flow` can stand in for :func:`flow.tvl1`'s:

* pyramid: each level is the previous one resized by ``scale_step`` with OpenCV's
  ``INTER_LINEAR`` (same output sizes and sample positions), stopping before a level under
  16 px; the coarsest flow starts at zero and each level's flow is resized bilinearly to the
  next and multiplied by ``1 / scale_step``;
* per level, ``warps`` times: warp I1 and its centred gradient by the current flow (bicubic,
  a = -0.75, zero outside the image, as ``cv2.remap(..., INTER_CUBIC)``: ``grid_sample`` in
  float64, see :func:`_warp`), linearise the data term, then up to
  ``outer_iterations`` rounds of a ``median_filtering`` x ``median_filtering`` median of the
  flow followed by up to ``inner_iterations`` steps of thresholding, divergence of the dual
  variable, primal update, forward gradient and dual (ROF) projection. The dual variable is
  reset per level, not per warp, as in OpenCV.

Pairs are a batch dimension: one set of tensor ops serves every pair, which is where the speed
comes from (on CUDA above all). Stopping is per pair. ``stopping="epsilon"`` (the default) is
OpenCV's rule: a pair ends its current warp once the squared change of its flow, summed over
the image, falls to ``epsilon**2 * H * W``; a stopped pair is frozen (masked updates) while the
others go on, so each pair gets the flow OpenCV would give it, and the loop ends when every pair
has stopped, at the price of one device-to-host sync per inner step (a batch runs as many
steps as its slowest pair: 20 to 80 per warp on the synthetic pairs of the tests). Under
``stopping="fixed"`` every pair runs every step (OpenCV with ``epsilon=0``) with no sync at all,
for CUDA graphs or a GPU that should never wait on the host; with OpenCV's cap of 10 x 30 steps
per warp that is more work, so pair it with a smaller cap: ``outer_iterations=2,
inner_iterations=15`` keeps the end-point error within about 15 % of OpenCV's on those pairs.

Differences from OpenCV: float input is taken as 0..255 (OpenCV multiplies float input by 255);
the median is an exact selection network of min / max ops, equal to ``cv2.medianBlur`` and
allowed at any odd size (OpenCV's float median takes only 3 and 5); float32 rounding differs
in places (1 / |grad I1|^2 is taken once per warp, sums run in another order). TV-L1 amplifies
rounding: the flows agree to about 1e-5 px after a few iterations and, with the default
settings, to about 2e-3 px (mean) inside the image and 1e-2 px over all of it; in the outer few
pixels they can differ by pixels, as OpenCV's own flow does there when its input moves by 1e-4
of a gray level. The warp samples in float64 (see :func:`_warp`), so devices without float64
(Apple's MPS) are not supported; written for CPU and CUDA.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Literal, NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

FLT_EPSILON = float(np.finfo(np.float32).eps)
MIN_LEVEL_SIZE = 16  # OpenCV stops the pyramid before a level under 16 px
MEDIAN_BAND_ELEMENTS = 1 << 17  # per tensor of a CPU median band: cache-sized, see _median_blur


@dataclass(frozen=True)
class TVL1Params:
    """Dual TV-L1 settings; the defaults are OpenCV's (``DualTVL1OpticalFlow_create()``)."""

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    nscales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    gamma: float = 0.0
    median_filtering: int = 5
    stopping: Literal["epsilon", "fixed"] = "epsilon"

    def __post_init__(self) -> None:
        if self.stopping not in ("epsilon", "fixed"):
            raise ValueError(f"stopping must be 'epsilon' or 'fixed', not {self.stopping!r}")
        if self.nscales < 1 or self.warps < 1:
            raise ValueError(f"nscales and warps must be >= 1, not {self.nscales}, {self.warps}")
        if not 0.0 < self.scale_step < 1.0:
            raise ValueError(f"scale_step must be in (0, 1), not {self.scale_step}")
        if self.median_filtering > 1 and self.median_filtering % 2 == 0:
            raise ValueError(f"median_filtering must be odd, not {self.median_filtering}")

    def opencv(self) -> dict[str, float | int]:
        """Keyword arguments for ``cv2.optflow.DualTVL1OpticalFlow_create`` that run the same
        algorithm (``stopping="fixed"`` is OpenCV with ``epsilon=0``), for comparisons."""
        names = {
            "inner_iterations": "innnerIterations",  # sic: OpenCV's Python keyword
            "outer_iterations": "outerIterations",
            "scale_step": "scaleStep",
            "median_filtering": "medianFiltering",
        }
        kwargs = {names.get(k, k): v for k, v in asdict(self).items() if k != "stopping"}
        if self.stopping == "fixed":
            kwargs["epsilon"] = 0.0
        return kwargs


def _as_gray_batch(images: torch.Tensor, name: str) -> torch.Tensor:
    """(N, 1, H, W) float32 from (N, H, W) or (N, 1, H, W) gray values 0..255."""
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(
            f"{name} must be (N, H, W) or (N, 1, H, W) gray images, not {tuple(images.shape)}"
        )
    return images.to(torch.float32)


def _linear_taps(
    out_size: int, in_size: int, scale: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices and weight of ``cv2.resize(..., INTER_LINEAR)`` along one axis: sample
    (d + 0.5) * scale - 0.5, clamped to the edge pixels (``scale`` = source px per output px)."""
    pos = (torch.arange(out_size, dtype=torch.float64, device=device) + 0.5) * scale - 0.5
    pos = pos.to(torch.float32)
    start = pos.floor()
    weight = pos - start
    start = start.long()
    weight = torch.where((start < 0) | (start >= in_size - 1), 0.0, weight)
    start = start.clamp(0, in_size - 1)
    return start, (start + 1).clamp(max=in_size - 1), weight


def _resize_linear(
    x: torch.Tensor, size: tuple[int, int], scale: tuple[float, float]
) -> torch.Tensor:
    """OpenCV's bilinear resize of (..., H, W) to ``size`` with the given (y, x) source-per-output
    scale. Written out because ``F.interpolate`` floors output sizes where OpenCV rounds."""
    y0, y1, wy = _linear_taps(size[0], x.shape[-2], scale[0], x.device)
    x0, x1, wx = _linear_taps(size[1], x.shape[-1], scale[1], x.device)
    rows = torch.lerp(x.index_select(-1, x0), x.index_select(-1, x1), wx)
    return torch.lerp(rows.index_select(-2, y0), rows.index_select(-2, y1), wy[:, None])


def _pyramid_sizes(height: int, width: int, params: TVL1Params) -> list[tuple[int, int]]:
    """Level sizes, finest first: round(size * scale_step) per level, as ``cv2.resize`` with
    ``fx = fy = scale_step`` gives, stopping before a level under 16 px."""
    sizes = [(height, width)]
    while len(sizes) < params.nscales:
        h, w = (round(n * params.scale_step) for n in sizes[-1])
        if h < MIN_LEVEL_SIZE or w < MIN_LEVEL_SIZE:
            break
        sizes.append((h, w))
    return sizes


def _centered_gradient(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences, half the one-sided difference on the border (OpenCV's
    ``centeredGradient``): replicate-padding makes the border case the same formula."""
    padded = F.pad(image, (1, 1, 1, 1), mode="replicate")
    dx = 0.5 * (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2])
    dy = 0.5 * (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1])
    return dx, dy


def _forward_gradient(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences, zero on the last column / row (the discrete gradient of the ROF
    step, adjoint to :func:`_divergence`)."""
    return F.pad(u.diff(dim=-1), (0, 1)), F.pad(u.diff(dim=-2), (0, 0, 0, 1))


def _divergence(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Backward-difference divergence with zero outside the image (OpenCV's ``divergence``)."""
    div = px + py
    div[..., 1:] -= px[..., :-1]
    div[..., 1:, :] -= py[..., :-1, :]
    return div


Comparators = tuple[tuple[int, int, bool, bool], ...]


def _merge(a: list[int], b: list[int], net: list[tuple[int, int]]) -> list[int]:
    """Batcher's odd-even merge of the sorted wire lists ``a`` and ``b`` (any lengths): appends
    its comparators (lo, hi) to ``net`` and returns the wires in sorted order."""
    if not a or not b:
        return a + b
    if len(a) == 1 and len(b) == 1:
        net.append((a[0], b[0]))
        return [a[0], b[0]]
    evens = _merge(a[::2], b[::2], net)
    odds = _merge(a[1::2], b[1::2], net)
    out = evens[:1]
    for i, odd in enumerate(odds):
        if i + 1 < len(evens):
            net.append((odd, evens[i + 1]))
            out += [odd, evens[i + 1]]
        else:
            out.append(odd)
    return out + evens[len(odds) + 1 :]


def _sort(wires: list[int], net: list[tuple[int, int]]) -> list[int]:
    """Batcher's odd-even merge sort of ``wires``: appends comparators, returns sorted order."""
    if len(wires) <= 1:
        return list(wires)
    half = len(wires) // 2
    return _merge(_sort(wires[:half], net), _sort(wires[half:], net), net)


def _prune(
    net: list[tuple[int, int]], order: list[int], needed_ranks: set[int]
) -> tuple[Comparators, set[int]]:
    """The comparators of ``net`` that the outputs at ``needed_ranks`` depend on, each as
    (lo, hi, keep_min, keep_max), and the input wires they read."""
    needed = {order[r] for r in needed_ranks}
    kept = []
    for lo, hi in reversed(net):
        if lo in needed or hi in needed:
            kept.append((lo, hi, lo in needed, hi in needed))
            needed |= {lo, hi}
    return tuple(reversed(kept)), needed


@functools.cache
def _median_plan(k: int) -> tuple[tuple[Comparators, list[int]], ...]:
    """Selection network for the median of a k x k window, in three stages whose work is
    shared between neighbouring windows: sort each column of k (shared by the k windows that
    hold it), merge adjacent column pairs (shared by the windows that hold both), then, per
    window, merge the pairs and the last column, pruned to the middle rank (for k = 5: 9 + 13
    comparators shared, 48 per window, against 99 for the classic 25-input network). Each stage is
    (comparators, sorted order); stages read the previous stage's outputs by rank."""
    cols = list(range(k))
    column_net: list[tuple[int, int]] = []
    column_order = _sort(cols, column_net)
    pair_net: list[tuple[int, int]] = []
    pair_order = _merge(cols, [k + c for c in cols], pair_net)
    window_net: list[tuple[int, int]] = []
    blocks = [list(range(b, b + 2 * k)) for b in range(0, k * (k - 1), 2 * k)]
    merged = list(range(k * (k - 1), k * k))  # the last column, merged from the right:
    for block in reversed(blocks):  # for k = 5, fewer comparators than left to right
        merged = _merge(block, merged, window_net)
    window, window_in = _prune(window_net, merged, {k * k // 2})
    pair_ranks = {w % (2 * k) for w in window_in if w < k * (k - 1)}
    pair, pair_in = _prune(pair_net, pair_order, pair_ranks)
    col_ranks = {w % k for w in pair_in} | {w - k * (k - 1) for w in window_in if w >= k * (k - 1)}
    column, _ = _prune(column_net, column_order, col_ranks)
    return (column, column_order), (pair, pair_order), (window, [merged[k * k // 2]])


def _run(
    net: Comparators, order: list[int], wires: list[torch.Tensor | None]
) -> list[torch.Tensor]:
    """Apply comparators to tensors elementwise; the outputs in sorted order."""
    wires = list(wires)
    for lo, hi, keep_min, keep_max in net:
        a, b = wires[lo], wires[hi]
        wires[lo] = torch.minimum(a, b) if keep_min else None
        wires[hi] = torch.maximum(a, b) if keep_max else None
    return [wires[w] for w in order]


def _median_rows(padded: torch.Tensor, k: int) -> torch.Tensor:
    """Medians of every k x k window of ``padded`` (..., h + k - 1, w + k - 1): (..., h, w)."""
    (column, column_order), (pair, pair_order), (window, out) = _median_plan(k)
    h, w = padded.shape[-2] - k + 1, padded.shape[-1] - k + 1
    cols = _run(column, column_order, [padded[..., i : i + h, :] for i in range(k)])
    pairs = _run(pair, pair_order, [c[..., :-1] for c in cols] + [c[..., 1:] for c in cols])
    wires = [p[..., x : x + w] for x in range(0, k - 1, 2) for p in pairs]
    wires += [c[..., k - 1 : k - 1 + w] for c in cols]
    return _run(window, out, wires)[0]


def _median_blur(u: torch.Tensor, k: int) -> torch.Tensor:
    """``cv2.medianBlur`` of each channel: exact k x k median, replicated border. A selection
    network of elementwise min / max over shifted views (:func:`_median_plan`), some 10x
    faster than ``torch.median`` over unfolded windows and without their k^2 copy. On the CPU
    it runs in bands of rows (all pairs at once) that keep its few dozen temporaries in cache:
    5x faster for 8 pairs of 224 x 224 on one thread. A GPU takes the whole image at once."""
    r = k // 2
    padded = F.pad(u, (r, r, r, r), mode="replicate")
    if u.device.type != "cpu":
        return _median_rows(padded, k)
    out = torch.empty_like(u)
    rows = max(1, MEDIAN_BAND_ELEMENTS // (padded[..., 0, :].numel()))
    for top in range(0, u.shape[-2], rows):
        band = padded[..., top : top + rows + 2 * r, :]
        out[..., top : top + rows, :] = _median_rows(band, k)
    return out


def _warp(images: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``cv2.remap(image, x + u1, y + u2, INTER_CUBIC)`` of each channel of float64 (N, C, H, W)
    ``images``, as float32: bicubic with a = -0.75 (grid_sample's kernel is OpenCV's), taps
    outside the image zero (remap's default BORDER_CONSTANT), at the exact float32 positions
    x + u (as OpenCV 5 samples float maps; OpenCV 4 rounded them to 1/32 px). The sampling
    runs in float64 because grid_sample's normalised coordinates do not come back exact in
    float32: a zero flow would shift I1 by ~1e-5 px, and TV-L1 turns the resulting 1e-3 gray
    levels into flows of up to a pixel between identical frames, where OpenCV gives zero."""
    _, _, h, w = images.shape
    ys = torch.arange(h, dtype=torch.float32, device=u.device).view(1, h, 1)
    xs = torch.arange(w, dtype=torch.float32, device=u.device).view(1, 1, w)
    x = (xs + u[:, 0]).double() * (2.0 / (w - 1)) - 1.0
    y = (ys + u[:, 1]).double() * (2.0 / (h - 1)) - 1.0
    grid = torch.stack((x, y), dim=-1)
    warped = F.grid_sample(images, grid, mode="bicubic", padding_mode="zeros", align_corners=True)
    return warped.float()


class _DataTerm(NamedTuple):
    """The linearised data term of one warp: rho(u) = rho_c + g . u, with g = (I1x, I1y) of
    the warped I1 (and the constant gamma for u3), its thresholds lambda theta |grad I1|^2
    and 1 / |grad I1|^2 (0 where |grad I1|^2 <= FLT_EPSILON, as OpenCV)."""

    g: torch.Tensor
    rho_c: torch.Tensor
    l_t_grad: torch.Tensor
    inv_grad: torch.Tensor


def _data_term(
    i0: torch.Tensor, i1_stack: torch.Tensor, u: torch.Tensor, gamma: float, l_t: float
) -> _DataTerm:
    """Warp I1 and its gradient by ``u`` and linearise around it (OpenCV's ``calcGradRho``)."""
    i1w, i1wx, i1wy = _warp(i1_stack, u).split(1, dim=1)
    g = torch.cat((i1wx, i1wy), 1)
    if u.shape[1] == 3:
        g = torch.cat((g, torch.full_like(i1wx, gamma)), 1)
    grad = i1wx * i1wx + i1wy * i1wy  # OpenCV leaves gamma^2 out
    rho_c = i1w - i1wx * u[:, :1] - i1wy * u[:, 1:2] - i0  # and gamma u3 out of rho_c
    inv_grad = torch.where(grad > FLT_EPSILON, 1.0 / grad, 0.0)
    return _DataTerm(g, rho_c, l_t * grad, inv_grad)


def _primal_dual_step(
    u: torch.Tensor, px: torch.Tensor, py: torch.Tensor, data: _DataTerm, p: TVL1Params
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One inner iteration: thresholding v = u + TH(rho(u)) (``estimateV``), u = v + theta
    div p (``estimateU``), then the dual step p = (p + tau/theta grad u) / (1 + tau/theta
    |grad u|) (``estimateDualVariables``). In-place where it saves memory traffic."""
    l_t = p.lambda_ * p.theta
    taut = p.tau / p.theta
    rho = torch.addcmul(data.rho_c, data.g[:, :1], u[:, :1])
    for c in range(1, u.shape[1]):
        rho.addcmul_(data.g[:, c : c + 1], u[:, c : c + 1])
    neg_rho = -rho  # -rho > l_t_grad is rho < -l_t_grad, exactly, one op fewer
    mid = torch.where(rho > data.l_t_grad, -l_t, neg_rho * data.inv_grad)
    step = torch.where(neg_rho > data.l_t_grad, l_t, mid)
    u_new = torch.addcmul(u, step, data.g).add_(_divergence(px, py), alpha=p.theta)
    ux, uy = _forward_gradient(u_new)
    norm = torch.hypot(ux, uy).mul_(taut).add_(1.0)
    return u_new, px.add(ux, alpha=taut).div_(norm), py.add(uy, alpha=taut).div_(norm)


def _one_scale(i0: torch.Tensor, i1: torch.Tensor, u: torch.Tensor, p: TVL1Params) -> torch.Tensor:
    """Refine the flow ``u`` (N, 2, H, W), or (N, 3, H, W) with the illumination term u3 when
    ``gamma`` is set, at one pyramid level (OpenCV's ``procOneScale``)."""
    n, _, h, w = u.shape
    scaled_epsilon = p.epsilon * p.epsilon * h * w
    i1_stack = torch.cat((i1, *_centered_gradient(i1)), dim=1).double()  # see _warp
    px = torch.zeros_like(u)
    py = torch.zeros_like(u)
    for _ in range(p.warps):
        data = _data_term(i0, i1_stack, u, p.gamma, p.lambda_ * p.theta)
        # "epsilon" stopping: pairs still running this warp; masks only once some have stopped.
        active = torch.ones(n, 1, 1, 1, dtype=torch.bool, device=u.device)
        n_active = n
        for _ in range(p.outer_iterations):
            if p.median_filtering > 1:
                blurred = _median_blur(u[:, :2], p.median_filtering)
                if n_active < n:
                    blurred = torch.where(active, blurred, u[:, :2])
                u = torch.cat((blurred, u[:, 2:]), 1)
            for _ in range(p.inner_iterations):
                u_new, px_new, py_new = _primal_dual_step(u, px, py, data, p)
                if p.stopping == "epsilon":
                    error = (u_new - u).square_().sum((1, 2, 3)).view(n, 1, 1, 1)
                    if n_active < n:
                        u_new = torch.where(active, u_new, u)
                        px_new = torch.where(active, px_new, px)
                        py_new = torch.where(active, py_new, py)
                    active &= error > scaled_epsilon
                    n_active = int(active.sum())  # the one host sync of "epsilon" stopping
                u, px, py = u_new, px_new, py_new
                if n_active == 0:
                    break
            if n_active == 0:
                break  # every pair has converged at this warp
    return u


def tvl1_flow(prev: torch.Tensor, nxt: torch.Tensor, **params) -> torch.Tensor:
    """(N, H, W, 2) float32 Dual TV-L1 flow (u rightwards, v downwards, pixels) from each
    ``prev[i]`` to ``nxt[i]``, on their device.

    ``prev``, ``nxt``: (N, H, W) or (N, 1, H, W) gray images, uint8 or float 0..255 (OpenCV
    scales float input by 255; here float is taken as already 0..255). ``params``: the fields
    of :class:`TVL1Params` (OpenCV's defaults).
    """
    p = TVL1Params(**params)
    if prev.shape != nxt.shape:
        raise ValueError(
            f"prev and nxt must have the same shape, not {tuple(prev.shape)} and {tuple(nxt.shape)}"
        )
    i0s = [_as_gray_batch(prev, "prev")]
    i1s = [_as_gray_batch(nxt.to(prev.device), "nxt")]
    n, _, height, width = i0s[0].shape
    if height < 3 or width < 3:
        raise ValueError(f"images must be at least 3x3, not {height}x{width}")
    sizes = _pyramid_sizes(height, width, p)
    down = (1.0 / p.scale_step, 1.0 / p.scale_step)
    for size in sizes[1:]:
        i0s.append(_resize_linear(i0s[-1], size, down))
        i1s.append(_resize_linear(i1s[-1], size, down))
    channels = 3 if p.gamma != 0 else 2
    u = torch.zeros(n, channels, *sizes[-1], dtype=torch.float32, device=i0s[0].device)
    for level in range(len(sizes) - 1, -1, -1):
        u = _one_scale(i0s[level], i1s[level], u, p)
        if level == 0:
            break
        (h, w), (fine_h, fine_w) = sizes[level], sizes[level - 1]
        u = _resize_linear(u, (fine_h, fine_w), (h / fine_h, w / fine_w))
        u = torch.cat((u[:, :2] / p.scale_step, u[:, 2:]), 1)  # u3 is not a length
    return u[:, :2].permute(0, 2, 3, 1).contiguous()


def _gray_stack(images: np.ndarray, name: str) -> np.ndarray:
    """(N, H, W) uint8 gray from (N, H, W) gray or (N, H, W, C) BGR / BGRA / gray images, with
    OpenCV's weights (``cv2.cvtColor``, as ``faces.to_gray``), all in one call."""
    if images.ndim == 3:
        return images
    if images.ndim != 4 or images.shape[3] not in (1, 3, 4):
        raise ValueError(f"{name} must be (N, H, W) or (N, H, W, 1|3|4), not {images.shape}")
    if images.shape[3] == 1:
        return images[..., 0]
    n, h, w, c = images.shape
    code = cv2.COLOR_BGRA2GRAY if c == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(np.ascontiguousarray(images).reshape(n * h, w, c), code).reshape(n, h, w)


def tvl1_batch(
    prev: np.ndarray, nxt: np.ndarray, device: str | torch.device = "cpu", **params
) -> np.ndarray:
    """(N, H, W, 2) float32 flows from ``prev[i]`` to ``nxt[i]`` ((N, H, W) gray or
    (N, H, W, 3) BGR uint8), computed on ``device`` in one batch; ``params`` as
    :func:`tvl1_flow`. The numpy face of the torch code, shaped like ``flow.tvl1``'s output."""
    if prev.shape != nxt.shape:
        raise ValueError(f"prev and nxt must have the same shape, not {prev.shape} and {nxt.shape}")
    i0 = torch.as_tensor(np.ascontiguousarray(_gray_stack(prev, "prev")), device=device)
    i1 = torch.as_tensor(np.ascontiguousarray(_gray_stack(nxt, "nxt")), device=device)
    return tvl1_flow(i0, i1, **params).cpu().numpy()
