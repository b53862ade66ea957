"""Spot, then recognise: a long recording in, its expressions out, with a model's labels.

:class:`Analyzer` runs, per recording: decode -> track (:mod:`.track`) -> the spotter's motion
signal (:mod:`.spotting`, the "flow" stage) -> intervals ("spot") -> with a model bundle,
each interval's frames through the bundle's own preprocessing and network ("classify"). The
frames of the spotted intervals are read again in a second pass, so a long video is never
held in memory: only its small aligned faces are.

Each interval becomes one :class:`~microexpr.samples.Sample` whose frames are face crops held
in memory (:class:`~microexpr.preprocess.frames.MemoryFrame`: the same crop box on every frame
of the interval, from the tracked landmarks at its onset) with its onset, spotted apex and
offset, and goes through the bundle's Plan as any coded clip does: its pipeline aligns the
face, takes the apex frame, the onset -> apex flow image or the clip, and the network gives
the class probabilities. A bundle trained on a reader's own files (flow images, still faces:
its Plan has no pipeline) gets the pipeline the recipe gives its input kind for clips, with
default settings (``recipe.preprocess_for``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from microexpr.analyze.settings import AnalyzeSettings, settings_from
from microexpr.analyze.spotting import (
    SPOTTERS,
    Interval,
    MotionSignal,
    ResidualFlow,
    check_settings,
    find_intervals,
)
from microexpr.analyze.track import FaceTrack, FaceTracker
from microexpr.analyze.video import VideoSource, open_video
from microexpr.bundle import Bundle, BundleError, load_bundle
from microexpr.config import PreprocessConfig
from microexpr.inputs import model_inputs
from microexpr.plan import Plan
from microexpr.preprocess import faces
from microexpr.preprocess.frames import MemoryFrame
from microexpr.recipe import PIPELINE_FOR_KIND, preprocess_for
from microexpr.samples import Sample, Video

STAGES = ("decode", "track", "flow", "spot", "classify")
EVENT_COLUMNS = (
    "subject",
    "video",
    "onset",
    "apex",
    "offset",
    "start_s",
    "end_s",
    "type",
    "label",
    "score",
)


@dataclass(eq=False)
class Analysis:
    """One recording's result.

    ``events``: one row per spotted interval (``EVENT_COLUMNS``, then ``p_<class>`` per class
    of the model; ``score`` is the spotting score in noise units, ``label`` the most probable
    class, empty without a model). ``frames``: one row per frame (``frame``, ``time_s``,
    ``face_found``, ``confidence``, ``lost``, ``motion``: the spotter's score, then
    ``motion_<region>`` per region). ``notes``: what was dropped or could not be labelled.
    ``timings``: seconds per stage (``STAGES``). ``pictures``: event number -> BGR image of
    its apex face beside its onset -> apex flow.
    """

    video: str
    source: str
    fps: float
    events: pd.DataFrame
    frames: pd.DataFrame
    notes: list[str]
    timings: dict[str, float]
    track: FaceTrack = field(repr=False)
    signal: MotionSignal = field(repr=False)
    pictures: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    classes: tuple[str, ...] = ()


class _Clock:
    """Seconds spent per stage."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def timed(self, frames: Iterator[np.ndarray], name: str) -> Iterator[np.ndarray]:
        """``frames`` with the time spent producing each one counted under ``name``."""
        iterator = iter(frames)
        while True:
            with self.stage(name):
                frame = next(iterator, None)
            if frame is None:
                return
            yield frame


def clip_plan(plan: Plan) -> Plan:
    """The bundle's Plan as it runs on clips of frames: its own pipeline, or (a model trained
    on a reader's files) the pipeline the recipe gives its input kind, default settings."""
    if plan.input.kind not in PIPELINE_FOR_KIND:
        known = ", ".join(sorted(PIPELINE_FOR_KIND))
        raise BundleError(
            f"a {plan.input.kind} model cannot label video intervals (analyze feeds {known})"
        )
    if plan.preprocess is not None:
        return plan
    return plan.model_copy(
        update={"preprocess": preprocess_for(plan.input, "clips", PreprocessConfig())}
    )


