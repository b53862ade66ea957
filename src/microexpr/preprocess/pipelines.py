"""Named preprocessing pipelines: one Sample in, a dict of arrays out.

Every pipeline starts the same way (:func:`aligned_clip`): take the sample's frames from onset
to offset (all frames when not coded), put 68 landmarks on the first of them, align every
frame with that one similarity transform (eyes level, fixed inter-ocular distance), register
each aligned frame rigidly to the first (head drift), and optionally magnify the motion. Then:

* ``flow_image``: TV-L1 from onset to apex -> u/v/strain image (STSTNet / Off-ApexNet input);
* ``apex_face``: the aligned apex face (seed 002's input; seed 000's with ``region="mouth"``);
* ``face_clip``: the aligned clip resampled to ``num_frames`` (seed 003's 3-D CNN input);
* ``flow_clip``: flow from the onset (or previous frame) over the clip resampled to
  ``num_frames + 1`` frames -> ``num_frames`` u/v/strain maps in pixels (seed 004's input).

The apex is the coded one when there is one (``use_coded_apex``), else spotted by
``apex_method`` (seed 002's method, the flow baseline, or the middle frame).
A problem with the data (unreadable frame, no face, too few frames) raises ``DataError``
naming the sample's file, so a batch run can report it and go on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Literal

import numpy as np

from microexpr.errors import DataError
from microexpr.inputs import read_image
from microexpr.preprocess import faces, flow, magnify, spotting, temporal
from microexpr.registry import Registry
from microexpr.samples import Sample

PipelineName = Literal["flow_image", "apex_face", "face_clip", "flow_clip"]
DEFAULT_SIZE: dict[str, int] = {
    "flow_image": 28,
    "apex_face": 224,
    "face_clip": 128,
    "flow_clip": 112,
}


@dataclass(frozen=True)
class PrepareConfig:
    """Everything that changes a pipeline's output; its hash names the cache folder.

    size: output side (default per pipeline: ``DEFAULT_SIZE``). face_size: side of the
    aligned face that flow and spotting work on. eye_distance / eye_height: alignment
    (fractions of the side, see faces.face_alignment). region: crop a named region of the
    aligned face (faces.REGION_LANDMARKS, e.g. ``mouth``) for ``apex_face``. gray: one-channel
    face outputs. span: ``expression`` = onset..offset when coded, or ``all`` frames.
    apex_method: ``seed002`` | ``flow`` | ``middle`` when the apex is not coded (or
    ``use_coded_apex`` is off). num_frames / resample: clip length and ``linear`` | ``tim``.
    flow_method / flow_reference: ``tvl1`` | ``farneback``; ``onset`` | ``previous``.
    magnify_alpha > 0 magnifies the aligned clip (Eulerian, band magnify_low_hz..high_hz at
    the sample's fps) before anything else. upsample: face-detector upsampling.
    """

    pipeline: PipelineName = "flow_image"
    size: int | None = None
    face_size: int = 128
    eye_distance: float = 0.5
    eye_height: float = 0.3
    region: str | None = None
    gray: bool = False
    span: Literal["expression", "all"] = "expression"
    use_coded_apex: bool = True
    apex_method: Literal["seed002", "flow", "middle"] = "seed002"
    num_frames: int = 16
    resample: temporal.Method = "linear"
    flow_method: str = "tvl1"
    flow_reference: Literal["onset", "previous"] = "onset"
    magnify_alpha: float = 0.0
    magnify_low_hz: float = 0.5
    magnify_high_hz: float = 10.0
    upsample: int = 1

    def resolved(self) -> PrepareConfig:
        """The same config with defaults filled in (what the hash and config.json record)."""
        PIPELINES.get(self.pipeline)
        return replace(self, size=self.size or DEFAULT_SIZE[self.pipeline])

    def as_dict(self) -> dict:
        """Resolved settings as plain data (hashed for the cache folder, saved beside it)."""
        return asdict(self.resolved())


@dataclass
class AlignedClip:
    """Aligned frames of a sample, their landmarks, and which sample frames they are."""

    frames: list[np.ndarray]  # face_size x face_size (x3) uint8, registered to frames[0]
    landmarks: np.ndarray  # (68, 2) in aligned coordinates (of frames[0])
    indices: list[int]  # index in sample.frames of each frame
    # Aligned but not yet registered: apex spotting registers them its own way.
    unregistered: list[np.ndarray]


def span_of(sample: Sample, span: str) -> tuple[int, int]:
    """First and last index into ``sample.frames`` to use."""
    if not sample.frames:
        raise DataError(sample.path or sample.id, "sample has no frames")
    first, last = 0, len(sample.frames) - 1
    if span == "expression" and sample.onset is not None and sample.offset is not None:
        first, last = sample.onset, min(sample.offset, last)
    return first, last


def coded_apex(sample: Sample, config: PrepareConfig) -> int | None:
    """The coded apex when it is used and lies inside the span after its first frame."""
    first, last = span_of(sample, config.span)
    apex = sample.apex if config.use_coded_apex else None
    return apex if apex is not None and first < apex <= last else None


def aligned_clip(
    sample: Sample, config: PrepareConfig, indices: list[int] | None = None
) -> AlignedClip:
    """Read, align, stabilise (and magnify) the frames ``indices`` (default: the span)."""
    first, last = span_of(sample, config.span)
    indices = indices or list(range(first, last + 1))
    images = [read_image(sample.frames[i], gray=config.gray) for i in indices]
    landmarks = faces.detect_landmarks(images[0], config.upsample)
    if landmarks is None:
        raise DataError(sample.frames[indices[0]], "no face found")
    alignment = faces.face_alignment(
        landmarks, config.face_size, config.eye_distance, config.eye_height
    )
    unregistered = [alignment.apply(image) for image in images]
    aligned = unregistered
    if len(aligned) > 1:
        aligned = faces.stabilise(aligned, reference=0, motion="euclidean")
    if config.magnify_alpha > 0:
        if len(aligned) < 3 or not sample.fps:
            raise DataError(sample.frames[indices[0]], "magnification needs >= 3 frames and fps")
        aligned = list(
            magnify.magnify(
                aligned,
                sample.fps,
                config.magnify_alpha,
                config.magnify_low_hz,
                config.magnify_high_hz,
            )
        )
    return AlignedClip(aligned, alignment.points(landmarks), indices, unregistered)


def key_frames(sample: Sample, config: PrepareConfig) -> AlignedClip:
    """Onset and apex only when the apex is coded (two reads instead of a whole clip);
    otherwise, or when magnifying (a temporal filter), the whole span."""
    first, _ = span_of(sample, config.span)
    apex = coded_apex(sample, config)
    if apex is None or config.magnify_alpha > 0:
        return aligned_clip(sample, config)
    return aligned_clip(sample, config, [first, apex])


def apex_position(clip: AlignedClip, sample: Sample, config: PrepareConfig) -> int:
    """Apex as a position in ``clip.frames``: coded, else spotted (never the first frame
    when there is a later one)."""
    apex = coded_apex(sample, config)
    if apex is not None and apex in clip.indices:
        return clip.indices.index(apex)
    if len(clip.frames) == 1:
        return 0
    if config.apex_method == "middle" or len(clip.frames) < 2 * spotting.GAP:
        return max(1, len(clip.frames) // 2)
    if config.apex_method == "flow":
        return spotting.find_apex_flow(clip.unregistered, 0, None, clip.landmarks)
    return spotting.find_apex(clip.unregistered, 0, None, clip.landmarks)


def _resize_face(face: np.ndarray, config: PrepareConfig) -> np.ndarray:
    return faces.crop_box(face, (0, 0, config.face_size, config.face_size), config.size)


def flow_image_pipeline(sample: Sample, config: PrepareConfig) -> dict[str, np.ndarray]:
    """u/v/strain image (uint8, BGR order u, v, strain) of onset -> apex motion."""
    first, last = span_of(sample, config.span)
    if last <= first:
        raise DataError(sample.frames[first], "flow needs an onset and a later apex frame")
    clip = key_frames(sample, config)
    apex = apex_position(clip, sample, config)
    image = flow.flow_image(clip.frames[0], clip.frames[apex], config.size, config.flow_method)
    return {"image": image, "onset": np.int64(first), "apex": np.int64(clip.indices[apex])}


def apex_face_pipeline(sample: Sample, config: PrepareConfig) -> dict[str, np.ndarray]:
    """The aligned apex face (or one ``region`` of it) at ``size``, with its landmarks."""
    first, last = span_of(sample, config.span)
    single = last == first or (sample.apex == first and config.use_coded_apex)
    clip = aligned_clip(sample, config, [first]) if single else key_frames(sample, config)
    apex = apex_position(clip, sample, config)
    face, marks = clip.frames[apex], clip.landmarks
    if config.region:
        box = faces.region_box(marks, config.region)
        image = faces.crop_box(face, box, config.size)
        marks = (marks - box[:2]) * config.size / (box[2] - box[0])
    else:
        image = _resize_face(face, config)
        marks = marks * config.size / config.face_size
    return {
        "image": image,
        "landmarks": marks.astype(np.float32),
        "apex": np.int64(clip.indices[apex]),
    }


def face_clip_pipeline(sample: Sample, config: PrepareConfig) -> dict[str, np.ndarray]:
    """(num_frames, size, size[, 3]) uint8 aligned clip."""
    clip = aligned_clip(sample, config)
    frames = np.stack([_resize_face(f, config) for f in clip.frames])
    return {
        "frames": temporal.resample(frames, config.num_frames, config.resample),
        "apex": np.int64(clip.indices[apex_position(clip, sample, config)]),
    }


def flow_clip_pipeline(sample: Sample, config: PrepareConfig) -> dict[str, np.ndarray]:
    """(num_frames, size, size, 3) float16 u, v, strain in pixels of the aligned face."""
    clip = aligned_clip(sample, config)
    if len(clip.frames) < 2:
        raise DataError(sample.frames[clip.indices[0]], "a flow clip needs at least 2 frames")
    frames = temporal.resample(np.stack(clip.frames), config.num_frames + 1, config.resample)
    maps = flow.flow_sequence(
        list(frames), config.flow_reference, config.flow_method, size=config.size
    )
    return {"flow": maps.astype(np.float16)}


Pipeline = Callable[[Sample, PrepareConfig], dict[str, np.ndarray]]
PIPELINES: Registry[Pipeline] = Registry("pipeline")
PIPELINES.add("flow_image", flow_image_pipeline)
PIPELINES.add("apex_face", apex_face_pipeline)
PIPELINES.add("face_clip", face_clip_pipeline)
PIPELINES.add("flow_clip", flow_clip_pipeline)


def run_pipeline(sample: Sample, config: PrepareConfig) -> dict[str, np.ndarray]:
    """Arrays of one sample by ``config.pipeline``."""
    config = config.resolved()
    return PIPELINES.get(config.pipeline)(sample, config)
