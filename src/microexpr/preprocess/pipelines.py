"""Named preprocessing pipelines: one Sample in, a dict of arrays out.

Every pipeline starts the same way (:func:`aligned_clip`): take the sample's frames from onset
to offset (all frames when not coded; preprocess/frames.py decides), then with
``align="landmarks"`` put 68 landmarks on the first of them, align every frame with that one
similarity transform (eyes level, fixed inter-ocular distance) and register each aligned
frame rigidly to the first (head drift); with ``align="none"`` the whole frame is resized.
Optionally the motion is magnified. Then:

* ``flow_image``: TV-L1 from onset to apex -> u/v/strain image (STSTNet / Off-ApexNet input);
* ``apex_face``: the aligned apex face (seed 002's input; seed 000's with ``region="mouth"``);
* ``face_clip``: the aligned clip, resampled to ``num_frames`` when set (seed 003's input);
* ``flow_clip``: flow from the onset (or previous frame) over the clip resampled to
  ``num_frames + 1`` frames -> ``num_frames`` u/v/strain maps in pixels (seed 004's input);
* ``flow_regions``: HTNet's input, the flow image's four landmark-centred regions (eyes,
  mouth corners) tiled 2 x 2; it also starts from a reader's flow image and apex face.

The apex is the coded one when there is one (``use_coded_apex``), else spotted by
``apex_method``: ``region_difference`` (seed 002's region difference function),
``region_flow`` (flow magnitude in the same regions) or ``middle``.
A problem with the data (unreadable frame, no face, too few frames) raises ``DataError``
naming the sample's file, so a batch run can report it and go on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from microexpr.config import PreprocessConfig
from microexpr.errors import DataError
from microexpr.preprocess import faces, flow, magnify, spotting, temporal
from microexpr.preprocess.frames import coded_apex, read_image, span_of, still_frame
from microexpr.registry import Registry
from microexpr.samples import Sample

DEFAULT_SIZE: dict[str, int] = {
    "flow_image": 28,
    "apex_face": 224,
    "face_clip": 128,
    "flow_clip": 112,
    "flow_regions": 28,
}
# HTNet's four region centres on iBUG-68 landmarks, image left to right, eyes then mouth
# corners (its public code takes MTCNN's eyes and mouth corners): the mosaic's quadrants.
REGION_CENTRES: tuple[tuple[int, ...], ...] = (
    tuple(range(36, 42)),  # image-left eye (the subject's right), its centre
    tuple(range(42, 48)),  # image-right eye
    (48,),  # image-left mouth corner
    (54,),  # image-right mouth corner
)


def resolve_preprocess(config: PreprocessConfig) -> PreprocessConfig:
    """The same config with its pipeline's default size filled in and its names checked
    (what the cache hashes and records)."""
    if config.pipeline in ("auto", "none"):
        raise ValueError(f"pipeline {config.pipeline!r} is decided by the recipe, not runnable")
    PIPELINES.get(config.pipeline)
    if config.pipeline == "flow_clip" and config.num_frames is None:
        raise ValueError("a flow_clip needs num_frames (flow maps per clip)")
    flow.FLOW_METHODS.get(config.flow_method)
    if config.region is not None:
        faces.REGION_LANDMARKS.get(config.region)
    return config.model_copy(update={"size": config.size or DEFAULT_SIZE[config.pipeline]})


@dataclass
class AlignedClip:
    """Aligned frames of a sample, their landmarks, and which sample frames they are."""

    frames: list[np.ndarray]  # face_size x face_size (x3) uint8, registered to frames[0]
    landmarks: np.ndarray | None  # (68, 2) in aligned coordinates (of frames[0]); None: unknown
    indices: list[int]  # index in sample.frames of each frame
    # Aligned but not yet registered: apex spotting registers them its own way.
    unregistered: list[np.ndarray]
    source: str  # the first frame's file, for error messages


def aligned_clip(
    sample: Sample, config: PreprocessConfig, indices: list[int] | None = None
) -> AlignedClip:
    """Read, align, stabilise (and magnify) the frames ``indices`` (default: the span)."""
    first, last = span_of(sample, config.span)
    indices = indices or list(range(first, last + 1))
    images = [read_image(sample.frames[i], gray=config.gray) for i in indices]
    source = str(sample.frames[indices[0]])
    if config.align == "none":
        side = (config.face_size, config.face_size)
        frames = [cv2.resize(im, side, interpolation=cv2.INTER_AREA) for im in images]
        clip = AlignedClip(frames, None, indices, frames, source)
    else:
        landmarks = faces.detect_landmarks(images[0], config.upsample)
        if landmarks is None:
            raise DataError(source, "no face found")
        alignment = faces.face_alignment(
            landmarks, config.face_size, config.eye_distance, config.eye_height
        )
        unregistered = [alignment.apply(image) for image in images]
        aligned = unregistered
        if len(aligned) > 1:
            aligned = faces.stabilise(aligned, reference=0, motion="euclidean")
        clip = AlignedClip(aligned, alignment.points(landmarks), indices, unregistered, source)
    if config.magnify_alpha > 0:
        if len(clip.frames) < 3 or not sample.fps:
            raise DataError(source, "magnification needs >= 3 frames and fps")
        clip.frames = list(
            magnify.magnify(
                clip.frames,
                sample.fps,
                config.magnify_alpha,
                config.magnify_low_hz,
                config.magnify_high_hz,
            )
        )
    return clip


def landmarks_of(clip: AlignedClip, config: PreprocessConfig) -> np.ndarray:
    """The clip's landmarks, found on its first frame when alignment did not find them."""
    if clip.landmarks is None:
        clip.landmarks = faces.detect_landmarks(clip.frames[0], config.upsample)
        if clip.landmarks is None:
            raise DataError(clip.source, "no face found")
    return clip.landmarks


