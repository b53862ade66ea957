"""Samples -> tensors, by the input kind a model declares (flow image, apex image, ...).

Small inputs (28x28 flow images, apex crops) are read once into memory: the whole composite
set is 442 x 3 x 28 x 28 floats, and every fold and epoch reuses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from microexpr.datasets.errors import DataError
from microexpr.models.registry import ModelInfo
from microexpr.samples import Sample

Scaling = Literal["raw", "unit", "imagenet"]


def read_image(path: Path, gray: bool = False) -> np.ndarray:
    """BGR (or gray) uint8 image; a missing or unreadable file names itself."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(path, "missing or unreadable image")
    return image


def to_chw(image: np.ndarray, size: int, in_chans: int, scaling: Scaling) -> np.ndarray:
    """Resize to size x size, keep ``in_chans`` channels, scale, return float32 CHW.

    ``raw`` keeps 0..255 (the published STSTNet recipe), ``unit`` divides by 255,
    ``imagenet`` also standardises with ImageNet statistics (pretrained 2-D backbones).
    """
    if image.shape[0] != size or image.shape[1] != size:
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1 and in_chans == 3:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 3 and in_chans == 1:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[:, :, None]
    else:
        image = image[:, :, :in_chans]
    array = image.astype(np.float32).transpose(2, 0, 1)
    if scaling == "unit":
        array /= 255.0
    elif scaling == "imagenet":
        mean = np.array([0.406, 0.456, 0.485][:in_chans], np.float32)[:, None, None]  # BGR
        std = np.array([0.225, 0.224, 0.229][:in_chans], np.float32)[:, None, None]
        array = (array / 255.0 - mean) / std
    return np.ascontiguousarray(array)


def sample_image_path(sample: Sample, kind: str) -> Path:
    """The one file a 2-D model reads: the flow image, or the apex (else middle) frame."""
    if kind == "flow_image":
        if sample.path is None:
            raise DataError(sample.id, "sample has no flow image (path)")
        return sample.path
    if not sample.frames:
        if sample.path is not None:
            return sample.path
        raise DataError(sample.id, "sample has no frames")
    index = sample.apex if sample.apex is not None else len(sample.frames) // 2
    return sample.frames[index]


def load_images(
    samples: Sequence[Sample],
    info: ModelInfo,
    in_chans: int | None = None,
    size: int | None = None,
    scaling: Scaling = "raw",
    progress: bool = False,
) -> torch.Tensor:
    """(N, C, H, W) float tensor of every sample's image for a 2-D model."""
    if info.input_kind not in ("flow_image", "apex_image", "image"):
        raise ValueError(f"{info.name} takes {info.input_kind}, not a single image")
    chans = in_chans or info.in_chans
    side = size or info.input_size
    arrays = [
        to_chw(
            read_image(sample_image_path(s, info.input_kind), gray=chans == 1), side, chans, scaling
        )
        for s in tqdm(samples, desc="reading images", disable=not progress, leave=False)
    ]
    return torch.from_numpy(np.stack(arrays))


def encode_labels(samples: Sequence[Sample], classes: Sequence[str]) -> torch.Tensor:
    """Class indices; a label outside ``classes`` names the sample."""
    index = {c: i for i, c in enumerate(classes)}
    try:
        return torch.tensor([index[s.label] for s in samples], dtype=torch.long)
    except KeyError as err:
        bad = next(s for s in samples if s.label not in index)
        raise DataError(bad.id, f"label {bad.label!r} not in classes {list(classes)}") from err