class Analyzer:
    """Spot expressions in long recordings and, with ``model``, label each one.

    ``model``: a bundle folder (``OUT/model`` of a run) or a loaded :class:`Bundle`; None spots
    only. ``device``: where the network runs. ``settings`` (or keyword arguments, the same
    names): :class:`AnalyzeSettings`.

    >>> analyzer = Analyzer(model="runs/demo/result/model")          # doctest: +SKIP
    >>> result = analyzer.analyze("interview.mp4")                   # doctest: +SKIP
    >>> result.events[["start_s", "end_s", "type", "label", "score"]]  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | Path | Bundle | None = None,
        device: str = "cpu",
        settings: AnalyzeSettings | None = None,
        **options,
    ):
        if settings is not None and options:
            raise TypeError("give settings or keyword settings, not both")
        self.settings = settings or settings_from(**options)
        check_settings(self.settings)  # a bad setting fails here, not once per video
        self.bundle = load_bundle(model) if isinstance(model, str | Path) else model
        self.plan = clip_plan(self.bundle.plan) if self.bundle is not None else None
        self.device = device

    @property
    def classes(self) -> tuple[str, ...]:
        return self.bundle.classes if self.bundle is not None else ()

    def analyze(
        self,
        video: str | Path | Video | VideoSource | list,
        fps: float | None = None,
        name: str | None = None,
        progress: bool = False,
    ) -> Analysis:
        """Spot (and label) the expressions of one recording: a video file, a frame folder, a
        list of frame files or BGR arrays (with ``fps``), a reader's Video or a VideoSource.
        Raises DataError (naming the file and frame) for input that cannot be analysed."""
        source = video if isinstance(video, VideoSource) else open_video(video, fps, name)
        subject = video.subject if isinstance(video, Video) else source.name
        clock = _Clock()
        tracker = FaceTracker(source.fps, self.settings, str(source.path))
        frames = tqdm(
            clock.timed(source.frames(), "decode"),
            total=source.frame_count,
            desc=source.name,
            unit="frame",
            disable=not progress,
            leave=False,
        )
        for frame in frames:
            with clock.stage("track"):
                tracker.add(frame)
        with clock.stage("track"):
            track = tracker.result()
        with clock.stage("flow"):
            signal = SPOTTERS.get(self.settings.method)(track, self.settings)
        with clock.stage("spot"):
            intervals = find_intervals(signal, track.fps, self.settings)
        notes = list(track.notes)
        intervals = _drop_lost(intervals, track, notes)
        with clock.stage("decode"):
            frames_needed = {i for iv in intervals for i in range(iv.onset, iv.offset + 1)}
            originals = source.read(frames_needed)
        crops = [self._crops(source, track, iv, originals) for iv in intervals]
        with clock.stage("classify"):
            probabilities = self._classify(source, intervals, crops, notes)
        events = self._events(subject, source, intervals, probabilities)
        pictures = {
            n: event_picture(track, iv, originals[iv.apex]) for n, iv in enumerate(intervals)
        }
        return Analysis(
            source.name,
            str(source.path),
            source.fps,
            events,
            frame_table(track, signal),
            notes,
            clock.seconds,
            track,
            signal,
            pictures,
            self.classes,
        )

    def _crops(
        self, source: VideoSource, track: FaceTrack, interval: Interval, originals: dict
    ) -> list[MemoryFrame]:
        """The interval's frames cropped to one box around the face at its onset."""
        box = track.face_box(interval.onset, self.settings.crop_margin)
        side = min(self.settings.crop_side, max(1, round(box[2] - box[0])))
        return [
            MemoryFrame(source.frame_name(i), faces.crop_box(originals[i], box, side))
            for i in range(interval.onset, interval.offset + 1)
        ]

    def _classify(
        self,
        source: VideoSource,
        intervals: list[Interval],
        crops: list[list[MemoryFrame]],
        notes: list[str],
    ) -> np.ndarray | None:
        """(intervals, classes) probabilities, NaN for an interval the pipeline could not
        read (noted); None without a model."""
        if self.bundle is None:
            return None
        samples = [
            Sample(
                f"{source.name}_{n}",
                "video",
                source.name,
                "",
                tuple(frames),
                onset=0,
                apex=iv.apex - iv.onset,
                offset=iv.offset - iv.onset,
                fps=source.fps,
            )
            for n, (iv, frames) in enumerate(zip(intervals, crops, strict=True))
        ]
        out = np.full((len(samples), len(self.classes)), np.nan)
        if not samples:
            return out
        inputs = model_inputs(samples, self.plan)
        for sample_id, reason in inputs.failed.items():
            notes.append(f"interval {sample_id} not labelled: {reason}")
        if len(inputs):
            probs = self.bundle.probabilities(inputs, device=self.device)
            kept = {s.id: i for i, s in enumerate(inputs.samples)}
            for n, sample in enumerate(samples):
                if sample.id in kept:
                    out[n] = probs[kept[sample.id]]
        return out

    def _events(
        self,
        subject: str,
        source: VideoSource,
        intervals: list[Interval],
        probabilities: np.ndarray | None,
    ) -> pd.DataFrame:
        rows = []
        for n, iv in enumerate(intervals):
            row = {
                "subject": subject,
                "video": source.name,
                "onset": iv.onset,
                "apex": iv.apex,
                "offset": iv.offset,
                "start_s": round(iv.onset / source.fps, 4),
                "end_s": round((iv.offset + 1) / source.fps, 4),
                "type": iv.type,
                "label": "",
                "score": round(iv.score, 3),
            }
            if probabilities is not None:
                p = probabilities[n]
                if np.isfinite(p).all():
                    row["label"] = self.classes[int(np.argmax(p))]
                row |= {f"p_{c}": float(v) for c, v in zip(self.classes, p, strict=True)}
            rows.append(row)
        columns = [*EVENT_COLUMNS, *(f"p_{c}" for c in self.classes)]
        return pd.DataFrame(rows, columns=columns)


