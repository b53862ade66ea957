"""Synthetic long videos for spotting (MEGC's long-video task), with exact ground truth.

A long video is one subject's face (the same real faces, framings and AU displacement fields
as :mod:`microexpr.synth.generator`) held for ``seconds``, with several planted expressions:
micro-expressions (1/25 to 1/3 s, small) and macro-expressions (0.5 to 4 s, larger), each an AU
combination of its emotion moved by the raised-cosine onset -> apex -> offset profile, so each
event's apex is the frame of its largest planted displacement. Distractors that are not
expressions make spotting honest:

- ``drift``: slow head translation and in-plane rotation (sinusoids with 6-20 s periods);
- ``blink``: eyelids down and up (AU45, 0.1-0.3 s, about one every 4 s);
- ``flicker``: global illumination gain, a slow sinusoid plus brief steps of a few frames;
- ``noise``: Gaussian sensor noise.

Expressions never overlap one another, and blinks and flicker steps fall between them, so the
truth stays unambiguous; drift, the sinusoidal flicker and noise run throughout. Everything is
drawn from ``numpy.random.default_rng([seed, subject, video, stream])``: a video does not
change when more subjects or videos are asked for.

Memory: frames are held as BGR uint8, ``seconds x fps x size x size x 3`` bytes: 10 s at
30 fps of 256 x 256 is 300 frames, about 59 MB per video. :func:`iter_long_videos` yields one
video at a time for many of them; :func:`generate_long_videos` keeps them all. Rendering is
one or two ``cv2.remap`` and the noise per frame, about 5-8 ms at 256 x 256 on one core.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from microexpr.registry import Registry
from microexpr.samples import Event, Video, truth_table
from microexpr.synth.generator import (
    EMOTION_AUS,
    FramedFace,
    au_field,
    check_emotions,
    emotion_schedule,
    framed_subjects,
    interocular,
    temporal_profile,
)

if TYPE_CHECKING:
    import pandas as pd

DISTRACTORS = ("drift", "blink", "flicker", "noise")
DATASET = "synthetic_long"


@dataclass(frozen=True)
class LongVideoMotion:
    """Settings of the planted events and distractors (defaults documented in the module).

    Amplitudes are peak displacements as a fraction of the inter-ocular distance (IOD, about
    0.3 of the frame side), so they scale with ``size``: micro 0.02-0.04 IOD is 1.5-3 px at
    256 x 256, macro 0.08-0.16 IOD is 6-12 px. ``gap``: neutral seconds kept between any two
    events or blinks and at both ends of the video.
    """

    micro_seconds: tuple[float, float] = (1 / 25, 1 / 3)
    macro_seconds: tuple[float, float] = (0.5, 4.0)
    micro_amplitude: tuple[float, float] = (0.02, 0.04)
    macro_amplitude: tuple[float, float] = (0.08, 0.16)
    gap: float = 0.4
    drift_shift: float = 0.02  # peak head translation, fraction of the frame side
    drift_degrees: float = 1.5  # peak in-plane head rotation
    blink_every: float = 4.0  # mean seconds between blinks
    blink_seconds: tuple[float, float] = (0.1, 0.3)
    blink_depth: float = 0.15  # upper-lid travel, fraction of the IOD (as generator.py)
    flicker: float = 0.03  # sinusoidal gain amplitude
    flicker_every: float = 5.0  # mean seconds between gain steps
    flicker_step: tuple[float, float] = (0.04, 0.08)  # size of a step, fraction of the gain
    noise: float = 2.0  # grey levels


@dataclass
class LongVideo:
    """One synthetic long recording and its truth; ``events`` are sorted by onset, their
    onset/apex/offset are indices into ``frames`` (offset inclusive)."""

    subject: int  # 1-based; writers format ids per database
    name: str  # s01_v01
    frames: list[np.ndarray]  # BGR uint8
    fps: float
    events: list[Event]
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((68, 2), np.float32))
    blinks: list[tuple[int, int]] = field(default_factory=list)  # (first, last) frame
    planted: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # px per frame

    @property
    def subject_id(self) -> str:
        return f"s{self.subject:02d}"

    def as_video(self, frames: Sequence[Path] = (), path: Path | None = None) -> Video:
        """The :class:`Video` record a reader would give for this video written to disk."""
        return Video(
            self.name,
            DATASET,
            self.subject_id,
            tuple(frames),
            path,
            self.fps,
            tuple(self.events),
        )


def long_video_truth(videos: Sequence[LongVideo]) -> pd.DataFrame:
    """The planted events in MEGC's columns (:func:`microexpr.samples.truth_table`)."""
    return truth_table([v.as_video() for v in videos])


