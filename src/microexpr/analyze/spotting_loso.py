"""The learned spotter's protocol: long videos in, their features cached, LOSO out.

Reading long videos (:func:`load_long_videos`, the ``synthetic`` layout included), tracking
and measuring them once per video and settings (:func:`video_features`, cached as ``.npz``:
tracking is the slow part and no fold changes it), then :func:`spotting_loso`: leave one
subject out, the spotter of :mod:`microexpr.analyze.learned` fitted and its levels chosen
on the other subjects, and with a model bundle the spot-then-recognise chain scored too.
:func:`run_spotting` is what ``microexpr spot`` runs.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from microexpr import atomicio
from microexpr.analyze.learned import (
    PRED_COLUMNS,
    TRUTH_COLUMNS,
    FrameFeatures,
    LearnedSpotter,
    SpotterConfig,
    VideoFeatures,
    fit_spotter,
    frame_features,
    predict_table,
    truth_of,
)
from microexpr.analyze.settings import AnalyzeSettings
from microexpr.analyze.track import FaceTrack
from microexpr.evaluate.spotting import SpottingScores, spotting_scores
from microexpr.protocols import make_folds
from microexpr.samples import Event, Video, subject_key


def read_synthetic(root: str | Path) -> list[Video]:
    """The ``synthetic`` layout: what ``benchmarks/spotting_long.py --out ROOT`` writes, MP4
    files in ``ROOT/videos/`` (or ROOT itself) and ``ROOT/truth.csv`` in MEGC's columns
    (subject, video, onset, apex, offset, type, emotion). A video without truth rows is one
    with no expressions; its subject is its name up to the first ``_`` (``s01_v02``)."""
    root = Path(root)
    truth_file = root / "truth.csv"
    if not truth_file.is_file():
        raise FileNotFoundError(f"synthetic: {truth_file} not found (MEGC columns per event)")
    truth = pd.read_csv(truth_file, dtype={"subject": str, "video": str})
    missing = sorted(set(TRUTH_COLUMNS[:6]) - set(truth.columns))
    if missing:
        raise ValueError(f"{truth_file}: missing column(s) {', '.join(missing)}")
    folder = root / "videos" if (root / "videos").is_dir() else root
    files = sorted(folder.glob("*.mp4"))
    if not files:
        raise FileNotFoundError(f"synthetic: no .mp4 files in {folder}")
    videos = []
    for path in files:
        rows = truth[truth.video == path.stem]
        events = tuple(
            Event(
                int(r["onset"]),
                None if pd.isna(r["apex"]) else int(r["apex"]),
                int(r["offset"]),
                str(r["type"]),
                "" if pd.isna(r.get("emotion")) else str(r.get("emotion")),
            )
            for r in rows.to_dict("records")
        )
        subject = str(rows.subject.iloc[0]) if len(rows) else path.stem.split("_")[0]
        videos.append(Video(path.stem, SYNTHETIC_DATASET, subject, path=path, events=events))
    return videos


LAYOUTS = ("casme_sq", "samm_lv", "casme3_lv", "synthetic")
# The dataset name the synthetic generator gives its long videos (synth.long_videos.DATASET;
# analysis never imports the generator, an import-linter contract), so fold names match.
SYNTHETIC_DATASET = "synthetic_long"


def load_long_videos(layout: str, root: str | Path) -> list[Video]:
    """Long videos of ``layout``: a registered long-video reader (``casme_sq``, ``samm_lv``,
    ``casme3_lv``) or ``synthetic`` (:func:`read_synthetic`)."""
    if layout == "synthetic":
        return read_synthetic(root)
    from microexpr import datasets

    return datasets.load_videos(layout, root)


def _cache_key(video: Video, settings: AnalyzeSettings) -> str:
    where = str(video.path or (video.frames[0].parent if video.frames else ""))
    text = json.dumps([video.id, where, settings.model_dump(mode="json")], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def features_of_track(track: FaceTrack, video: Video, settings: AnalyzeSettings) -> VideoFeatures:
    """A tracked video's features with its reader record."""
    features = frame_features(track, settings)
    return VideoFeatures(
        video.id, video.dataset, video.subject, track.fps, features, video.events, video
    )