def _drop_lost(intervals: list[Interval], track: FaceTrack, notes: list[str]) -> list[Interval]:
    """Intervals during which the face was tracked throughout; the others dropped, noted."""
    kept = []
    for iv in intervals:
        missing = np.flatnonzero(~track.found[iv.onset : iv.offset + 1])
        if missing.size:
            notes.append(
                f"interval {iv.onset}-{iv.offset} dropped: face lost at frame "
                f"{iv.onset + int(missing[0])}"
            )
        else:
            kept.append(iv)
    return kept


def frame_table(track: FaceTrack, signal: MotionSignal) -> pd.DataFrame:
    """One row per frame: time, the track's flags, the spotter's score and region signals."""
    n = len(track)
    table = pd.DataFrame(
        {
            "frame": np.arange(n),
            "time_s": np.round(np.arange(n) / track.fps, 4),
            "face_found": track.found,
            "confidence": np.round(track.confidence, 4),
            "lost": track.lost,
            "motion": np.round(signal.score, 4),
        }
    )
    for name, values in signal.regions.items():
        table[f"motion_{name}"] = np.round(values, 4)
    return table


PICTURE_SIDE = 224


def event_picture(
    track: FaceTrack, interval: Interval, apex_frame: np.ndarray, method: str = "farneback"
) -> np.ndarray:
    """The aligned apex face beside the onset -> apex flow of the aligned faces, less the
    rigid part (hue: direction, brightness: speed, full at half a pixel or the picture's 99th
    percentile, whichever is larger), each ``PICTURE_SIDE`` pixels square. Farneback by
    default: smoother to look at than the spotters' DIS."""
    side = track.faces.shape[1]
    zoom = PICTURE_SIDE / side
    matrix = track.alignment[interval.apex] * zoom
    face = cv2.warpAffine(
        apex_frame, matrix, (PICTURE_SIDE, PICTURE_SIDE), flags=cv2.INTER_AREA,
        borderMode=cv2.BORDER_REPLICATE,
    )  # fmt: skip
    flow = ResidualFlow(track, method)(track.faces[interval.onset], track.faces[interval.apex])
    speed, angle = cv2.cartToPolar(flow[..., 0], flow[..., 1])
    full = max(0.5, float(np.percentile(speed, 99)))
    hsv = np.zeros((side, side, 3), np.uint8)
    hsv[..., 0] = (angle * 90 / np.pi).astype(np.uint8)
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(speed / full * 255, 0, 255).astype(np.uint8)
    colour = cv2.resize(cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR), (PICTURE_SIDE, PICTURE_SIDE))
    return np.hstack([face, colour])
