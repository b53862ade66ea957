"""Batched Dual TV-L1 in PyTorch (preprocess.tvl1_torch) against known flows and OpenCV."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from microexpr.preprocess import tvl1_torch
from microexpr.preprocess.tvl1_torch import TVL1Params, tvl1_batch, tvl1_flow

MARGIN = 8  # truth is scored inside: remap's reflected border is no consistent motion
FEW = {"warps": 2, "outer_iterations": 2, "inner_iterations": 10}  # quick, exact-ish settings


def texture(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth random texture, uint8 10..245, the kind of image TV-L1 is well posed on."""
    noise = np.random.default_rng(seed).uniform(0, 255, (height, width)).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), 1.5)
    return cv2.normalize(blurred, None, 10, 245, cv2.NORM_MINMAX).astype(np.uint8)


def displacement(kind: str, ys: np.ndarray, xs: np.ndarray, size: int) -> np.ndarray:
    """(..., 2) field: a sub-pixel translation or a smooth non-rigid one (about 1 px)."""
    if kind == "shift":
        return np.stack([np.full_like(xs, 0.6), np.full_like(xs, -0.35)], -1)
    u = 1.2 * np.sin(2 * np.pi * ys / size) * np.cos(np.pi * xs / size)
    v = 0.8 * np.cos(2 * np.pi * xs / size)
    return np.stack([u, v], -1)


def moved_pair(kind: str, seed: int, size: int = 64) -> tuple[np.ndarray, ...]:
    """(first, second, true flow): second(y) = first(y - d(y)) by cv2.remap, so the flow from
    first to second at x is d(y) with y = x + d(y), solved by fixed-point iteration."""
    first = texture(size, size, seed)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    d = displacement(kind, ys, xs, size)
    second = cv2.remap(
        first, xs - d[..., 0], ys - d[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )
    y = np.stack([xs, ys], -1)
    for _ in range(30):
        y = np.stack([xs, ys], -1) + displacement(kind, y[..., 1], y[..., 0], size)
    return first, second, (y - np.stack([xs, ys], -1)).astype(np.float32)


def epe(a: np.ndarray, b: np.ndarray, margin: int = MARGIN) -> float:
    """Mean end-point error between (H, W, 2) flows, ``margin`` pixels in from the border."""
    h, w = a.shape[:2]
    d = (a - b)[margin : h - margin, margin : w - margin]
    return float(np.hypot(d[..., 0], d[..., 1]).mean())


def opencv_flow(first: np.ndarray, second: np.ndarray, **params) -> np.ndarray:
    return cv2.optflow.DualTVL1OpticalFlow_create(**TVL1Params(**params).opencv()).calc(
        first, second, None
    )


@pytest.mark.parametrize("kind", ["shift", "smooth"])
def test_known_flows_are_recovered_as_well_as_opencv_does(kind):
    pairs = [moved_pair(kind, seed) for seed in (1, 2)]
    flows = tvl1_batch(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]))
    for (first, second, truth), flow in zip(pairs, flows, strict=True):
        ours, theirs = epe(flow, truth), epe(opencv_flow(first, second), truth)
        # Tolerance: 10 % of OpenCV's own error plus 0.005 px.
        assert ours <= 1.1 * theirs + 0.005, f"{kind}: EPE {ours:.4f} vs OpenCV {theirs:.4f}"
        assert ours < 0.15 * np.hypot(truth[..., 0], truth[..., 1]).mean()


@pytest.mark.parametrize("gamma", [0.0, 0.2])
def test_a_few_iterations_match_opencv_step_for_step(gamma):
    # No stopping rule and few iterations: too little for rounding to build up, so any
    # difference in the algorithm (pyramid, warp, thresholds, median, dual step) would show.
    first, second, _ = moved_pair("smooth", 3)
    ours = tvl1_batch(first[None], second[None], stopping="fixed", gamma=gamma, **FEW)[0]
    theirs = opencv_flow(first, second, stopping="fixed", gamma=gamma, **FEW)
    inside = np.abs(ours - theirs)[MARGIN:-MARGIN, MARGIN:-MARGIN]
    assert inside.max() < 1e-3
    assert epe(ours, theirs, margin=0) < 1e-3


def test_default_settings_agree_with_opencv():
    for kind, seed in (("shift", 4), ("smooth", 5)):
        first, second, _ = moved_pair(kind, seed)
        ours = tvl1_batch(first[None], second[None])[0]
        theirs = opencv_flow(first, second)
        # Inside, rounding differences stay small; on the border OpenCV is chaotic itself.
        assert epe(ours, theirs) < 0.01, kind
        assert epe(ours, theirs, margin=0) < 0.1, kind


