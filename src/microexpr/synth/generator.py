"""Synthetic micro-expression clips planted on real face photographs, with exact ground truth.

The real databases are licensed, so tests, demos and users without data need clips whose
subject, emotion, action units (AUs), onset, apex and offset are known exactly. Each clip
starts from a real face (scikit-image's astronaut by default, or a folder of photographs),
places it in a subject-specific framing, and moves it with a smooth displacement field
anchored on the face's 68 landmarks: one set of Gaussian bumps per AU (``AU_TABLE``), scaled
over time by a raised-cosine onset -> apex -> offset profile, so the apex is by construction
the frame of largest planted displacement. Optional head drift, blinks, sensor noise and
illumination flicker make the task less trivial. See docs/synthetic.md for the tables.

Randomness: one seed; each subject and each clip draws from its own
``numpy.random.default_rng([seed, subject, clip])`` stream, so a clip does not change when
more subjects or clips are asked for.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from microexpr.labels import normalise_emotion
from microexpr.preprocess.faces import detect_landmarks, landmarks_in_box
from microexpr.preprocess.flow import flow_image

# --------------------------------------------------------------------------------------------
# Action units: where on the face each one moves skin, and which way.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AUPart:
    """One displacement bump family of an AU.

    ``anchors``: groups of 0-based iBUG-68 landmark indices; each group's mean is the centre of
    one Gaussian bump. ``outward``/``up``: direction in the face's own frame (outward = away from
    the facial midline, up = from chin towards the brows), normalised per part. ``sigma``: bump
    width as a fraction of the inter-ocular distance. ``side``: "R"/"L" keeps only anchors on the
    subject's right (image left) or left; ``None`` keeps both.
    """

    anchors: tuple[tuple[int, ...], ...]
    outward: float
    up: float
    sigma: float
    side: str | None = None


# Landmark indices (iBUG 68, 0-based): jaw 0-16, brows 17-21 / 22-26, nose 27-35,
# eyes 36-41 / 42-47 (upper lids 37,38 / 43,44; lower lids 40,41 / 46,47), mouth 48-67
# (corners 48 and 54, upper lip 50-52, lower lip 56-58).
AU_TABLE: dict[str, tuple[AUPart, ...]] = {
    "1": (AUPart(((21,), (22,)), 0.0, 1.0, 0.20),),  # inner brow raiser
    "2": (AUPart(((17, 18), (25, 26)), 0.2, 1.0, 0.20),),  # outer brow raiser
    "4": (AUPart(((19, 20, 21), (22, 23, 24)), -0.6, -1.0, 0.18),),  # brow lowerer
    "5": (AUPart(((37, 38), (43, 44)), 0.0, 1.0, 0.10),),  # upper lid raiser
    "6": (AUPart(((2, 31, 41), (14, 35, 46)), 0.2, 1.0, 0.22),),  # cheek raiser
    "7": (AUPart(((40, 41), (46, 47)), 0.0, 1.0, 0.10),),  # lid tightener
    "9": (AUPart(((31,), (35,), (28,)), 0.0, 1.0, 0.13),),  # nose wrinkler
    "10": (AUPart(((50,), (52,)), 0.0, 1.0, 0.12),),  # upper lip raiser
    "12": (AUPart(((48,), (54,)), 0.7, 0.7, 0.15),),  # lip corner puller
    "14": (AUPart(((48,), (54,)), 1.0, 0.0, 0.10),),  # dimpler (corners pulled back)
    "15": (AUPart(((48,), (54,)), 0.2, -1.0, 0.13),),  # lip corner depressor
    "17": (AUPart(((57, 8),), 0.0, 1.0, 0.18),),  # chin raiser
    "20": (AUPart(((48,), (54,)), 1.0, -0.2, 0.12),),  # lip stretcher
    "23": (AUPart(((48,), (54,)), -1.0, 0.0, 0.10),),  # lip tightener
    "24": (  # lip presser: lips pushed together
        AUPart(((50, 51, 52),), 0.0, -1.0, 0.09),
        AUPart(((56, 57, 58),), 0.0, 1.0, 0.09),
    ),
    "25": (  # lips part
        AUPart(((50, 51, 52),), 0.0, 0.5, 0.08),
        AUPart(((56, 57, 58),), 0.0, -1.0, 0.08),
    ),
    "26": (AUPart(((7, 8, 9), (57,)), 0.0, -1.0, 0.25),),  # jaw drop
    "45": (AUPart(((37, 38), (43, 44)), 0.0, -1.0, 0.09),),  # blink (upper lids down)
}

# Emotion -> alternative AU combinations (one drawn per clip), after the coding habits of
# CASME II / SAMM (happiness AU6+12, surprise AU1+2(+5,26), disgust AU9 or AU4+7, repression
# AU14/15/24, ...). "R14" is a one-sided dimpler on the subject's right (image left).
EMOTION_AUS: dict[str, tuple[tuple[str, ...], ...]] = {
    "happiness": (("6", "12"), ("12",)),
    "surprise": (("1", "2"), ("1", "2", "5"), ("1", "2", "26")),
    "disgust": (("9",), ("4", "7"), ("9", "10")),
    "repression": (("14",), ("15",), ("24",), ("15", "24")),
    "sadness": (("1", "4", "15"), ("1", "15")),
    "fear": (("1", "2", "4", "5", "20"), ("4", "20")),
    "anger": (("4", "5", "7", "23"), ("4", "7")),
    "contempt": (("R14",), ("R12",)),
    "tense": (("4",),),
    "amusement": (("6", "12", "25"), ("12", "25")),
    "others": (("17",), ("25",)),
    "neutral": ((),),
}
# Grouped classes (SMIC, MEGC composite) draw from the emotions they pool.
EMOTION_AUS["positive"] = EMOTION_AUS["happiness"]
EMOTION_AUS["negative"] = tuple(
    aus
    for emotion in ("disgust", "repression", "sadness", "anger", "fear")
    for aus in EMOTION_AUS[emotion]
)

CASME2_EMOTIONS = ("happiness", "surprise", "disgust", "repression", "others")


@dataclass
class SyntheticClip:
    """One generated expression with its ground truth."""

    subject: int  # 1-based subject index; layout writers format ids per database
    emotion: str  # normalised emotion name (labels.normalise_emotion)
    aus: tuple[str, ...]  # e.g. ("6", "12")
    onset: int  # indices into frames
    apex: int
    offset: int
    frames: list[np.ndarray]  # HxWx3 uint8 BGR
    fps: float
    landmarks: np.ndarray  # (68, 2) of the neutral face in frame coordinates
    # Largest planted AU displacement (px) in each frame: peaks at ``apex`` by construction.
    planted: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


# --------------------------------------------------------------------------------------------
# Source faces and their landmarks
# --------------------------------------------------------------------------------------------

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


def _landmarks(image: np.ndarray) -> np.ndarray:
    """68 landmarks of the largest face; the whole image stands in for a missed detection,
    because tightly cropped faces (like the composite's 224x224 crops) can defeat every
    detector. No upsampling first: a photograph's face is found at native size, faster."""
    found = detect_landmarks(image, upsample=0)
    if found is not None:
        return found
    h, w = image.shape[:2]
    return landmarks_in_box(image, (0, 0, w - 1, h - 1))


@functools.cache
def _source_face(key: str) -> tuple[np.ndarray, np.ndarray]:
    """(BGR image, landmarks) of a source face, computed once per process."""
    path = _astronaut_path() if key == "astronaut" else key
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return image, _landmarks(image)


def _astronaut_path() -> str:
    """scikit-image's astronaut photograph (Eileen Collins, public domain), read straight from
    the package: ``skimage.data.astronaut()`` would first import skimage.io (about 1 s)."""
    spec = importlib.util.find_spec("skimage")
    return str(Path(spec.submodule_search_locations[0]) / "data" / "astronaut.png")


def face_sources(faces: str | Path | None) -> list[str]:
    """Face photographs to draw subjects from.

    ``None``: scikit-image's astronaut (one face; subjects then differ by their transforms).
    A file: that face. A folder: its images in sorted order, one per person, where files whose
    names share the part before the first ``_`` (``006_006_1_2.jpg``, ``006_006_1_3.jpg``) are
    taken as the same person, so the composite's 442 faces give its 68 people.
    """
    if faces is None:
        return ["astronaut"]
    path = Path(faces)
    if path.is_file():
        return [str(path)]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such face image or folder")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{path}: no images ({', '.join(sorted(_IMAGE_SUFFIXES))})")
    people: dict[str, Path] = {}
    for file in files:
        people.setdefault(file.stem.split("_")[0], file)
    return [str(p) for p in people.values()]


