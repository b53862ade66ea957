"""Samples -> model tensors, by a Plan: its preprocessing (through the feature cache), then
its InputSpec (size, channels, scaling) and, for 3-D models, its clip reading.

Training, ``predict`` and video analysis all call :func:`model_inputs` (or
:func:`inputs_from_arrays` for arrays a caller made with the same pipelines), so a model
sees at prediction time exactly what it saw in training. Small inputs (28x28 flow images,
apex crops) are held in memory: the whole composite set is 442 x 3 x 28 x 28 floats, and
every fold and epoch reuses it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from microexpr.config import ClipConfig, ResampleMethod, Scaling
from microexpr.errors import DataError
from microexpr.plan import Plan
from microexpr.preprocess.cache import FeatureCache, prepare
from microexpr.preprocess.frames import read_image, still_frame
from microexpr.preprocess.pipelines import resolve_preprocess, run_pipeline
from microexpr.preprocess.temporal import resample
from microexpr.samples import Sample
from microexpr.spec import InputSpec

# ImageNet statistics in OpenCV's BGR order, and OpenCV's BGR -> gray weights.
_MEAN_BGR = (0.406, 0.456, 0.485)
_STD_BGR = (0.225, 0.224, 0.229)
_GRAY_BGR = (0.114, 0.587, 0.299)


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
    if scaling == "flow_max":
        raise ValueError("flow_max scales flow clips, not pixels")
    array = array / np.float32(255.0)
    if scaling == "imagenet":
        shape = (-1,) + (1,) * (array.ndim - 1)
        mean = np.array(_MEAN_BGR[: array.shape[0]], np.float32).reshape(shape)
        std = np.array(_STD_BGR[: array.shape[0]], np.float32).reshape(shape)
        array = (array - mean) / std
    return array


def normalise_flow(flow: np.ndarray) -> np.ndarray:
    """u and v over their largest magnitude in the clip (direction and relative speed kept),
    strain over its largest value: absolute flow scales differ between databases (frame rate,
    face size) far more than the motion patterns do. float16, as clips are held."""
    flow = flow.astype(np.float32)
    motion = np.abs(flow[..., :2]).max()
    strain = flow[..., 2].max()
    flow[..., :2] /= motion if motion > 0 else 1.0
    flow[..., 2] /= strain if strain > 0 else 1.0
    return flow.astype(np.float16)


def encode_labels(samples: Sequence[Sample], classes: Sequence[str]) -> torch.Tensor:
    """Class indices; a label outside ``classes`` names the sample."""
    index = {c: i for i, c in enumerate(classes)}
    try:
        return torch.tensor([index[s.label] for s in samples], dtype=torch.long)
    except KeyError as err:
        bad = next(s for s in samples if s.label not in index)
        raise DataError(bad.id, f"label {bad.label!r} not in classes {list(classes)}") from err


# --------------------------------------------------------------------------------------------
# What preprocessing gives per sample (a dict of arrays) and what the model reads of it
# --------------------------------------------------------------------------------------------


def read_as_is(sample: Sample, spec: InputSpec) -> dict[str, np.ndarray]:
    """The reader's own file as the input, when no preprocessing is needed: the flow image
    (``Sample.path``) for a flow model, else the sample's still (apex) frame."""
    gray = spec.in_chans == 1
    if spec.kind == "flow_image":
        if sample.path is None:
            raise DataError(sample.id, "sample has no flow image (path)")
        return {"image": read_image(sample.path, gray=gray)}
    return {"image": read_image(still_frame(sample), gray=gray)}


