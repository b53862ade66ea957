"""Optical flow between frames, optical strain, and the u/v/strain encodings models read.

Flow is OpenCV's: Dual TV-L1 (contrib ``cv2.optflow``), the method STSTNet, Off-ApexNet and
most flow-based micro-expression code use, and Farneback as a fast alternative; many pairs of
one size at once (:func:`flow_pairs`) run the batched PyTorch Dual TV-L1 on a CUDA GPU. Arrays are
(H, W, 2) float32 with ``flow[..., 0]`` = u (rightwards) and ``flow[..., 1]`` = v (downwards),
in pixels, mapping the first frame onto the second.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Literal

import cv2
import numpy as np

from microexpr.preprocess.faces import to_gray
from microexpr.registry import Registry
from microexpr.spec import FLOW_IMAGE_CHANNELS

FlowFn = Callable[..., np.ndarray]


def tvl1(prev: np.ndarray, nxt: np.ndarray, **params) -> np.ndarray:
    """Dual TV-L1 flow from ``prev`` to ``nxt`` (BGR or gray uint8).

    ``params`` go to ``cv2.optflow.DualTVL1OpticalFlow_create`` unchanged (tau, lambda_,
    theta, nscales, warps, epsilon, innnerIterations, outerIterations, scaleStep, gamma,
    medianFiltering); OpenCV's defaults otherwise.
    """
    algorithm = cv2.optflow.DualTVL1OpticalFlow_create(**params)
    return algorithm.calc(to_gray(prev), to_gray(nxt), None)


def farneback(
    prev: np.ndarray,
    nxt: np.ndarray,
    pyr_scale: float = 0.5,
    levels: int = 3,
    winsize: int = 15,
    iterations: int = 3,
    poly_n: int = 5,
    poly_sigma: float = 1.2,
    flags: int = 0,
) -> np.ndarray:
    """Farneback flow from ``prev`` to ``nxt`` with OpenCV's customary parameters."""
    return cv2.calcOpticalFlowFarneback(
        to_gray(prev),
        to_gray(nxt),
        None,
        pyr_scale,
        levels,
        winsize,
        iterations,
        poly_n,
        poly_sigma,
        flags,
    )


FLOW_METHODS: Registry[FlowFn] = Registry("flow method")
FLOW_METHODS.add("tvl1", tvl1)
FLOW_METHODS.add("farneback", farneback)


def compute_flow(prev: np.ndarray, nxt: np.ndarray, method: str = "tvl1", **params) -> np.ndarray:
    """Flow by method name (``FLOW_METHODS``)."""
    return FLOW_METHODS.get(method)(prev, nxt, **params)


def flow_pairs(
    prevs: Sequence[np.ndarray],
    nexts: Sequence[np.ndarray],
    method: str = "tvl1",
    device: str = "auto",
) -> np.ndarray:
    """(N, H, W, 2) flows from ``prevs[i]`` to ``nexts[i]`` (frames of one size), defaults of
    ``method``.

    ``device``: ``cpu`` runs OpenCV one pair at a time; a CUDA device runs Dual TV-L1 as one
    batch in PyTorch (``tvl1_torch``, OpenCV's algorithm and defaults); ``auto`` takes CUDA
    when there is a GPU and the method is ``tvl1``. On a CPU the batched version is slower
    than OpenCV on 28 px faces, at most 1.6x faster on 224 px with one thread and 3-6x
    slower with two (BENCHMARKS.md, "Dual TV-L1"), so ``auto`` keeps OpenCV there.
    """
    if len(prevs) != len(nexts):
        raise ValueError(f"{len(prevs)} first frames for {len(nexts)} second frames")
    if device == "auto":
        device = "cuda" if method == "tvl1" and _cuda_available() else "cpu"
    if device != "cpu" and prevs:
        if method != "tvl1":
            raise ValueError(f"only tvl1 runs on {device}; {method} runs on the cpu")
        from microexpr.preprocess.tvl1_torch import tvl1_batch

        return tvl1_batch(np.stack(prevs), np.stack(nexts), device)
    method_fn = FLOW_METHODS.get(method)
    return np.stack([method_fn(a, b) for a, b in zip(prevs, nexts, strict=True)])


@functools.cache
def _cuda_available() -> bool:
    """Asked once per process: ``flow_pairs`` may be called for every frame pair."""
    import torch

    return torch.cuda.is_available()