# --------------------------------------------------------------------------------------------
# Subjects: a real face in a subject-specific framing, shape and tone
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FramedFace:
    """One subject: a source face in its own framing, shape and tone (shared by the clip and
    long-video generators, so a subject looks the same in both)."""

    face: np.ndarray  # size x size x 3 float32 BGR, neutral
    landmarks: np.ndarray  # (68, 2) in face coordinates


def _gaussian_field(
    shape: tuple[int, int], centres: np.ndarray, vectors: np.ndarray, sigmas: np.ndarray
) -> np.ndarray:
    """Sum of Gaussian bumps: (H, W, 2) displacement, bump i of peak vector i at centre i."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((h, w, 2), np.float32)
    for (cx, cy), vec, sigma in zip(centres, vectors, sigmas, strict=True):
        bump = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2.0 * sigma * sigma))
        out += bump[..., None] * vec.astype(np.float32)
    return out


def _warp(image: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """Move image content by ``displacement`` (H, W, 2): out(x) = in(x - d(x)), the standard
    backward-mapping approximation, accurate for the smooth, few-pixel fields used here."""
    h, w = image.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x = (xs - displacement[..., 0]).astype(np.float32)
    map_y = (ys - displacement[..., 1]).astype(np.float32)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _make_subject(source: str, size: int, rng: np.random.Generator) -> FramedFace:
    """Frame the source face for one subject (documented in docs/synthetic.md, "Subjects").

    Framing: face width (jaw landmarks 0-16) U(0.62, 0.80) of the frame, rotation U(-6, 6) deg,
    centre jitter +-4%; mirror with probability 1/2; identity warp: 6 Gaussian bumps at random
    landmarks, each up to 4% of the frame, which reshapes brows, eyes, nose, mouth and jaw;
    tone: gamma U(0.7, 1.4), per-channel gain U(0.85, 1.15), blur sigma U(0, 0.6) px.
    """
    image, points = _source_face(source)
    if rng.random() < 0.5:
        image = image[:, ::-1].copy()
        points = points.copy()
        points[:, 0] = image.shape[1] - 1 - points[:, 0]
        points = points[_MIRROR]
    face_width = float(points[16, 0] - points[0, 0]) or 1.0
    scale = size * rng.uniform(0.62, 0.80) / face_width
    centre = points.mean(axis=0) + rng.uniform(-0.04, 0.04, 2) * size / scale
    angle = rng.uniform(-6.0, 6.0)
    # Shrink first with area averaging (warpAffine alone would alias a 512 -> 64 reduction).
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    matrix = cv2.getRotationMatrix2D(tuple(float(c) for c in centre * scale), angle, 1.0)
    matrix[:, 2] += size / 2.0 - centre * scale
    face = cv2.warpAffine(
        small, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    marks = (np.c_[points * scale, np.ones(68)] @ matrix.T).astype(np.float32)

    idx = rng.choice(68, size=6, replace=False)
    vectors = rng.uniform(-0.04, 0.04, (6, 2)) * size
    sigmas = np.full(6, 0.12 * size)
    identity = _gaussian_field((size, size), marks[idx], vectors, sigmas)
    face = _warp(face, identity)
    xi = np.clip(np.round(marks).astype(int), 0, size - 1)
    marks = marks + identity[xi[:, 1], xi[:, 0]]

    face = face.astype(np.float32) / 255.0
    face = face ** rng.uniform(0.7, 1.4) * rng.uniform(0.85, 1.15, 3)
    blur = rng.uniform(0.0, 0.6)
    if blur > 0.05:
        face = cv2.GaussianBlur(face, (0, 0), blur)
    return FramedFace(np.clip(face * 255.0, 0, 255).astype(np.float32), marks)


# Landmark permutation under a horizontal mirror (iBUG 68), so index i keeps its meaning.
_MIRROR = np.array(
    list(range(16, -1, -1))
    + list(range(26, 16, -1))
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65]
)


# --------------------------------------------------------------------------------------------
# Planted motion
# --------------------------------------------------------------------------------------------


def interocular(landmarks: np.ndarray) -> float:
    """Distance between the eye centres: the face's own length unit."""
    return float(np.linalg.norm(landmarks[36:42].mean(0) - landmarks[42:48].mean(0))) or 1.0