def video_features(
    video: Video, settings: AnalyzeSettings, cache: Path | None = None
) -> VideoFeatures:
    """Track ``video`` and measure its features, or read them from ``cache`` (an ``.npz``,
    no pickles, per video and settings)."""
    from microexpr.analyze.track import track_face
    from microexpr.analyze.video import open_video

    key = _cache_key(video, settings)
    file = None if cache is None else cache / f"{_safe(video.id)}-{key}.npz"
    if file is not None and atomicio.problem(file) is None:
        with np.load(io.BytesIO(atomicio.read_bytes(file)), allow_pickle=False) as data:
            names = [str(n) for n in data["region_names"]]
            regions = dict(zip(names, data["regions"], strict=True))
            windows = tuple(int(w) for w in data["windows"])
            features = FrameFeatures(data["x"], (windows[0], windows[1]), regions)
            fps = float(data["fps"])
        return VideoFeatures(
            video.id, video.dataset, video.subject, fps, features, video.events, video
        )
    source = open_video(video)
    track = track_face(source.frames(), source.fps, settings, str(source.path))
    result = features_of_track(track, video, settings)
    if file is not None:
        buffer = io.BytesIO()
        f = result.features
        np.savez(
            buffer, x=f.x, windows=np.array(f.windows), fps=np.array(result.fps),
            region_names=np.array(list(f.regions)), regions=np.array(list(f.regions.values())),
        )  # fmt: skip
        file.parent.mkdir(parents=True, exist_ok=True)
        atomicio.write_bytes(file, buffer.getvalue())
    return result


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)


# --------------------------------------------------------------------------------------------
# The protocol: LOSO over long videos, spotting and spot-then-recognise
# --------------------------------------------------------------------------------------------


@dataclass
class LosoResult:
    """Pooled predictions (a ``fold`` column added; ``label`` with a model), the truth, the
    MEGC scores of the pool, and per fold: its name, test and training subjects, levels."""

    predictions: pd.DataFrame
    truth: pd.DataFrame
    scores: SpottingScores
    folds: list[dict]


FitFn = Callable[[Sequence[VideoFeatures], SpotterConfig], LearnedSpotter]


def spotting_loso(
    videos: Sequence[VideoFeatures],
    config: SpotterConfig,
    out: Path | None = None,
    bundle: object | None = None,
    device: str = "cpu",
    classes: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> LosoResult:
    """Leave one subject out: per fold the spotter is fitted and its levels chosen on the
    other subjects only (:func:`fit_spotter`), then spots the held-out subject's videos. With
    ``bundle`` (a model bundle folder or Bundle) the fold's spotter runs through
    :class:`~microexpr.analyze.Analyzer` on the held-out videos, which labels each interval:
    the spot-then-recognise chain, scored with STRS. The bundle is used as given: one trained
    on the held-out subject makes the analysis figure optimistic.

    With ``out``, per fold ``out/folds/<subject>/`` gets ``predictions.csv``, ``spotter.json``
    and ``fold.json`` (written last); a fold finished under the same recipe is read back, not
    redone."""
    videos = list(videos)
    folds = make_folds("loso", videos)  # type: ignore[arg-type]  # needs .dataset, .subject
    parts, records = [], []
    for fold in folds:
        train = [videos[i] for i in fold.train]
        test = [videos[i] for i in fold.test]
        folder = None if out is None else out / "folds" / fold.name
        done = _finished(folder, config, bundle is not None)
        if done is not None:
            pred, record = done
        else:
            spotter = fit_spotter(train, config)
            pred = predict_table(spotter, test, config.analyze)
            if folder is not None or bundle is not None:
                folder = folder or Path(_temporary_folder()) / fold.name
                spotter.save(folder / "spotter.json")
            if bundle is not None:
                pred = _recognise(folder / "spotter.json", test, bundle, config, device)
            record = {
                "fold": fold.name,
                "test_subjects": sorted({v.subject for v in test}),
                "train_subjects": sorted({v.subject for v in train}),
                "levels": {k: [h.threshold, h.extend] for k, h in spotter.heads.items()},
                "recipe": config.digest(),
                "chain": bundle is not None,
            }
            if out is not None:
                atomicio.write_text(folder / "predictions.csv", pred.to_csv(index=False))
                atomicio.write_text(folder / "fold.json", json.dumps(record, indent=1) + "\n")
        parts.append(pred.assign(fold=fold.name))
        records.append(record)
        if log is not None:
            log(f"fold {fold.name}: {len(pred)} intervals, levels {record['levels']}")
    predictions = pd.concat(parts, ignore_index=True)
    truth = truth_of(videos)
    if "label" not in predictions.columns:
        truth = truth.drop(columns="emotion")
    scores = spotting_scores(predictions.drop(columns="fold"), truth, config.iou, classes=classes)
    return LosoResult(predictions, truth, scores, records)


def _temporary_folder() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="microexpr-spot-")