def test_a_batch_gives_each_pair_its_one_by_one_flow():
    pairs = [moved_pair(kind, seed, 48) for kind, seed in (("shift", 6), ("smooth", 7))]
    still = texture(48, 48, 8)
    first = np.stack([pairs[0][0], still, pairs[1][0]])
    second = np.stack([pairs[0][1], still, pairs[1][1]])
    for stopping in ("epsilon", "fixed"):
        params = {"stopping": stopping, **(FEW if stopping == "fixed" else {})}
        batch = tvl1_batch(first, second, **params)
        alone = np.stack(
            [tvl1_batch(a[None], b[None], **params)[0] for a, b in zip(first, second, strict=True)]
        )
        assert np.abs(batch - alone).max() < 1e-3, stopping
        # Identical frames converge at once; the others running on must not move that pair.
        assert not batch[1].any(), stopping
        assert np.abs(batch[[0, 2]]).mean() > 0.3


def test_input_layouts_and_dtypes():
    first, second, _ = moved_pair("shift", 9, 48)
    flow = tvl1_flow(torch.from_numpy(first)[None], torch.from_numpy(second)[None], **FEW)
    assert flow.shape == (1, 48, 48, 2) and flow.dtype == torch.float32
    assert flow.device.type == "cpu"
    as_float = tvl1_flow(
        torch.from_numpy(first).float()[None, None],
        torch.from_numpy(second).float()[None, None],
        **FEW,
    )
    assert torch.equal(as_float, flow)

    # BGR input goes through OpenCV's gray weights, as flow.tvl1 does.
    bgr = np.random.default_rng(0).integers(0, 256, (2, 40, 56, 3), dtype=np.uint8)
    bgr = cv2.GaussianBlur(bgr.reshape(80, 56, 3), (0, 0), 1.5).reshape(2, 40, 56, 3)
    gray = np.stack([cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) for image in bgr])
    out = tvl1_batch(bgr[:1], bgr[1:], **FEW)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (1, 40, 56, 2)
    np.testing.assert_array_equal(out, tvl1_batch(gray[:1], gray[1:], **FEW))