def au_field(landmarks: np.ndarray, aus: Sequence[str], size: int) -> np.ndarray:
    """Apex displacement field (size, size, 2) of an AU combination, peak magnitude 1 px.

    Directions live in the face's own frame (up = chin -> nose bridge, outward = away from the
    midline), so they follow each subject's rotation and mirroring.
    """
    up = landmarks[27] - landmarks[8]
    up = up / (np.linalg.norm(up) or 1.0)
    right = np.array([-up[1], up[0]], np.float32)  # image-right axis of the face
    midline = landmarks[[27, 30, 33, 51, 57, 8]].mean(axis=0)
    iod = interocular(landmarks)
    centres, vectors, sigmas = [], [], []
    for au in aus:
        side = au[0] if au[:1] in ("R", "L") else None
        for part in AU_TABLE[au.lstrip("RL")]:
            norm = math.hypot(part.outward, part.up) or 1.0
            for group in part.anchors:
                centre = landmarks[list(group)].mean(axis=0)
                lateral = float(np.dot(centre - midline, right))
                # Subject's right is image left for a frontal face.
                if side == "R" and lateral > 0 or side == "L" and lateral < 0:
                    continue
                outward = right * (np.sign(lateral) if abs(lateral) > 1e-3 else 0.0)
                vec = (outward * part.outward + up * part.up) / norm
                centres.append(centre)
                vectors.append(vec)
                sigmas.append(part.sigma * iod)
    if not centres:
        return np.zeros((size, size, 2), np.float32)
    displacement = _gaussian_field(
        (size, size), np.array(centres), np.array(vectors), np.array(sigmas)
    )
    peak = float(np.linalg.norm(displacement, axis=2).max())
    return displacement / peak if peak > 0 else displacement