# --------------------------------------------------------------------------------------------
# Timeline: where events and blinks go
# --------------------------------------------------------------------------------------------


def _length(
    seconds: tuple[float, float], fps: float, low: int, high: int, rng: np.random.Generator
) -> int:
    """Frames (offset - onset + 1) of a duration drawn from ``seconds``, within low..high."""
    return int(np.clip(round(rng.uniform(*seconds) * fps), low, max(low, high)))


def _place(
    lengths: list[int], n_frames: int, gap: int, rng: np.random.Generator
) -> list[int] | None:
    """Start frames of items of ``lengths`` in this order, ``gap`` frames apart and from the
    ends, the spare frames spread at random; None when they do not fit."""
    spare = n_frames - sum(lengths) - gap * (len(lengths) + 1)
    if spare < 0:
        return None
    shares = np.floor(rng.dirichlet(np.ones(len(lengths) + 1)) * spare).astype(int)
    starts, t = [], 0
    for length, share in zip(lengths, shares[:-1], strict=True):
        t += gap + int(share)
        starts.append(t)
        t += length
    return starts


@dataclass(frozen=True)
class _Timeline:
    events: list[tuple[str, int, int, int]]  # (type, onset, apex, offset), by onset
    blinks: list[tuple[int, int]]


def _timeline(
    n_frames: int,
    fps: float,
    micro: int,
    macro: int,
    blink: bool,
    motion: LongVideoMotion,
    rng: np.random.Generator,
) -> _Timeline:
    """Non-overlapping micro and macro events, then blinks in the room left (as many of the
    drawn ones as fit). Events drawn longer than the video allows are shortened, longest
    first, never below their type's minimum."""
    micro_low = max(3, math.ceil(fps / 25))
    micro_high = math.floor(fps / 3)
    macro_low = math.floor(0.5 * fps) + 1  # strictly longer than 0.5 s: MEGC's micro limit
    macro_high = math.floor(4 * fps)
    kinds = ["micro"] * micro + ["macro"] * macro
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    lows = [micro_low if kind == "micro" else macro_low for kind in kinds]
    lengths = [
        _length(motion.micro_seconds, fps, micro_low, micro_high, rng)
        if kind == "micro"
        else _length(motion.macro_seconds, fps, macro_low, macro_high, rng)
        for kind in kinds
    ]
    gap = max(1, round(motion.gap * fps))
    room = n_frames - gap * (len(kinds) + 1)
    if sum(lows) > room:
        need = (sum(lows) + gap * (len(kinds) + 1)) / fps
        raise ValueError(
            f"{micro} micro and {macro} macro events need at least {need:.1f} s with their "
            f"gaps; the video has {n_frames / fps:.1f} s: ask for more seconds or fewer events"
        )
    while sum(lengths) > room:  # drawn too long for the video: shorten the longest
        longest = max(range(len(kinds)), key=lambda i: lengths[i] - lows[i])
        lengths[longest] -= 1
    blink_count = int(rng.poisson(n_frames / fps / motion.blink_every)) if blink else 0
    blink_lengths = [
        _length(motion.blink_seconds, fps, 3, n_frames, rng) for _ in range(blink_count)
    ]
    while True:  # as many of the drawn blinks as fit
        items = [(k, n) for k, n in zip(kinds, lengths, strict=True)]
        items += [("blink", n) for n in blink_lengths]
        items = [items[i] for i in rng.permutation(len(items))]
        starts = _place([n for _, n in items], n_frames, gap, rng)
        if starts is not None:
            break
        blink_lengths.pop()
    events, blinks = [], []
    for (kind, length), start in zip(items, starts, strict=True):
        end = start + length - 1
        if kind == "blink":
            blinks.append((start, end))
            continue
        rise = int(round(rng.uniform(0.3, 0.6) * (length - 1)))
        events.append((kind, start, min(max(start + rise, start + 1), end - 1), end))
    return _Timeline(sorted(events, key=lambda e: e[1]), sorted(blinks))


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Script:
    """Everything needed to render any frame of one long video."""

    subject: FramedFace
    fields: list[np.ndarray]  # apex displacement of each event, px
    profiles: np.ndarray  # (events, n_frames)
    blink_field: np.ndarray
    blink_profile: np.ndarray  # (n_frames,)
    shift: np.ndarray  # (n_frames, 2) head translation, px
    angle: np.ndarray  # (n_frames,) head rotation, degrees
    gain: np.ndarray  # (n_frames,)
    noise: float