def test_non_square_images_keep_u_horizontal_and_v_vertical():
    first = texture(40, 72, 10)
    ys, xs = np.mgrid[0:40, 0:72].astype(np.float32)
    second = cv2.remap(first, xs - 0.8, ys, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    inside = (slice(MARGIN, -MARGIN), slice(MARGIN, -MARGIN))
    wide = tvl1_batch(first[None], second[None])[0]
    u, v = wide[inside].reshape(-1, 2).mean(0)
    assert abs(u - 0.8) < 0.05 and abs(v) < 0.05
    tall = tvl1_batch(first.T[None], second.T[None])[0]  # the transposed pair moves down
    u, v = tall[inside].reshape(-1, 2).mean(0)
    assert abs(u) < 0.05 and abs(v - 0.8) < 0.05


def test_bad_input_raises_naming_the_shapes():
    a = np.zeros((2, 32, 32), np.uint8)
    with pytest.raises(ValueError, match=r"\(2, 32, 32\) and \(2, 32, 30\)"):
        tvl1_batch(a, np.zeros((2, 32, 30), np.uint8))
    with pytest.raises(ValueError, match=r"\(2, 32, 32\) and \(3, 32, 32\)"):
        tvl1_flow(torch.zeros(2, 32, 32), torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match=r"\(2, 3, 32, 32\)"):
        tvl1_flow(torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(2, 32, 32, 2\)"):
        tvl1_batch(np.zeros((2, 32, 32, 2), np.uint8), np.zeros((2, 32, 32, 2), np.uint8))
    with pytest.raises(ValueError, match="stopping"):
        tvl1_batch(a, a, stopping="sometimes")
    with pytest.raises(TypeError):
        tvl1_batch(a, a, innnerIterations=3)  # OpenCV's spelling is not a parameter here


@pytest.mark.parametrize("band", [None, 30])  # one band / bands of a row or two (CPU path)
@pytest.mark.parametrize("ksize", [3, 5])
def test_median_network_equals_cv2_median_blur(ksize, band, monkeypatch):
    if band is not None:
        monkeypatch.setattr(tvl1_torch, "MEDIAN_BAND_ELEMENTS", band)
    rng = np.random.default_rng(ksize)
    for shape in [(1, 1), (2, 9), (3, 4), (30, 28)]:
        for values in (rng.normal(size=shape), rng.integers(0, 4, shape)):  # ties too
            image = values.astype(np.float32)
            ours = tvl1_torch._median_blur(torch.from_numpy(image)[None, None], ksize)
            np.testing.assert_array_equal(ours[0, 0].numpy(), cv2.medianBlur(image, ksize))


def test_pyramid_resize_and_warp_equal_opencvs():
    image = np.random.default_rng(11).uniform(0, 255, (37, 45)).astype(np.float32)
    tensor = torch.from_numpy(image)[None, None]
    sizes = tvl1_torch._pyramid_sizes(37, 45, TVL1Params())
    level = image
    for size in sizes[1:]:
        level = cv2.resize(level, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
        assert level.shape == size
    assert len(sizes) == 4  # 37x45 -> 30x36 -> 24x29 -> 19x23; 15x18 is under 16 px
    down = tvl1_torch._resize_linear(tensor, (30, 36), (1.25, 1.25))[0, 0].numpy()
    expected = cv2.resize(image, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(down, expected, atol=1e-3)
    up = tvl1_torch._resize_linear(
        torch.from_numpy(expected)[None, None], (37, 45), (30 / 37, 36 / 45)
    )
    np.testing.assert_allclose(
        up[0, 0].numpy(), cv2.resize(expected, (45, 37), interpolation=cv2.INTER_LINEAR), atol=1e-3
    )
    flow = np.random.default_rng(12).normal(0, 3, (37, 45, 2)).astype(np.float32)  # some outside
    ys, xs = np.mgrid[0:37, 0:45].astype(np.float32)
    warped = tvl1_torch._warp(tensor.double(), torch.from_numpy(flow).permute(2, 0, 1)[None])
    expected = cv2.remap(image, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_CUBIC)
    np.testing.assert_allclose(warped[0, 0].numpy(), expected, atol=2e-3)
    # A zero flow gives I1 back exactly, as remap does: identical frames then have zero flow.
    still = tvl1_torch._warp(tensor.double(), torch.zeros(1, 2, 37, 45))
    assert torch.equal(still, tensor)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_gives_the_cpu_flow():
    pairs = [moved_pair(kind, seed) for kind, seed in (("shift", 13), ("smooth", 14))]
    first, second = (np.stack([p[i] for p in pairs]) for i in (0, 1))
    for params in ({"stopping": "fixed", **FEW}, {}):
        cpu = tvl1_batch(first, second, **params)
        gpu = tvl1_batch(first, second, device="cuda", **params)
        for a, b in zip(cpu, gpu, strict=True):
            assert epe(a, b) < 2e-3, params


def _pairs(n: int, size: int = 32) -> tuple[list[np.ndarray], list[np.ndarray]]:
    pairs = [moved_pair("smooth", seed, size)[:2] for seed in range(n)]
    return [a for a, _ in pairs], [b for _, b in pairs]


def test_flow_pairs_on_the_cpu_is_opencv_pair_by_pair(monkeypatch):
    from microexpr.preprocess import flow

    monkeypatch.setattr(flow, "_cuda_available", lambda: False)
    firsts, seconds = _pairs(3)
    expected = np.stack([flow.tvl1(a, b) for a, b in zip(firsts, seconds, strict=True)])
    np.testing.assert_array_equal(flow.flow_pairs(firsts, seconds, device="auto"), expected)
    np.testing.assert_array_equal(flow.flow_pairs(firsts, seconds, device="cpu"), expected)


def test_flow_pairs_batches_tvl1_on_a_gpu_and_nothing_else(monkeypatch):
    from microexpr.preprocess import flow

    calls = []

    def batch(prev, nxt, device):
        calls.append((prev.shape, device))
        return np.zeros((*prev.shape, 2), np.float32)

    monkeypatch.setattr(flow, "_cuda_available", lambda: True)
    monkeypatch.setattr(tvl1_torch, "tvl1_batch", batch)
    firsts, seconds = _pairs(4, 16)
    assert flow.flow_pairs(firsts, seconds).shape == (4, 16, 16, 2)
    assert calls == [((4, 16, 16), "cuda")]  # one batch for all pairs
    flow.flow_pairs(firsts, seconds, method="farneback")  # auto: farneback stays on the CPU
    assert len(calls) == 1
    with pytest.raises(ValueError, match="only tvl1 runs on cuda"):
        flow.flow_pairs(firsts, seconds, method="farneback", device="cuda")


def test_flow_sequence_goes_through_flow_pairs_unchanged(monkeypatch):
    from microexpr.preprocess import flow

    monkeypatch.setattr(flow, "_cuda_available", lambda: False)
    firsts, seconds = _pairs(1)
    frames = [firsts[0], seconds[0], firsts[0]]
    maps = flow.flow_sequence(frames)
    for i, frame in enumerate(frames[1:]):
        np.testing.assert_array_equal(maps[i, ..., :2], flow.tvl1(frames[0], frame))
