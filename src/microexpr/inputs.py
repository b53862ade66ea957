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
from pydantic import BaseModel, ConfigDict
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from microexpr.errors import DataError
from microexpr.models.registry import ModelInfo
from microexpr.preprocess.flow import flow_sequence
from microexpr.preprocess.temporal import Method, resample
from microexpr.samples import Sample

Scaling = Literal["raw", "unit", "imagenet"]
# ImageNet statistics in OpenCV's BGR order, and OpenCV's BGR -> gray weights.
_MEAN_BGR = (0.406, 0.456, 0.485)
_STD_BGR = (0.225, 0.224, 0.229)
_GRAY_BGR = (0.114, 0.587, 0.299)


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
    array = scale_array(image.astype(np.float32).transpose(2, 0, 1), scaling)
    return np.ascontiguousarray(array)


def scale_array(array: np.ndarray, scaling: Scaling) -> np.ndarray:
    """Channels-first 0..255 float32 pixels (C, ...) scaled as ``to_chw`` describes."""
    if scaling == "raw":
        return array
    array = array / np.float32(255.0)
    if scaling == "imagenet":
        shape = (-1,) + (1,) * (array.ndim - 1)
        mean = np.array(_MEAN_BGR[: array.shape[0]], np.float32).reshape(shape)
        std = np.array(_STD_BGR[: array.shape[0]], np.float32).reshape(shape)
        array = (array - mean) / std
    return array


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


# --------------------------------------------------------------------------------------------
# Clips for 3-D models: frames (input kind "clip") and optical-flow sequences ("flow_clip")
# --------------------------------------------------------------------------------------------

CLIP_KINDS = ("clip", "flow_clip")


class ClipConfig(BaseModel):
    """How samples become fixed-length clips for 3-D models (2-D models ignore it).

    num_frames: clip length (default: the model's ``num_frames``).
    span: ``all`` frames of the sample, or ``expression`` = onset..offset where both are coded.
    longer: a clip longer than ``num_frames`` gives a random ``window`` of consecutive frames
        per read in training (seed S3; at test the window centred on the apex, else the
        middle) or is ``resample``-d to the length. Shorter clips are always resampled.
    resample: ``linear`` or ``tim`` (preprocess.temporal).
    gray: read frames as gray (seed S3 greys its input); repeated to the model's channels.
    subtract_first: frame clips become differences from their first frame (after scaling):
        the subject's appearance cancels and the motion remains. Not in seed S3 (off in its
        configs); the small synthetic runs of docs/models3d.md show why it is offered.
    expand: seed S3's x10 training set: original and mirror, each also rotated by ``angles``.
    flow_reference: flow clips hold the flow from the first frame (``onset``: displacement so
        far) or from the ``previous`` frame (velocity); see docs/models3d.md.
    flow_method / flow_size: preprocess.flow method, and the frame size flow is computed at
        (default: the input size).
    """

    model_config = ConfigDict(extra="forbid")

    num_frames: int | None = None
    span: Literal["all", "expression"] = "all"
    longer: Literal["window", "resample"] = "window"
    resample: Method = "linear"
    gray: bool = False
    subtract_first: bool = False
    expand: bool = False
    angles: tuple[float, ...] = (5.0, -5.0, 10.0, -10.0)
    flow_reference: Literal["onset", "previous"] = "onset"
    flow_method: str = "tvl1"
    flow_size: int | None = None


def clip_span(sample: Sample, span: str) -> tuple[tuple[Path, ...], int | None]:
    """The sample's frames to use and the apex index within them (``None`` if not coded)."""
    if not sample.frames:
        raise DataError(sample.id, "sample has no frames (a clip model needs a frame folder)")
    first, last = 0, len(sample.frames) - 1
    if span == "expression" and sample.onset is not None and sample.offset is not None:
        first, last = sample.onset, sample.offset
    apex = sample.apex - first if sample.apex is not None and first <= sample.apex <= last else None
    return sample.frames[first : last + 1], apex


def read_clip(paths: Sequence[Path], size: int, gray: bool = False) -> np.ndarray:
    """(T, size, size, C) uint8 frames, C = 1 (gray) or 3 (BGR)."""
    frames = []
    for path in paths:
        image = read_image(path, gray=gray)
        if image.shape[:2] != (size, size):
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        frames.append(image.reshape(size, size, -1))
    return np.stack(frames)


def flow_clip(frames: np.ndarray, num_frames: int, cfg: ClipConfig, size: int) -> np.ndarray:
    """(num_frames, size, size, 3) float16 u, v, strain of a clip, normalised per clip.

    The clip is first resampled to ``num_frames + 1`` frames (flow needs pairs), so the whole
    expression is covered. u and v are divided by their largest absolute value in the clip
    (direction and relative speed kept), strain by its largest value: absolute flow scales
    differ between databases (frame rate, face size) far more than the motion patterns do.
    """
    if len(frames) != num_frames + 1:
        frames = resample(frames, num_frames + 1, cfg.resample)
    flow = flow_sequence(list(frames), cfg.flow_reference, cfg.flow_method, size=size)
    motion = np.abs(flow[..., :2]).max()
    strain = flow[..., 2].max()
    flow[..., :2] /= motion if motion > 0 else 1.0
    flow[..., 2] /= strain if strain > 0 else 1.0
    return flow.astype(np.float16)


def clip_length(cfg: ClipConfig, info: ModelInfo) -> int:
    """Frames per clip: the config's, else the model's (16 if it declares none)."""
    return cfg.num_frames or info.num_frames or 16