def optical_strain(flow: np.ndarray) -> np.ndarray:
    """Strain magnitude sqrt(u_x^2 + v_y^2 + 0.5 (u_y + v_x)^2) per pixel, float32.

    That is the Frobenius norm of the infinitesimal strain tensor e = (J + J^T) / 2 of the flow
    Jacobian J (the off-diagonal e_xy = (u_y + v_x) / 2 counts twice), as in the strain
    channel of STSTNet's public preprocessing. Derivatives are central differences
    (one-sided at the border) via ``np.gradient``.
    """
    u_y, u_x = np.gradient(flow[..., 0].astype(np.float64))
    v_y, v_x = np.gradient(flow[..., 1].astype(np.float64))
    return np.sqrt(u_x**2 + v_y**2 + 0.5 * (u_y + v_x) ** 2).astype(np.float32)


def magnitude(flow: np.ndarray) -> np.ndarray:
    """Per-pixel flow speed in pixels."""
    return np.hypot(flow[..., 0], flow[..., 1])


def minmax_uint8(channel: np.ndarray) -> np.ndarray:
    """Channel scaled so its minimum is 0 and its maximum 255 (all zeros when constant)."""
    return cv2.normalize(channel.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).round()


def encode_flow_image(flow: np.ndarray, size: int | None = 28) -> np.ndarray:
    """(size, size, 3) uint8 image, channels (in OpenCV's BGR order) strain, v, u
    (``spec.FLOW_IMAGE_CHANNELS``: u, v, strain as R, G, B, as the composite's files are).

    The ``norm_u_v_os`` encoding of STSTNet's public code: strain from the full-resolution
    flow; u, v and strain resized to ``size`` by area averaging; then each channel min-max
    normalised to 0..255. Normalising after resizing matters: every published 28x28 image of
    the MEGC2019 composite spans exactly 0..255 in each channel.
    """
    maps = {"u": flow[..., 0], "v": flow[..., 1], "strain": optical_strain(flow)}
    stack = np.dstack([maps[name] for name in FLOW_IMAGE_CHANNELS]).astype(np.float32)
    if size is not None and stack.shape[:2] != (size, size):
        stack = cv2.resize(stack, (size, size), interpolation=cv2.INTER_AREA)
    return np.dstack([minmax_uint8(stack[..., c]) for c in range(3)]).astype(np.uint8)


def flow_image(
    onset: np.ndarray, apex: np.ndarray, size: int = 28, method: str = "tvl1", **params
) -> np.ndarray:
    """u/v/strain image of the motion from onset to apex (STSTNet's input)."""
    return encode_flow_image(compute_flow(onset, apex, method, **params), size)


def flow_sequence(
    frames: Sequence[np.ndarray],
    reference: Literal["onset", "previous"] = "onset",
    method: str = "tvl1",
    size: int | None = None,
    **params,
) -> np.ndarray:
    """(T - 1, H, W, 3) float32 of u, v, strain for each frame after the first.

    ``onset``: flow from ``frames[0]`` to each later frame (displacement so far, which peaks
    at the apex); ``previous``: flow between consecutive frames (velocity). ``size`` resizes
    each map by area averaging. Values stay in pixels; clip models normalise them. Without
    ``params`` the pairs go to :func:`flow_pairs` together (one batch on a GPU).
    """
    if len(frames) < 2:
        raise ValueError("a flow sequence needs at least 2 frames")
    if reference not in ("onset", "previous"):
        raise ValueError(f"reference must be 'onset' or 'previous', not {reference!r}")
    starts = [frames[0] if reference == "onset" else frames[i - 1] for i in range(1, len(frames))]
    if params:  # OpenCV's keywords: one pair at a time
        flows = [
            compute_flow(a, b, method, **params) for a, b in zip(starts, frames[1:], strict=True)
        ]
    else:
        flows = flow_pairs(starts, list(frames[1:]), method)
    out = []
    for flow in flows:
        stack = np.dstack([flow, optical_strain(flow)]).astype(np.float32)
        if size is not None and stack.shape[:2] != (size, size):
            stack = cv2.resize(stack, (size, size), interpolation=cv2.INTER_AREA)
        out.append(stack)
    return np.stack(out)