def _finished(
    folder: Path | None, config: SpotterConfig, chain: bool
) -> tuple[pd.DataFrame, dict] | None:
    """A fold written before under the same recipe (and the same chain), or None."""
    if folder is None or atomicio.problem(folder / "fold.json") is not None:
        return None
    record = json.loads(atomicio.read_text(folder / "fold.json"))
    if record.get("recipe") != config.digest() or record.get("chain") != chain:
        return None
    if atomicio.problem(folder / "predictions.csv") is not None:
        return None
    text = atomicio.read_text(folder / "predictions.csv")
    pred = pd.read_csv(io.StringIO(text), dtype={"subject": str, "video": str, "label": str})
    return pred, record


def _recognise(
    spotter_file: Path,
    videos: Sequence[VideoFeatures],
    model: object,
    config: SpotterConfig,
    device: str,
) -> pd.DataFrame:
    """Spot-then-recognise on the held-out videos: :class:`Analyzer` with this fold's spotter
    and the model bundle; the events in MEGC's columns plus ``label``."""
    from microexpr.analyze.analyzer import Analyzer

    settings = config.analyze.model_copy(update={"method": "learned", "spotter": str(spotter_file)})
    analyzer = Analyzer(model=model, device=device, settings=settings)  # type: ignore[arg-type]
    rows = []
    for video in videos:
        if video.video is None:
            raise ValueError(f"{video.id}: spot-then-recognise needs the video itself")
        events = analyzer.analyze(video.video).events
        rows.append(events.assign(subject=video.subject, video=video.id))
    table = pd.concat(rows, ignore_index=True)
    return table[[*PRED_COLUMNS, "label"]]


def run_spotting(
    config: SpotterConfig,
    layout: str,
    data: str | Path,
    out: str | Path,
    model: str | Path | None = None,
    device: str = "cpu",
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> tuple[LosoResult, LearnedSpotter]:
    """``microexpr spot``: read the long videos, measure them (cached in ``out/features``),
    run :func:`spotting_loso`, write the pooled report, and fit the final spotter on every
    subject (``out/spotter.json``, levels chosen by the same inner split)."""
    from tqdm.auto import tqdm

    from microexpr.evaluate.report import versions

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = load_long_videos(layout, data)
    if not records:
        raise ValueError(f"{layout}: no videos in {data}")
    features = [
        video_features(v, config.analyze, out / "features")
        for v in tqdm(records, desc="features", unit="video", disable=not progress)
    ]
    bundle = None
    if model is not None:
        from microexpr.bundle import load_bundle

        bundle = load_bundle(model)
    result = spotting_loso(features, config, out, bundle, device, log=log)
    atomicio.write_text(out / "predictions.csv", result.predictions.to_csv(index=False))
    atomicio.write_text(out / "truth.csv", result.truth.to_csv(index=False))
    final = fit_spotter(features, config)
    final.save(out / "spotter.json")
    report = {
        "protocol": "loso",
        "layout": layout,
        "data": str(data),
        "videos": len(features),
        "subjects": len({subject_key(v) for v in features}),
        "model": None if model is None else str(model),
        "scores": result.scores.to_dict(),
        "folds": result.folds,
        "final_levels": {k: [h.threshold, h.extend] for k, h in final.heads.items()},
        "config": config.model_dump(mode="json"),
        "seed": config.seed,
        "versions": versions(),
    }
    atomicio.write_text(out / "report.json", json.dumps(report, indent=1) + "\n")
    return result, final