def temporal_profile(n_frames: int, onset: int, apex: int, offset: int) -> np.ndarray:
    """Raised-cosine rise onset -> apex and fall apex -> offset: 0 outside, 1 only at apex."""
    t = np.arange(n_frames, dtype=np.float64)
    profile = np.zeros(n_frames)
    rise = (t >= onset) & (t <= apex)
    fall = (t > apex) & (t <= offset)
    profile[rise] = 0.5 * (1 - np.cos(np.pi * (t[rise] - onset) / max(apex - onset, 1)))
    profile[fall] = 0.5 * (1 + np.cos(np.pi * (t[fall] - apex) / max(offset - apex, 1)))
    profile[apex] = 1.0
    return profile


@dataclass(frozen=True)
class MotionParams:
    """Clip-level settings (``**motion`` of :func:`generate_clips`), documented in the docs.

    amplitude: planted peak displacement range in output pixels, drawn per clip.
    rise / fall: onset->apex and apex->offset durations in seconds, drawn per clip.
    lead / tail: neutral time before onset and after offset, seconds.
    drift: head translation over the clip, px (0 = still head).
    blink_prob: chance of one blink per clip (AU45: upper lids down by 0.15 x the
        inter-ocular distance over 100-150 ms, anywhere in the clip).
    noise: sensor noise standard deviation, grey levels.
    flicker: illumination flicker amplitude, fraction of brightness.
    """

    amplitude: tuple[float, float] = (0.3, 3.0)
    rise: tuple[float, float] = (0.06, 0.15)
    fall: tuple[float, float] = (0.10, 0.25)
    lead: tuple[float, float] = (0.0, 0.04)
    tail: tuple[float, float] = (0.0, 0.04)
    drift: float = 0.0
    blink_prob: float = 0.0
    noise: float = 1.0
    flicker: float = 0.0