def key_frames(sample: Sample, config: PreprocessConfig) -> AlignedClip:
    """Onset and apex only when the apex is coded (two reads instead of a whole clip);
    otherwise, or when magnifying (a temporal filter), the whole span."""
    first, _ = span_of(sample, config.span)
    apex = coded_apex(sample, config.span, config.use_coded_apex)
    if apex is None or config.magnify_alpha > 0:
        return aligned_clip(sample, config)
    return aligned_clip(sample, config, [first, apex])


def apex_position(clip: AlignedClip, sample: Sample, config: PreprocessConfig) -> int:
    """Apex as a position in ``clip.frames``: coded, else spotted (never the first frame
    when there is a later one)."""
    apex = coded_apex(sample, config.span, config.use_coded_apex)
    if apex is not None and apex in clip.indices:
        return clip.indices.index(apex)
    if len(clip.frames) == 1:
        return 0
    if config.apex_method == "middle" or len(clip.frames) < 2 * spotting.GAP:
        return max(1, len(clip.frames) // 2)
    find = spotting.find_apex_flow if config.apex_method == "region_flow" else spotting.find_apex
    return find(clip.unregistered, 0, None, landmarks_of(clip, config))


def _resize_face(face: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    if face.shape[0] == config.size and face.shape[1] == config.size:
        return face
    return faces.crop_box(face, (0, 0, config.face_size, config.face_size), config.size)


def _onset_apex_flow(sample: Sample, config: PreprocessConfig) -> tuple[AlignedClip, dict]:
    """The aligned key frames and the ``flow_image`` pipeline's arrays."""
    first, last = span_of(sample, config.span)
    if last <= first:
        raise DataError(sample.frames[first], "flow needs an onset and a later apex frame")
    clip = key_frames(sample, config)
    apex = apex_position(clip, sample, config)
    image = flow.flow_image(clip.frames[0], clip.frames[apex], config.size, config.flow_method)
    return clip, {"image": image, "onset": np.int64(first), "apex": np.int64(clip.indices[apex])}


def flow_image_pipeline(sample: Sample, config: PreprocessConfig) -> dict[str, np.ndarray]:
    """u/v/strain image (uint8, BGR order u, v, strain) of onset -> apex motion."""
    return _onset_apex_flow(sample, config)[1]


def apex_face_pipeline(sample: Sample, config: PreprocessConfig) -> dict[str, np.ndarray]:
    """The aligned apex face (or one ``region`` of it) at ``size``, with its landmarks."""
    first, last = span_of(sample, config.span)
    single = last == first or (sample.apex == first and config.use_coded_apex)
    clip = aligned_clip(sample, config, [first]) if single else key_frames(sample, config)
    apex = apex_position(clip, sample, config)
    face, marks = clip.frames[apex], landmarks_of(clip, config)
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


def face_clip_pipeline(sample: Sample, config: PreprocessConfig) -> dict[str, np.ndarray]:
    """(T, size, size[, 3]) uint8 aligned clip: T = ``num_frames`` (resampled) or, when that
    is None, every frame of the span (models that read a random window per epoch). ``onset``
    and ``apex`` index ``sample.frames``."""
    clip = aligned_clip(sample, config)
    frames = np.stack([_resize_face(f, config) for f in clip.frames])
    if config.num_frames is not None:
        frames = temporal.resample(frames, config.num_frames, config.resample)
    return {
        "frames": frames,
        "onset": np.int64(clip.indices[0]),
        "apex": np.int64(clip.indices[apex_position(clip, sample, config)]),
    }


def flow_clip_pipeline(sample: Sample, config: PreprocessConfig) -> dict[str, np.ndarray]:
    """(num_frames, size, size, 3) float16 u, v, strain in pixels of the aligned face."""
    clip = aligned_clip(sample, config)
    if len(clip.frames) < 2:
        raise DataError(clip.source, "a flow clip needs at least 2 frames")
    frames = temporal.resample(np.stack(clip.frames), config.num_frames + 1, config.resample)
    maps = flow.flow_sequence(
        list(frames), config.flow_reference, config.flow_method, size=config.size
    )
    return {"flow": maps.astype(np.float16)}


def region_centres(landmarks: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """(4, 2) x, y of HTNet's region centres (``REGION_CENTRES``), landmarks scaled to the
    flow image by ``scale_x`` and ``scale_y``."""
    marks = np.asarray(landmarks, np.float64)
    centres = np.array([marks[list(points)].mean(axis=0) for points in REGION_CENTRES])
    return (centres * (scale_x, scale_y)).astype(np.float32)


def region_mosaic(image: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The four (side / 2)-square crops of ``image`` around ``centres``, tiled 2 x 2 in
    their order (top: eyes, bottom: mouth corners) into an image of the same side.

    As HTNet's public code, a centre is truncated to whole pixels and clamped to
    [side / 4, 3 side / 4], so every crop lies inside the image. (That code indexes rows
    with the x coordinate; rows here are y, as its paper describes the regions.)
    """
    side = image.shape[0]
    half = side // 4
    crops = []
    for x, y in np.clip(centres.astype(int), half, side - half):
        crops.append(image[y - half : y + half, x - half : x + half])
    return np.vstack([np.hstack(crops[:2]), np.hstack(crops[2:])])


def flow_regions_pipeline(sample: Sample, config: PreprocessConfig) -> dict[str, np.ndarray]:
    """HTNet's region mosaic (uint8, ``size`` square) and its ``centres`` (x, y in pixels of
    the ``size`` flow image).

    A sample with a flow image (``path``: the flow-image reader) uses that image and the
    landmarks of its still apex face, both scaled to ``size`` (the two are crops of the same
    face, as in the MEGC2019 composite); a clip gets the ``flow_image`` pipeline's flow of
    the aligned face and the aligned landmarks.
    """
    if sample.path is not None:
        image = read_image(sample.path)
        if image.shape[:2] != (config.size, config.size):
            image = cv2.resize(image, (config.size, config.size), interpolation=cv2.INTER_AREA)
        face = read_image(still_frame(sample))
        landmarks = faces.detect_landmarks(face, config.upsample)
        if landmarks is None:
            raise DataError(still_frame(sample), "no face found (HTNet's regions need one)")
        scale = (config.size / face.shape[1], config.size / face.shape[0])
        centres = region_centres(landmarks, *scale)
        return {"image": region_mosaic(image, centres), "centres": centres}
    clip, arrays = _onset_apex_flow(sample, config)
    scale = config.size / config.face_size
    centres = region_centres(landmarks_of(clip, config), scale, scale)
    return {**arrays, "image": region_mosaic(arrays["image"], centres), "centres": centres}


Pipeline = Callable[[Sample, PreprocessConfig], dict[str, np.ndarray]]
PIPELINES: Registry[Pipeline] = Registry("pipeline")
PIPELINES.add("flow_image", flow_image_pipeline)
PIPELINES.add("apex_face", apex_face_pipeline)
PIPELINES.add("face_clip", face_clip_pipeline)
PIPELINES.add("flow_clip", flow_clip_pipeline)
PIPELINES.add("flow_regions", flow_regions_pipeline)


def run_pipeline(sample: Sample, config: PreprocessConfig) -> dict[str, np.ndarray]:
    """Arrays of one sample by ``config.pipeline``."""
    config = resolve_preprocess(config)
    return PIPELINES.get(config.pipeline)(sample, config)
