"""What ``microexpr analyze`` writes per recording, and the batch over many of them.

``OUT/<video>/``: ``events.csv`` (one row per spotted interval), ``frames.csv`` (one row per
frame), ``timeline.png`` (the motion signal over time, the spotted intervals shaded and
labelled), ``event_<n>.png`` (each event's apex face beside its flow), with ``video_out``
``annotated.mp4``, and last ``analysis.json`` (settings, model, counts, notes, seconds per
stage): its presence marks a finished recording, which a re-run never redoes. Files are
written atomically (``microexpr.atomicio``), so an interrupted run leaves none half-written.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from microexpr import atomicio
from microexpr.analyze.analyzer import Analysis, Analyzer
from microexpr.analyze.video import VideoSource, open_video
from microexpr.errors import DataError
from microexpr.evaluate.report import versions

DONE = "analysis.json"
_COLOURS = {"micro": "tab:red", "macro": "tab:blue"}


def event_caption(row) -> str:
    """``micro 1.23-1.50 s happiness 0.81``: type, time and, with a model, label and its
    probability."""
    text = f"{row.type} {row.start_s:.2f}-{row.end_s:.2f} s"
    if row.label:
        text += f" {row.label} {getattr(row, f'p_{row.label}'):.2f}"
    return text


def plot_timeline(analysis: Analysis, threshold: float) -> bytes:
    """PNG of the spotter's score over time (one line per window), the threshold, frames
    without a face in grey, and every event shaded in its type's colour with its caption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fps, signal = analysis.fps, analysis.signal
    time = np.arange(signal.scores.shape[1]) / fps
    fig, ax = plt.subplots(figsize=(11, 3.6))
    for window, score in zip(signal.windows, signal.scores, strict=True):
        ax.plot(time, score, lw=0.9, label=f"k = {window} frames ({window / fps:.2f} s)")
    ax.axhline(threshold, color="0.4", ls="--", lw=0.8, label=f"threshold {threshold:g}")
    top = float(np.nanmax(signal.scores)) if np.isfinite(signal.scores).any() else threshold
    top = max(top, threshold) * 1.15
    missing = ~analysis.track.found
    if missing.any():
        ax.fill_between(time, 0, top, where=missing, color="0.85", step="mid", label="no face")
    for row in analysis.events.itertuples():
        ax.axvspan(row.start_s, row.end_s, color=_COLOURS[row.type], alpha=0.25, lw=0)
        ax.text(
            row.start_s, top * 0.97, event_caption(row), rotation=90, va="top", ha="right",
            fontsize=7, color=_COLOURS[row.type],
        )  # fmt: skip
    ax.set_xlim(0, max(time[-1], 1e-3) if len(time) else 1)
    ax.set_ylim(
        min(-2.0, float(np.nanmin(signal.scores)) if np.isfinite(signal.scores).any() else -2), top
    )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("motion (noise units)")
    micro = int((analysis.events["type"] == "micro").sum())
    macro = len(analysis.events) - micro
    ax.set_title(f"{analysis.video}: {micro} micro, {macro} macro (red: micro, blue: macro)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), fontsize=7, ncol=4, frameon=False)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    return png.getvalue()


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise OSError("could not encode a PNG")
    return data.tobytes()


def write_annotated(analysis: Analysis, source: VideoSource, path: Path) -> Path:
    """An MP4 of the recording with the tracked face boxed, the motion score as a bar, and
    each event's caption while it lasts (red: micro, blue: macro)."""
    colours = {"micro": (40, 40, 220), "macro": (200, 120, 30)}
    by_frame: dict[int, tuple[str, str]] = {}
    for row in analysis.events.itertuples():
        for i in range(row.onset, row.offset + 1):
            by_frame[i] = (row.type, event_caption(row))
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    writer = None
    try:
        for i, frame in enumerate(source.frames()):
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(
                    str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), source.fps, (w, h)
                )
                if not writer.isOpened():
                    raise OSError(f"{path}: OpenCV cannot write MP4 (mp4v) here")
            frame = frame.copy()
            box = analysis.track.face_box(i, 0.05) if i < len(analysis.track) else None
            if box is not None:
                x0, y0, x1, y1 = (int(round(v)) for v in box)
                cv2.rectangle(frame, (x0, y0), (x1, y1), (80, 200, 80), 1)
            score = analysis.signal.score[i] if i < len(analysis.signal.score) else np.nan
            bar = int(np.clip(np.nan_to_num(score) / 10.0, 0, 1) * (frame.shape[1] - 20))
            cv2.rectangle(
                frame, (10, frame.shape[0] - 14), (10 + bar, frame.shape[0] - 6), (0, 200, 255), -1
            )
            text = f"{i / source.fps:6.2f} s"
            if i in by_frame:
                kind, caption = by_frame[i]
                cv2.rectangle(
                    frame, (0, 0), (frame.shape[1] - 1, frame.shape[0] - 1), colours[kind], 4
                )
                text += "  " + caption
            cv2.putText(frame, text, (10, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 2)
            cv2.putText(frame, text, (10, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (20, 20, 20), 1)
            writer.write(frame)
    finally:
        if writer is not None:
            writer.release()
    tmp.replace(path)
    return path


def save_analysis(
    analysis: Analysis,
    folder: Path,
    analyzer: Analyzer,
    source: VideoSource | None = None,
    video_out: bool = False,
) -> Path:
    """Write every output of one recording into ``folder``; ``analysis.json`` last."""
    folder.mkdir(parents=True, exist_ok=True)
    atomicio.write_text(folder / "events.csv", analysis.events.to_csv(index=False))
    atomicio.write_text(folder / "frames.csv", analysis.frames.to_csv(index=False))
    atomicio.write_bytes(
        folder / "timeline.png", plot_timeline(analysis, analyzer.settings.threshold)
    )
    for n, picture in analysis.pictures.items():
        atomicio.write_bytes(folder / f"event_{n:03d}.png", _png(picture))
    if video_out:
        write_annotated(
            analysis, source or open_video(analysis.source, analysis.fps), folder / "annotated.mp4"
        )
    summary = {
        "video": analysis.video,
        "source": analysis.source,
        "fps": analysis.fps,
        "frames": len(analysis.frames),
        "events": {
            kind: int((analysis.events["type"] == kind).sum()) for kind in ("micro", "macro")
        },
        "model": str(analyzer.bundle.path) if analyzer.bundle is not None else None,
        "classes": list(analysis.classes),
        "settings": analyzer.settings.model_dump(mode="json"),
        "notes": analysis.notes,
        "seconds": {k: round(v, 3) for k, v in analysis.timings.items()},
        "versions": versions(),
    }
    atomicio.write_text(folder / DONE, json.dumps(summary, indent=2) + "\n")
    return folder


def is_done(folder: Path) -> bool:
    """A finished recording: its ``analysis.json`` whole (written last, checksummed)."""
    return atomicio.problem(folder / DONE) is None


def output_names(inputs: Sequence[Path]) -> list[str]:
    """One output folder name per input: its stem, with the parent folder's name in front
    where two inputs share a stem."""
    stems = [p.stem if p.suffix else p.name for p in inputs]
    return [
        f"{p.parent.name}_{stem}" if stems.count(stem) > 1 else stem
        for p, stem in zip(inputs, stems, strict=True)
    ]


@dataclass
class BatchResult:
    """Per input: ``done`` (analysed now), ``skipped`` (finished before), ``failed``
    (input -> one-line reason)."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)
    analyses: dict[Path, Analysis] = field(default_factory=dict)


def analyze_videos(
    inputs: Sequence[Path],
    out: Path,
    analyzer: Analyzer,
    fps: float | None = None,
    video_out: bool = False,
    progress: bool = True,
) -> BatchResult:
    """Analyse every input into ``out/<name>/``; finished ones are skipped, and one that
    cannot be read is reported and the rest still done."""
    result = BatchResult()
    names = output_names(inputs)
    bar = tqdm(
        list(zip(inputs, names, strict=True)), desc="videos", unit="video", disable=not progress
    )
    for path, name in bar:
        folder = out / name
        if is_done(folder):
            result.skipped.append(path)
            continue
        try:
            source = open_video(path, fps, name)
            analysis = analyzer.analyze(source, progress=progress)
            save_analysis(analysis, folder, analyzer, source, video_out)
        except DataError as err:
            result.failed[path] = str(err)
            continue
        result.done.append(path)
        result.analyses[path] = analysis
    return result
