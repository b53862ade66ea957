"""Random augmentation of whole training batches on their device: flips (negating the
horizontal flow of flow inputs), rotation, affine, grayscale, mixup. Image batches (B, C, H, W) get
one draw per image; clip batches (B, C, T, H, W) one draw per clip, applied identically to all
its frames.

Written over ``affine_grid``/``grid_sample`` because torchvision's transforms draw one set of
parameters per call (a Python loop over the batch for per-sample draws), and one batched
resampling does every geometric transform at once on CPU or GPU.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from microexpr.config import AugmentConfig
from microexpr.inference import reflect

# Luminance weights in the channel order inputs.py reads colour images: BGR.
_GRAY_BGR = (0.114, 0.587, 0.299)


def _uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, device=device) * (high - low) + low


def _sampling_matrices(
    cfg: AugmentConfig, n: int, height: int, width: int, device: torch.device
) -> torch.Tensor:
    """(n, 2, 3) matrices from output to input coordinates in affine_grid's [-1, 1] frame.

    Rotation and shear are built in pixel units and conjugated into the normalised frame, so
    non-square inputs are not distorted. The parameter ranges are symmetric, so the sampling
    matrix is drawn directly rather than inverting a drawn forward transform.
    """
    angle = torch.deg2rad(_uniform(n, -cfg.rotation, cfg.rotation, device))
    shear = torch.tan(torch.deg2rad(_uniform(n, -cfg.shear, cfg.shear, device)))
    zoom = 1.0 / _uniform(n, *cfg.scale, device)
    aspect = height / width
    cos, sin = torch.cos(angle), torch.sin(angle)
    linear = torch.stack(
        [
            torch.stack([cos, -sin * aspect], -1),
            torch.stack([sin / aspect, cos], -1),
        ],
        -2,
    )
    shear_matrix = torch.zeros(n, 2, 2, device=device)
    shear_matrix[:, 0, 0] = shear_matrix[:, 1, 1] = 1.0
    shear_matrix[:, 0, 1] = shear * aspect
    linear = linear @ shear_matrix * zoom[:, None, None]
    shift = _uniform(2 * n, -2 * cfg.translate, 2 * cfg.translate, device).view(n, 2, 1)
    return torch.cat([linear, shift], dim=2)


def augment_batch(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """A randomly transformed copy of a (B, C, H, W) or (B, C, T, H, W) batch."""
    if x.dim() not in (4, 5):
        raise ValueError(f"augment takes (B, C, H, W) or (B, C, T, H, W), not {tuple(x.shape)}")
    if not cfg.draws:
        return x
    shape = x.shape
    n, channels, height, width = shape[0], shape[1], shape[-2], shape[-1]
    device = x.device
    if cfg.grayscale and channels == 3:
        # Python-float weights: no host-to-device copy, so a CUDA graph can capture this.
        gray = sum(x[:, c : c + 1] * w for c, w in enumerate(_GRAY_BGR)).expand_as(x)
        pick = (torch.rand(n, device=device) < cfg.grayscale).view(n, *([1] * (x.dim() - 1)))
        x = torch.where(pick, gray, x)
    flip = torch.rand(n, device=device) < cfg.hflip
    if cfg.flip_reflect is not None:
        x = reflect(x, cfg.flip_reflect, flip)
    frames = x.reshape(n, -1, height, width)  # a clip's frames share its draw
    if cfg.geometric:
        theta = _sampling_matrices(cfg, n, height, width, device)
        theta[:, :, 0] = torch.where(flip[:, None], -theta[:, :, 0], theta[:, :, 0])
        grid = F.affine_grid(theta.to(frames.dtype), list(frames.shape), align_corners=False)
        frames = F.grid_sample(frames, grid, mode="bilinear", align_corners=False)
    elif cfg.hflip:
        frames = torch.where(flip.view(n, 1, 1, 1), frames.flip(-1), frames)
    return frames.reshape(shape)


def mix_batch(
    x: torch.Tensor, y: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup: ``x`` blended with a shuffled copy of itself, with the partners' labels and the
    weight ``lam`` of ``x`` (one Beta(alpha, alpha) draw per batch, as in Zhang et al.); the
    loss is ``lam * loss(y) + (1 - lam) * loss(partners)``. Draws from torch's global RNG."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    order = torch.randperm(len(x), device=x.device)
    return lam * x + (1.0 - lam) * x[order], y[order], lam