def load_clips(
    samples: Sequence[Sample],
    info: ModelInfo,
    cfg: ClipConfig,
    size: int | None = None,
    progress: bool = False,
) -> tuple[list[np.ndarray], list[int | None]]:
    """Every sample's clip held in memory (uint8 frames, or float16 flow sequences for
    ``flow_clip`` models) and its apex index in that clip."""
    if info.input_kind not in CLIP_KINDS:
        raise ValueError(f"{info.name} takes {info.input_kind}, not a clip")
    side = size or info.input_size
    num_frames = clip_length(cfg, info)
    clips, apexes = [], []
    for sample in tqdm(samples, desc="reading clips", disable=not progress, leave=False):
        paths, apex = clip_span(sample, cfg.span)
        if info.input_kind == "clip":
            clips.append(read_clip(paths, side, cfg.gray))
            apexes.append(apex)
        else:
            frames = read_clip(paths, cfg.flow_size or side)
            clips.append(flow_clip(frames, num_frames, cfg, side))
            apexes.append(None)
    return clips, apexes


def clip_variants(expand: bool, angles: Sequence[float]) -> list[tuple[bool, float]]:
    """(mirror, degrees) of each copy: seed S3's original, 4 rotations, mirror, 4 rotations."""
    if not expand:
        return [(False, 0.0)]
    return [(mirror, angle) for mirror in (False, True) for angle in (0.0, *angles)]


def transform_clip(clip: np.ndarray, mirror: bool, angle: float, flow: bool) -> np.ndarray:
    """The same mirror-then-rotate applied to every frame of a (T, H, W, C) clip.

    For flow clips the u/v vectors are mapped by the same linear part, so a mirrored or
    rotated flow field still describes the mirrored or rotated motion (strain is a scalar).
    Frames extend their border (Keras' ``nearest``), flow fields pad with no motion.
    """
    if not mirror and angle == 0.0:
        return clip
    h, w = clip.shape[1:3]
    flip = np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    rotate = np.vstack([cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0), [0, 0, 1]])
    matrix = (rotate @ flip if mirror else rotate)[:2]
    border = cv2.BORDER_CONSTANT if flow else cv2.BORDER_REPLICATE
    source = clip.astype(np.float32) if flow else clip
    out = np.stack(
        [
            cv2.warpAffine(frame, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=border)
            for frame in source
        ]
    ).reshape(source.shape)
    if flow:
        out[..., :2] = out[..., :2] @ matrix[:, :2].T.astype(np.float32)
    return out


def fixed_length(clip: np.ndarray, num_frames: int, start: int, longer: str, method: Method):
    """``num_frames`` frames: the window at ``start`` or the resampled clip."""
    if len(clip) == num_frames:
        return clip
    if len(clip) > num_frames and longer == "window":
        return clip[start : start + num_frames]
    return resample(clip, num_frames, method)


def _centred_start(length: int, num_frames: int, apex: int | None) -> int:
    centre = apex if apex is not None else (length - 1) // 2
    return int(np.clip(centre - num_frames // 2, 0, max(length - num_frames, 0)))


class ClipDataset(Dataset):
    """(C, T, H, W) float tensors and labels from clips held in memory.

    Frames stay uint8 until read; each read of a training clip longer than ``num_frames``
    draws a new random window (torch's generator, so the trainer's seed fixes it). With
    ``variants`` (``clip_variants``) the set is that many times longer, copy-major, so an
    unshuffled loader still mixes clips.
    """

    def __init__(
        self,
        clips: Sequence[np.ndarray],
        targets: torch.Tensor,
        num_frames: int,
        in_chans: int,
        train: bool,
        cfg: ClipConfig,
        apexes: Sequence[int | None] | None = None,
        scaling: Scaling = "unit",
        flow: bool = False,
    ):
        self.clips, self.targets = list(clips), targets
        self.apexes = list(apexes) if apexes is not None else [None] * len(self.clips)
        self.num_frames, self.in_chans, self.train = num_frames, in_chans, train
        self.cfg, self.scaling, self.flow = cfg, scaling, flow
        self.variants = clip_variants(cfg.expand and train, cfg.angles)

    def __len__(self) -> int:
        return len(self.clips) * len(self.variants)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        item, copy = index % len(self.clips), index // len(self.clips)
        clip = self.clips[item]
        spare = len(clip) - self.num_frames
        if self.train and spare > 0:
            start = int(torch.randint(0, spare + 1, ()).item())
        else:
            start = _centred_start(len(clip), self.num_frames, self.apexes[item])
        clip = fixed_length(clip, self.num_frames, start, self.cfg.longer, self.cfg.resample)
        clip = transform_clip(clip, *self.variants[copy], flow=self.flow)
        array = clip.astype(np.float32).transpose(3, 0, 1, 2)  # (C, T, H, W)
        if not self.flow:
            array = scale_array(_match_channels(array, self.in_chans), self.scaling)
            if self.cfg.subtract_first:
                array = array - array[:, :1]
        return torch.from_numpy(np.ascontiguousarray(array)), self.targets[item]


def _match_channels(array: np.ndarray, in_chans: int) -> np.ndarray:
    """Gray repeated to ``in_chans``; BGR greyed for a 1-channel model."""
    if array.shape[0] == in_chans:
        return array
    if array.shape[0] == 1:
        return np.repeat(array, in_chans, axis=0)
    if in_chans == 1:
        return (array * np.array(_GRAY_BGR, np.float32)[:, None, None, None]).sum(0, keepdims=True)
    raise ValueError(f"cannot turn {array.shape[0]} channels into {in_chans}")