def _drift(
    n_frames: int, fps: float, size: int, motion: LongVideoMotion, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Head translation (n, 2) px and rotation (n,) degrees: sinusoids of 6-20 s periods."""
    t = np.arange(n_frames) / fps
    periods = rng.uniform(6.0, 20.0, 3)
    phases = rng.uniform(0, 2 * np.pi, 3)
    waves = np.sin(2 * np.pi * t[:, None] / periods[None] + phases[None])
    return waves[:, :2] * motion.drift_shift * size, waves[:, 2] * motion.drift_degrees


def _gain(
    n_frames: int, fps: float, free: np.ndarray, motion: LongVideoMotion, rng: np.random.Generator
) -> np.ndarray:
    """Illumination gain: a slow sinusoid plus brief steps of 1-3 frames on ``free`` frames."""
    t = np.arange(n_frames) / fps
    gain = 1.0 + motion.flicker * np.sin(
        2 * np.pi * rng.uniform(0.2, 1.0) * t + rng.uniform(0, 2 * np.pi)
    )
    for _ in range(int(rng.poisson(n_frames / fps / motion.flicker_every))):
        start, length = int(rng.integers(n_frames)), int(rng.integers(1, 4))
        span = np.arange(start, min(start + length, n_frames))
        span = span[free[span]]
        gain[span] *= 1.0 + rng.choice((-1, 1)) * rng.uniform(*motion.flicker_step)
    return gain


def _render(script: _Script, t: int, grid: np.ndarray, noise: np.random.Generator) -> np.ndarray:
    """Frame t: the face moved by its AU and blink fields, then by the rigid head pose, in one
    remap of the face (the fields are sampled where the head pose puts each output pixel)."""
    centre = script.subject.landmarks.mean(axis=0)
    # Output pixel x shows face point R(-angle) (x - centre - shift) + centre.
    inverse = cv2.getRotationMatrix2D((0.0, 0.0), float(-script.angle[t]), 1.0)[:, :2]
    offset = centre - inverse @ (centre + script.shift[t])
    xs, ys = grid[..., 0], grid[..., 1]
    source = np.dstack(
        [inverse[i, 0] * xs + inverse[i, 1] * ys + np.float32(offset[i]) for i in (0, 1)]
    ).astype(np.float32)
    displacement = script.blink_field * script.blink_profile[t]
    active = np.flatnonzero(script.profiles[:, t])
    for e in active:
        displacement = displacement + script.fields[e] * script.profiles[e, t]
    if active.size or script.blink_profile[t]:
        moved = cv2.remap(
            displacement.astype(np.float32),
            source[..., 0],
            source[..., 1],
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
        source = source - moved
    frame = cv2.remap(
        script.subject.face,
        source[..., 0],
        source[..., 1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )
    frame *= np.float32(script.gain[t])
    if script.noise > 0:
        frame += noise.standard_normal(frame.shape, np.float32) * np.float32(script.noise)
    return np.clip(np.round(frame), 0, 255).astype(np.uint8)


def _check_distractors(distractors: Sequence[str]) -> set[str]:
    unknown = set(distractors) - set(DISTRACTORS)
    if unknown:
        raise ValueError(f"unknown distractor(s) {sorted(unknown)}; known: {list(DISTRACTORS)}")
    return set(distractors)


def iter_long_videos(
    n_subjects: int = 2,
    videos_per_subject: int = 1,
    seconds: float = 10.0,
    fps: float = 30.0,
    size: int = 256,
    micro: int = 3,
    macro: int = 1,
    distractors: Sequence[str] = DISTRACTORS,
    seed: int = 0,
    faces: str | Path | None = None,
    emotions: Sequence[str] | None = None,
    motion: LongVideoMotion | None = None,
) -> Iterator[LongVideo]:
    """:func:`generate_long_videos`, one video at a time (for many videos: memory)."""
    motion = motion or LongVideoMotion()
    chosen = _check_distractors(distractors)
    names = check_emotions(emotions)
    n_frames = round(seconds * fps)
    grid = np.dstack(np.meshgrid(np.arange(size), np.arange(size))).astype(np.float32)
    for s, subject in enumerate(framed_subjects(n_subjects, size, seed, faces), start=1):
        iod = interocular(subject.landmarks)
        blink_field = au_field(subject.landmarks, ("45",), size) * motion.blink_depth * iod
        for v in range(1, videos_per_subject + 1):
            rng = np.random.default_rng([seed, s, v, 1])
            timeline = _timeline(n_frames, fps, micro, macro, "blink" in chosen, motion, rng)
            schedule = emotion_schedule(names, len(timeline.events), rng)
            events, fields, profiles = [], [], []
            for (kind, onset, apex, offset), emotion in zip(timeline.events, schedule, strict=True):
                options = EMOTION_AUS[emotion]
                aus = tuple(options[int(rng.integers(len(options)))])
                amplitude = rng.uniform(
                    *(motion.micro_amplitude if kind == "micro" else motion.macro_amplitude)
                )
                fields.append(au_field(subject.landmarks, aus, size) * amplitude * iod)
                profiles.append(temporal_profile(n_frames, onset, apex, offset))
                events.append(Event(onset, apex, offset, kind, str(emotion), aus))
            profiles_array = np.array(profiles).reshape(len(profiles), n_frames)
            blink_profile = np.zeros(n_frames)
            for first, last in timeline.blinks:
                blink_profile += temporal_profile(n_frames, first, (first + last) // 2, last)
            if "drift" in chosen:
                shift, angle = _drift(n_frames, fps, size, motion, rng)
            else:
                shift, angle = np.zeros((n_frames, 2)), np.zeros(n_frames)
            free = ~profiles_array.any(axis=0) & (blink_profile == 0)
            gain = _gain(n_frames, fps, free, motion, rng) if "flicker" in chosen else None
            script = _Script(
                subject,
                fields,
                profiles_array,
                blink_field,
                blink_profile,
                shift,
                angle,
                np.ones(n_frames) if gain is None else gain,
                motion.noise if "noise" in chosen else 0.0,
            )
            noise = np.random.default_rng([seed, s, v, 2])
            peaks = np.array([np.linalg.norm(f, axis=2).max() for f in fields])
            planted = (profiles_array * peaks[:, None]).max(axis=0, initial=0.0)
            yield LongVideo(
                s,
                f"s{s:02d}_v{v:02d}",
                [_render(script, t, grid, noise) for t in range(n_frames)],
                fps,
                events,
                subject.landmarks.copy(),
                timeline.blinks,
                planted.astype(np.float32),
            )


def generate_long_videos(
    n_subjects: int = 2,
    videos_per_subject: int = 1,
    seconds: float = 10.0,
    fps: float = 30.0,
    size: int = 256,
    micro: int = 3,
    macro: int = 1,
    distractors: Sequence[str] = DISTRACTORS,
    seed: int = 0,
    faces: str | Path | None = None,
    emotions: Sequence[str] | None = None,
    motion: LongVideoMotion | None = None,
) -> list[LongVideo]:
    """Long videos for ``n_subjects`` x ``videos_per_subject``, deterministic by seed.

    Each holds ``micro`` micro- and ``macro`` macro-expressions (emotions balanced per video
    from ``emotions``, default CASME II's five; any with an ``EMOTION_AUS`` entry) and the
    chosen ``distractors`` (:data:`DISTRACTORS`). ``faces``: see
    :func:`microexpr.synth.generator.face_sources`. A ValueError when the events do not fit
    in ``seconds`` with their gaps. Memory: about 59 MB per 10 s at 30 fps and 256 x 256.
    """
    return list(
        iter_long_videos(
            n_subjects,
            videos_per_subject,
            seconds,
            fps,
            size,
            micro,
            macro,
            distractors,
            seed,
            faces,
            emotions,
            motion,
        )
    )


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_long_video(video: LongVideo, path: Path, kind: str = "mp4") -> Path:
    """Write ``video`` as an MP4 file (``kind="mp4"``, OpenCV's mp4v codec, at its frame rate)
    or as a folder of frames ``img00001.jpg``... numbered from 1 (``kind="frames"``, JPEG
    quality 95). Both are lossy, as the databases' own files are. Returns the path written."""
    path = Path(path)
    if kind == "frames":
        path.mkdir(parents=True, exist_ok=True)
        for n, frame in enumerate(video.frames, start=1):
            target = path / f"img{n:05d}.jpg"
            if not cv2.imwrite(str(target), frame, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise OSError(f"could not write {target}")
        return path
    if kind != "mp4":
        raise ValueError(f"kind={kind!r}: use 'mp4' or 'frames'")
    if not video.frames:
        raise ValueError(f"{video.name}: no frames to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = video.frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), video.fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"could not open {path} for writing (OpenCV mp4v)")
    try:
        for frame in video.frames:
            writer.write(frame)
    finally:
        writer.release()
    return path


# --------------------------------------------------------------------------------------------
# Replicas: what the long-video writers in synth/replicas share
# --------------------------------------------------------------------------------------------

# Database name (as its long-video reader is registered) -> writer(videos, out, **quirks)
# returning the Videos that reader must give back, frame paths and events exactly.
LongWriter = Callable[..., list[Video]]
LONG_WRITERS: Registry[LongWriter] = Registry("long-video replica writer")


@dataclass
class PlannedEvent:
    """One event to write, with the quirks it carries."""

    video: LongVideo
    event: Event
    quirks: set[str] = field(default_factory=set)


def plan_events(
    videos: Sequence[LongVideo], counts: dict[str, int], known: Sequence[str]
) -> list[list[PlannedEvent]]:
    """Each video's events; each count quirk (``onset_zero=2``) goes to its own events, in
    order, as the clip writers do. A quirk the database does not have is a ValueError."""
    unknown = set(counts) - set(known)
    if unknown:
        raise ValueError(f"unknown quirk(s) {sorted(unknown)}; known: {sorted(known)}")
    planned = [[PlannedEvent(v, e) for e in v.events] for v in videos]
    slots = iter(p for events in planned for p in events)
    for name, count in counts.items():
        for _ in range(count):
            slot = next(slots, None)
            if slot is None:
                raise ValueError(f"not enough events for the quirks asked ({counts})")
            slot.quirks.add(name)
    return planned


def nearest_index(numbers: Sequence[int], number: int) -> int:
    """Index of ``number`` among the frame numbers written, or of the nearest (ties: the
    earlier), as the readers repair a missing key frame."""
    return min(range(len(numbers)), key=lambda i: (abs(numbers[i] - number), numbers[i]))