@dataclass(frozen=True)
class _Plan:
    """Everything needed to render any frame of one clip."""

    subject: FramedFace
    field: np.ndarray  # apex displacement (size, size, 2) with the clip's amplitude
    profile: np.ndarray  # (n_frames,)
    drift: np.ndarray  # (n_frames, 2) global translation, px
    blink: np.ndarray  # (size, size, 2) blink field at full closure
    blink_profile: np.ndarray  # (n_frames,)
    gain: np.ndarray  # (n_frames,) illumination
    noise: float
    seed: tuple[int, ...]


def _timeline(
    params: MotionParams, fps: float, n_frames: int | None, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """(n_frames, onset, apex, offset) from durations in seconds, or squeezed into n_frames."""
    lead, rise, fall, tail = (
        rng.uniform(*r) for r in (params.lead, params.rise, params.fall, params.tail)
    )
    if n_frames is None:
        onset = round(lead * fps)
        apex = onset + max(1, round(rise * fps))
        offset = apex + max(1, round(fall * fps))
        return offset + round(tail * fps) + 1, onset, apex, offset
    if n_frames < 3:
        raise ValueError(f"n_frames={n_frames}: need at least 3 (onset < apex <= offset)")
    total = lead + rise + fall + tail
    last = n_frames - 1
    onset = min(round(lead / total * last), last - 2)
    apex = min(max(onset + 1, round((lead + rise) / total * last)), last - 1)
    offset = min(max(apex + 1, round((lead + rise + fall) / total * last)), last)
    return n_frames, onset, apex, offset


def _plan(
    subject: FramedFace,
    aus: Sequence[str],
    size: int,
    fps: float,
    n_frames: int | None,
    params: MotionParams,
    rng: np.random.Generator,
    seed: tuple[int, ...],
) -> tuple[_Plan, tuple[int, int, int]]:
    n, onset, apex, offset = _timeline(params, fps, n_frames, rng)
    amplitude = rng.uniform(*params.amplitude)
    field = au_field(subject.landmarks, aus, size) * amplitude
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction) or 1.0
    drift = np.linspace(0.0, params.drift, n)[:, None] * direction[None]
    blink_profile = np.zeros(n)
    if rng.random() < params.blink_prob:
        length = max(2, round(rng.uniform(0.10, 0.15) * fps))
        start = int(rng.integers(0, max(1, n - length)))
        blink_profile = temporal_profile(n, start, start + length // 2, start + length)
    blink = au_field(subject.landmarks, ("45",), size) * 0.15 * interocular(subject.landmarks)
    phase, hz = rng.uniform(0, 2 * np.pi), rng.uniform(1.0, 10.0)
    gain = 1.0 + params.flicker * np.sin(2 * np.pi * hz * np.arange(n) / fps + phase)
    profile = temporal_profile(n, onset, apex, offset)
    plan = _Plan(subject, field, profile, drift, blink, blink_profile, gain, params.noise, seed)
    return plan, (onset, apex, offset)


def _render(plan: _Plan, t: int) -> np.ndarray:
    """Frame t: planted AU motion, blink and drift by one remap, then light and noise."""
    displacement = plan.field * plan.profile[t] + plan.blink * plan.blink_profile[t]
    displacement = displacement + plan.drift[t].astype(np.float32)
    frame = _warp(plan.subject.face, displacement) * plan.gain[t]
    if plan.noise > 0:
        frame = frame + np.random.default_rng((*plan.seed, t)).normal(0, plan.noise, frame.shape)
    return np.clip(np.round(frame), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def framed_subjects(
    n_subjects: int, size: int, seed: int, faces: str | Path | None
) -> list[FramedFace]:
    """Subjects 1..n, each from ``default_rng([seed, k])``: the same seed gives the same people."""
    sources = face_sources(faces)
    return [
        _make_subject(sources[s % len(sources)], size, np.random.default_rng([seed, s + 1]))
        for s in range(n_subjects)
    ]


def emotion_schedule(emotions: Sequence[str], clips: int, rng: np.random.Generator) -> list[str]:
    """Balanced per subject: every emotion as often as possible, in random order."""
    repeats = -(-clips // len(emotions))
    return list(rng.permutation(list(emotions) * repeats)[:clips])


def check_emotions(emotions: Sequence[str] | None) -> list[str]:
    """Normalised emotion names (default CASME II's five); one without AUs is a ValueError."""
    names = [normalise_emotion(e) for e in (emotions or CASME2_EMOTIONS)]
    unknown = [e for e in names if e not in EMOTION_AUS]
    if unknown:
        raise ValueError(
            f"no AU table entry for {unknown}; known emotions: {', '.join(sorted(EMOTION_AUS))}"
        )
    return names


def _plans(
    n_subjects: int,
    clips_per_subject: int,
    size: int,
    seed: int,
    fps: float,
    emotions: Sequence[str] | None,
    faces: str | Path | None,
    n_frames: int | None,
    motion: dict,
) -> list[tuple[int, int, str, tuple[str, ...], _Plan, tuple[int, int, int]]]:
    """(subject, clip number, emotion, AUs, plan, (onset, apex, offset)) of every clip."""
    params = MotionParams(**motion)
    names = check_emotions(emotions)
    plans = []
    for s, subject in enumerate(framed_subjects(n_subjects, size, seed, faces), start=1):
        schedule = emotion_schedule(names, clips_per_subject, np.random.default_rng([seed, s, 0]))
        for c, emotion in enumerate(schedule, start=1):
            rng = np.random.default_rng([seed, s, c])
            options = EMOTION_AUS[emotion]
            aus = options[int(rng.integers(len(options)))]
            plan, times = _plan(subject, aus, size, fps, n_frames, params, rng, (seed, s, c))
            plans.append((s, c, str(emotion), tuple(aus), plan, times))
    return plans


def generate_clips(
    n_subjects: int,
    clips_per_subject: int,
    size: int = 64,
    seed: int = 0,
    fps: float = 200.0,
    emotions: Sequence[str] | None = None,
    faces: str | Path | None = None,
    n_frames: int | None = None,
    **motion,
) -> list[SyntheticClip]:
    """Clips for ``n_subjects`` subjects x ``clips_per_subject`` clips, deterministic by seed.

    ``emotions``: names with an ``EMOTION_AUS`` entry (default CASME II's five), balanced per
    subject. ``faces``: see :func:`face_sources`. ``n_frames``: fixed clip length (default:
    from the drawn durations at ``fps``). ``motion``: :class:`MotionParams` fields.
    """
    clips = []
    for s, _c, emotion, aus, plan, (onset, apex, offset) in _plans(
        n_subjects, clips_per_subject, size, seed, fps, emotions, faces, n_frames, motion
    ):
        frames = [_render(plan, t) for t in range(len(plan.profile))]
        planted = (plan.profile * np.linalg.norm(plan.field, axis=2).max()).astype(np.float32)
        clips.append(
            SyntheticClip(
                s,
                emotion,
                aus,
                onset,
                apex,
                offset,
                frames,
                fps,
                plan.subject.landmarks.copy(),
                planted,
            )
        )
    return clips


def synthetic_flow_images(
    n_subjects: int,
    clips_per_subject: int,
    seed: int = 0,
    size: int = 28,
    classes: Sequence[str] = ("negative", "positive", "surprise"),
    faces: str | Path | None = None,
    face_size: int = 48,
    **motion,
) -> list[tuple[str, str, str, np.ndarray]]:
    """(subject id ``s01``, clip id ``s01_03``, class, u/v/strain image) like the composite's
    STSNet_whole_norm_u_v_os images; only the onset and apex frames are rendered, at
    ``face_size``, so ~100 images take a few seconds."""
    out = []
    for s, c, emotion, _aus, plan, (onset, apex, _offset) in _plans(
        n_subjects, clips_per_subject, face_size, seed, 200.0, classes, faces, None, motion
    ):
        image = flow_image(_render(plan, onset), _render(plan, apex), size)
        out.append((f"s{s:02d}", f"s{s:02d}_{c:02d}", emotion, image))
    return out