def sample_arrays(
    samples: Sequence[Sample],
    plan: Plan,
    cache: str | Path | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> tuple[list[Sample], list[dict[str, np.ndarray]], dict[str, str]]:
    """Each sample's arrays by the Plan: its files as they are, or its preprocessing (through
    the feature cache at ``cache``, in ``workers`` processes; in this process without one).

    Returns the samples that could be read, their arrays, and sample id -> reason for those
    that could not (no face, unreadable frame): the caller decides whether that is fatal.
    """
    kept, arrays, failed = [], [], {}
    if plan.preprocess is not None and cache is not None:
        report = prepare(samples, plan.preprocess, cache, workers=workers, progress=progress)
        if progress:
            tqdm.write(
                f"{plan.preprocess.pipeline}: {report.computed} computed, {report.reused} reused "
                f"from the cache, {len(report.failed)} failed ({report.seconds:.1f} s; "
                f"{report.directory})",
                file=sys.stderr,
            )
        store = FeatureCache(Path(cache), resolve_preprocess(plan.preprocess))
        for sample in samples:
            if sample.id in report.failed:
                failed[sample.id] = report.failed[sample.id]
            else:
                kept.append(sample)
                arrays.append(store.load(sample))
        return kept, arrays, failed
    desc = "reading inputs" if plan.preprocess is None else f"{plan.preprocess.pipeline}"
    for sample in tqdm(samples, desc=desc, disable=not progress, leave=False):
        try:
            if plan.preprocess is None:
                arrays.append(read_as_is(sample, plan.input))
            else:
                arrays.append(run_pipeline(sample, plan.preprocess))
        except DataError as err:
            if plan.preprocess is None:
                raise  # the reader's own files: a missing one is the database's error
            failed[sample.id] = str(err)
            continue
        kept.append(sample)
    return kept, arrays, failed


@dataclass
class ModelInputs:
    """What a model reads for a list of samples: an (N, C, H, W) tensor for 2-D models, or
    clips held in memory (uint8 frames or float16 flow maps) with their apex positions."""

    plan: Plan
    samples: list[Sample]
    images: torch.Tensor | None = None
    clips: list[np.ndarray] = field(default_factory=list)
    apexes: list[int | None] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    def subset(
        self, indices: Sequence[int], targets: torch.Tensor | None = None, train: bool = False
    ) -> Dataset | tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        """Training data (``train``: inputs with ``targets``) or test inputs of ``indices``,
        in the forms ``train_fold`` and ``predict_proba`` take."""
        indices = list(indices)
        if targets is None:
            count = len(self.images) if self.images is not None else len(self.clips)
            targets = torch.zeros(count, dtype=torch.long)
        if self.images is not None:
            return (self.images[indices], targets[indices]) if train else self.images[indices]
        preprocess = self.plan.preprocess
        return ClipDataset(
            [self.clips[i] for i in indices],
            targets[indices],
            self.plan.input,
            self.plan.clip,
            preprocess.resample if preprocess is not None else "linear",
            train,
            [self.apexes[i] for i in indices],
        )


def model_inputs(
    samples: Sequence[Sample],
    plan: Plan,
    cache: str | Path | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> ModelInputs:
    """Every sample's model input by the Plan (see :func:`sample_arrays`)."""
    kept, arrays, failed = sample_arrays(samples, plan, cache, workers, progress)
    inputs = inputs_from_arrays(arrays, plan, kept)
    inputs.failed = failed
    return inputs


def inputs_from_arrays(
    arrays: Sequence[dict[str, np.ndarray]], plan: Plan, samples: Sequence[Sample] = ()
) -> ModelInputs:
    """Model inputs from pipeline outputs: ``{"image": HxW[xC] uint8}`` for 2-D models,
    ``{"frames": TxHxW[xC] uint8, "onset", "apex"}`` for clip models and
    ``{"flow": TxHxWx3 float}`` (u, v, strain in pixels) for flow-clip models."""
    spec = plan.input
    inputs = ModelInputs(plan, list(samples))
    if not spec.is_clip:
        chw = [to_chw(a["image"], spec.size, spec.in_chans, spec.scaling) for a in arrays]
        shape = (0, spec.in_chans, spec.size, spec.size)
        inputs.images = torch.from_numpy(np.stack(chw)) if chw else torch.empty(shape)
        return inputs
    for a in arrays:
        if spec.kind == "flow_clip":
            flow = a["flow"]
            inputs.clips.append(
                normalise_flow(flow) if spec.scaling == "flow_max" else flow.astype(np.float16)
            )
            inputs.apexes.append(None)
        else:
            frames = a["frames"]
            inputs.clips.append(frames if frames.ndim == 4 else frames[..., None])
            apex = int(a["apex"] - a["onset"]) if "apex" in a and "onset" in a else None
            inputs.apexes.append(apex if apex is not None and 0 <= apex < len(frames) else None)
    return inputs


# --------------------------------------------------------------------------------------------
# Clips for 3-D models: fixed length, seed S3's x10 copies, mirrored and rotated flow
# --------------------------------------------------------------------------------------------


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


def fixed_length(
    clip: np.ndarray, num_frames: int, start: int, longer: str, method: ResampleMethod
) -> np.ndarray:
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

    Frames stay uint8 until read; each read of a training clip longer than the spec's
    ``num_frames`` draws a new random window (torch's generator, so the trainer's seed fixes
    it). With ``clip.expand`` the training set is ten times longer, copy-major, so an
    unshuffled loader still mixes clips. Flow clips are read as they are held (already
    scaled); frame clips get the spec's channels and scaling.
    """

    def __init__(
        self,
        clips: Sequence[np.ndarray],
        targets: torch.Tensor,
        spec: InputSpec,
        clip: ClipConfig,
        resample_method: ResampleMethod,
        train: bool,
        apexes: Sequence[int | None] | None = None,
    ):
        if spec.num_frames is None:
            raise ValueError("a clip dataset needs the spec's num_frames")
        self.clips, self.targets = list(clips), targets
        self.apexes = list(apexes) if apexes is not None else [None] * len(self.clips)
        self.spec, self.cfg, self.method, self.train = spec, clip, resample_method, train
        self.flow = spec.kind == "flow_clip"
        self.variants = clip_variants(clip.expand and train, clip.angles)

    def __len__(self) -> int:
        return len(self.clips) * len(self.variants)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        item, copy = index % len(self.clips), index // len(self.clips)
        clip, num_frames = self.clips[item], self.spec.num_frames
        spare = len(clip) - num_frames
        if self.train and spare > 0:
            start = int(torch.randint(0, spare + 1, ()).item())
        else:
            start = _centred_start(len(clip), num_frames, self.apexes[item])
        clip = fixed_length(clip, num_frames, start, self.cfg.longer, self.method)
        clip = transform_clip(clip, *self.variants[copy], flow=self.flow)
        array = clip.astype(np.float32).transpose(3, 0, 1, 2)  # (C, T, H, W)
        if not self.flow:
            array = _match_channels(array, self.spec.in_chans)
            array = scale_array(array, self.spec.scaling)
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
