"""A learned spotter: a per-frame apex score regressed from region flow, trained under LOSO.

After SoftNet (Liong et al., "Shallow optical flow three-stream CNN for macro- and
micro-expression spotting from long videos", ICIP 2021; genbing99/SoftNet-SpotME): every frame
gets a pseudo-label, a small regressor learns it from that frame's optical-flow features, and
the smoothed predicted score gives intervals where it rises above a threshold. Here:

- **Features** (:func:`frame_features`): the ``region_flow`` spotter's own measurements
  (:func:`microexpr.analyze.spotting.region_flow_parts`): per region and window k (micro and
  macro), the flow speed from frame i-k to i, from i to i+k and their differenced score, each
  in the video's own noise units, plus the regions' maximum score; signed log1p, so a macro
  movement does not swamp the scale. SoftNet feeds the network the flow between frame i and
  i+k itself; the per-region speeds are that flow reduced to what a shallow model can use.
- **Pseudo-labels** (:func:`pseudo_labels`): per type, a score rising from the onset to 1 at
  the apex and back to the offset (the planted or coded displacement's shape). SoftNet's
  public code labels 1 every frame whose k-window [i, i+k) overlaps an expression and takes
  [peak - k, peak + k] as the interval; here the interval is the run of the score above the
  extend level (:func:`~microexpr.analyze.spotting.find_intervals`, the rule every spotter
  shares), so the label follows the expression's own extent instead of a fixed 2k.
- **Smoothing**: the predicted score is averaged over k frames, with k half the average
  length of the training expressions of that type (SoftNet's k; it aggregates over 2k).
- **Model** (one per type with training examples): a scikit-learn MLP or ridge regressor on
  standardised features; frames labelled 0 are subsampled (``negatives``, SoftNet halves them).
  Its coefficients are kept as JSON, never pickled, and predictions always run through
  :class:`Regressor` (numpy), so a fitted and a reloaded spotter compute the same numbers.
- **Levels**: the threshold and extend level of each type are chosen on the training
  subjects only, by an inner split of them (``selection.inner_folds`` groups of subjects):
  out-of-fold scores of the training videos, the pooled overall F1 (MEGC's IoU >= 0.5) of the
  grid ``thresholds`` x ``extend_ratios``, the macro head first, then the micro head with it.

:func:`microexpr.analyze.spotting_loso.spotting_loso` runs the protocol: leave one subject
out (``microexpr.protocols``), the spotter fitted and its levels chosen on the other subjects,
the held-out subject's intervals predicted; with a model bundle each fold's spotter also
runs through :class:`Analyzer` on the held-out videos, so the whole spot-then-recognise chain
is scored (STRS). The spotter saved as ``spotter.json`` is what ``--set
analyze.method=learned --set analyze.spotter=FILE`` loads.
"""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GroupKFold

from microexpr import atomicio
from microexpr.analyze.settings import AnalyzeSettings
from microexpr.analyze.spotting import (
    MotionSignal,
    _noise_units,
    find_intervals,
    region_flow_parts,
)
from microexpr.analyze.track import FaceTrack
from microexpr.config import merge, parse_overrides, read_yaml_mapping, validate
from microexpr.evaluate.spotting import spotting_scores
from microexpr.samples import Event, Video, subject_key

FORMAT = "microexpr-learned-spotter"
FORMAT_VERSION = 1
TYPES = ("macro", "micro")  # heads in the order of the signal's windows (longest first)
PRED_COLUMNS = ["subject", "video", "onset", "apex", "offset", "type", "score"]
TRUTH_COLUMNS = ["subject", "video", "onset", "apex", "offset", "type", "emotion"]
# Settings that change the features: a spotter always measures with the ones it was fitted on.
FEATURE_KEYS = ("window_s", "macro_window_s", "regions", "flow")


# --------------------------------------------------------------------------------------------
# Recipe
# --------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegressorConfig(_Strict):
    """``kind``: ``mlp`` (scikit-learn MLPRegressor, ReLU, ``hidden`` units per layer) or
    ``ridge``; ``alpha``: L2 penalty; ``max_iter``: MLP epochs."""

    kind: Literal["mlp", "ridge"] = "mlp"
    hidden: tuple[int, ...] = (32,)
    alpha: float = Field(1e-3, ge=0)
    max_iter: int = Field(200, ge=1)


class SelectionConfig(_Strict):
    """How the levels are chosen on the training subjects: ``inner_folds`` groups of subjects
    (fewer when fewer subjects), the grid of ``thresholds`` (predicted-score units: the label
    is 1 at an apex) and ``extend_ratios`` (the extend level as a fraction of the threshold)."""

    inner_folds: int = Field(3, ge=2)
    thresholds: tuple[float, ...] = (0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
    extend_ratios: tuple[float, ...] = (0.25, 0.5, 0.75)

    @field_validator("thresholds")
    @classmethod
    def _positive(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        if not values or min(values) <= 0:
            raise ValueError("give at least one threshold, every one > 0")
        return values

    @field_validator("extend_ratios")
    @classmethod
    def _fractions(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        if not values or not all(0 < v < 1 for v in values):
            raise ValueError("give at least one ratio, every one in (0, 1)")
        return values


class SpotterConfig(_Strict):
    """A learned spotter's recipe (``configs/spotter_*.yaml``): ``analyze`` (tracking, feature
    and interval settings, :class:`AnalyzeSettings`), ``regressor``, ``negatives`` (fraction
    of the frames labelled 0 kept for fitting), ``smooth`` (average the score over k frames),
    ``selection``, ``iou`` (least IoU of a hit) and ``seed``."""

    name: str = "spotter"
    seed: int = 0
    analyze: AnalyzeSettings = AnalyzeSettings()
    regressor: RegressorConfig = RegressorConfig()
    negatives: float = Field(0.5, gt=0, le=1)
    smooth: bool = True
    selection: SelectionConfig = SelectionConfig()
    iou: float = Field(0.5, gt=0, le=1)

    def digest(self) -> str:
        """Short hash of the recipe: a fold written under another recipe is redone."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_spotter_config(path: str | Path, overrides: list[str] | None = None) -> SpotterConfig:
    """Read a spotter recipe and apply ``--set KEY=VALUE`` overrides; an unknown key or a bad
    value is refused with the dotted key named."""
    raw = read_yaml_mapping(path)
    return validate(SpotterConfig, merge(raw, parse_overrides(overrides or [])), str(path))


# --------------------------------------------------------------------------------------------
# Features and labels
# --------------------------------------------------------------------------------------------


@dataclass
class FrameFeatures:
    """(T, F) features of every frame (NaN rows: no face), the windows (macro k, micro k) and
    each region's raw differenced score at the micro window (for ``frames.csv``)."""

    x: np.ndarray
    windows: tuple[int, int]
    regions: dict[str, np.ndarray]


def feature_names(settings: AnalyzeSettings) -> list[str]:
    """Column names of :func:`frame_features` (2 windows x (3 x regions + 1))."""
    names = []
    for scale in TYPES:
        for part in ("score", "before", "after"):
            names += [f"{scale}_{part}_{r}" for r in settings.regions]
        names.append(f"{scale}_score_max")
    return names


def frame_features(track: FaceTrack, settings: AnalyzeSettings) -> FrameFeatures:
    """Per-frame features from ``region_flow``'s measurements (the module docstring). A video
    too short for a macro window gets the micro window's features in both slots, and a region
    that falls off the face reads 0, so every video has the same columns."""
    windows, names, parts = region_flow_parts(track, settings)
    if len(parts) == 1:
        windows, parts = windows * 2, parts * 2
    n, columns = len(track), []
    where = [settings.regions.index(name) for name in names]
    for part in parts:
        for raw in (part.score, part.before, part.after):
            full = np.zeros((n, len(settings.regions)))
            full[:, where] = _noise_units(raw)
            columns.append(full)
        columns.append(columns[-3].max(axis=1, keepdims=True))
    x = np.hstack(columns)
    x = np.sign(x) * np.log1p(np.abs(x))
    missing = ~track.found
    x[np.isnan(x) & ~missing[:, None]] = 0.0  # a measurement the window could not make
    x[missing] = np.nan
    regions = dict(zip(names, parts[-1].score.T, strict=True))
    return FrameFeatures(x, (int(windows[0]), int(windows[-1])), regions)


def pseudo_labels(n_frames: int, events: Sequence[Event], kind: str) -> np.ndarray:
    """(T,) per frame: the highest, over the ``kind`` events, of a score rising linearly from
    the onset to 1 at the apex and falling to the offset (1/length at either end, 0 outside);
    the apex is the middle frame when not coded."""
    y = np.zeros(n_frames)
    for event in events:
        if event.type != kind:
            continue
        onset, offset = max(event.onset, 0), min(event.offset, n_frames - 1)
        if offset < onset:
            continue
        apex = event.apex if event.apex is not None else (onset + offset) // 2
        apex = min(max(apex, onset), offset)
        i = np.arange(onset, offset + 1)
        rise = (i - onset + 1) / (apex - onset + 1)
        fall = (offset - i + 1) / (offset - apex + 1)
        y[onset : offset + 1] = np.maximum(y[onset : offset + 1], np.where(i <= apex, rise, fall))
    return y


@dataclass
class VideoFeatures:
    """One long video as the protocol uses it: who, its features and its coded events."""

    id: str
    dataset: str
    subject: str
    fps: float
    features: FrameFeatures
    events: tuple[Event, ...] = ()
    video: Video | None = field(default=None, repr=False)  # to re-run it through Analyzer

    def __len__(self) -> int:
        return len(self.features.x)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


@dataclass
class Regressor:
    """A fitted regressor as plain arrays: standardisation, then dense layers (ReLU between
    them, linear output). MLP and ridge both take this form, so a spotter file is JSON."""

    mean: np.ndarray
    scale: np.ndarray
    weights: list[np.ndarray]
    biases: list[np.ndarray]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(T,) scores; NaN where a row has no features."""
        h = (x - self.mean) / self.scale
        for n, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w + b
            if n < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return h[:, 0]

    def to_json(self) -> dict:
        return {
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "layers": [
                {"weight": w.tolist(), "bias": b.tolist()}
                for w, b in zip(self.weights, self.biases, strict=True)
            ],
        }

    @classmethod
    def from_json(cls, data: dict) -> Regressor:
        return cls(
            np.asarray(data["mean"], np.float64),
            np.asarray(data["scale"], np.float64),
            [np.asarray(layer["weight"], np.float64).reshape(-1, len(layer["bias"]))
             for layer in data["layers"]],
            [np.asarray(layer["bias"], np.float64) for layer in data["layers"]],
        )  # fmt: skip


def fit_regressor(x: np.ndarray, y: np.ndarray, config: RegressorConfig, seed: int) -> Regressor:
    """scikit-learn's regressor on standardised ``x`` (finite rows), as a :class:`Regressor`."""
    from sklearn.linear_model import Ridge
    from sklearn.neural_network import MLPRegressor

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (x - mean) / scale
    if config.kind == "ridge":
        ridge = Ridge(alpha=config.alpha).fit(z, y)
        return Regressor(
            mean, scale, [ridge.coef_.reshape(-1, 1)], [np.atleast_1d(ridge.intercept_)]
        )
    mlp = MLPRegressor(
        hidden_layer_sizes=config.hidden,
        alpha=config.alpha,
        max_iter=config.max_iter,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(z, y)
    return Regressor(mean, scale, list(mlp.coefs_), list(mlp.intercepts_))


@dataclass
class Head:
    """One type's regressor, its smoothing (seconds: k / fps) and its levels (predicted-score
    units)."""

    regressor: Regressor
    smooth_s: float
    threshold: float = 0.5
    extend: float = 0.25

    def scores(self, x: np.ndarray, fps: float) -> np.ndarray:
        """(T,) smoothed predicted score (NaN where there is no face)."""
        return smooth(self.regressor.predict(x), max(1, round(self.smooth_s * fps)))


def smooth(values: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over ``width`` frames (made odd), ignoring NaN; NaN stays NaN."""
    if width <= 1:
        return values
    half = width // 2
    kernel = np.ones(2 * half + 1)
    finite = np.isfinite(values)
    total = np.convolve(np.where(finite, values, 0.0), kernel, mode="same")
    count = np.convolve(finite.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / count
    out[~finite] = np.nan
    return out


def to_threshold_units(p: np.ndarray, head: Head, settings: AnalyzeSettings) -> np.ndarray:
    """The monotone piecewise-linear map taking ``head.extend`` to ``settings.extend`` and
    ``head.threshold`` to ``settings.threshold``, so the interval rules (which compare with
    those two) see exactly the learned levels, and raising ``analyze.threshold`` raises the
    learned one in proportion."""
    t_in, e_in = head.threshold, head.extend
    t_out, e_out = settings.threshold, settings.extend
    if e_out >= t_out:  # no room for two levels: one scale
        return p * (t_out / t_in)
    slope = (t_out - e_out) / (t_in - e_in)
    below = p * (e_out / e_in)
    return np.where(p < e_in, below, e_out + (p - e_in) * slope)


@dataclass
class LearnedSpotter:
    """Heads by type (``macro``, ``micro``; a type without training examples has none), the
    feature settings it was fitted with, and what it was fitted on."""

    settings: AnalyzeSettings
    heads: dict[str, Head]
    subjects: tuple[str, ...] = ()
    recipe: dict = field(default_factory=dict)

    def signal(
        self, features: FrameFeatures, fps: float, settings: AnalyzeSettings
    ) -> MotionSignal:
        """The MotionSignal the interval rules read: one window per head, longest first."""
        windows, scores = [], []
        for slot, kind in enumerate(TYPES):
            if kind in self.heads:
                head = self.heads[kind]
                windows.append(features.windows[slot])
                scores.append(to_threshold_units(head.scores(features.x, fps), head, settings))
        return MotionSignal(tuple(windows), np.array(scores), features.regions)

    def to_json(self) -> str:
        """The spotter file's text: JSON, floats written exactly (repr round-trips)."""
        data = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "settings": {k: _plain(getattr(self.settings, k)) for k in FEATURE_KEYS},
            "features": feature_names(self.settings),
            "subjects": list(self.subjects),
            "recipe": self.recipe,
            "heads": {
                kind: {
                    "smooth_s": head.smooth_s,
                    "threshold": head.threshold,
                    "extend": head.extend,
                    "regressor": head.regressor.to_json(),
                }
                for kind, head in self.heads.items()
            },
        }
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "spotter") -> LearnedSpotter:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}: not a spotter file (not JSON: {err})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{source}: not a learned spotter file (format is not {FORMAT})")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"{source}: spotter file version {data.get('version')} unknown")
        try:
            settings = AnalyzeSettings(**data["settings"])
            heads = {
                kind: Head(
                    Regressor.from_json(h["regressor"]),
                    float(h["smooth_s"]),
                    float(h["threshold"]),
                    float(h["extend"]),
                )
                for kind, h in data["heads"].items()
            }
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{source}: damaged spotter file ({err})") from None
        width = len(feature_names(settings))
        for kind, head in heads.items():
            if head.regressor.weights[0].shape[0] != width or kind not in TYPES:
                raise ValueError(f"{source}: head {kind} does not fit {width} features")
        return cls(settings, heads, tuple(data.get("subjects", ())), data.get("recipe", {}))

    def save(self, path: str | Path) -> Path:
        """Write atomically (with its ``.sha256``): JSON, never a pickle."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomicio.write_text(path, self.to_json())


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def load_spotter(path: str | Path) -> LearnedSpotter:
    """A saved spotter; a missing, damaged or foreign file is one ValueError naming it."""
    path = Path(path)
    try:
        text = atomicio.read_text(path)
    except atomicio.CorruptFileError as err:
        raise ValueError(f"analyze.spotter: {err}") from None
    return LearnedSpotter.from_json(text, str(path))


@functools.lru_cache(maxsize=4)
def _cached_spotter(path: str, stamp: float) -> LearnedSpotter:
    return load_spotter(path)


def spotter_for(settings: AnalyzeSettings) -> LearnedSpotter:
    """The spotter ``settings.spotter`` names (read once per file version)."""
    if not settings.spotter:
        raise ValueError(
            "analyze.method=learned needs analyze.spotter=FILE (a spotter.json of microexpr spot)"
        )
    path = Path(settings.spotter)
    if not path.is_file():
        raise ValueError(f"analyze.spotter: {path}: no such spotter file")
    return _cached_spotter(str(path.resolve()), path.stat().st_mtime)


def learned_signal(track: FaceTrack, settings: AnalyzeSettings) -> MotionSignal:
    """The ``learned`` spotter: the saved spotter's score over ``track``, measured with the
    feature settings it was fitted with, in the threshold units of ``settings``."""
    spotter = spotter_for(settings)
    measure = settings.model_copy(update=spotter.settings.model_dump(include=set(FEATURE_KEYS)))
    return spotter.signal(frame_features(track, measure), track.fps, settings)


# --------------------------------------------------------------------------------------------
# Fitting, with the levels chosen on the training subjects
# --------------------------------------------------------------------------------------------


def fit_heads(videos: Sequence[VideoFeatures], config: SpotterConfig) -> dict[str, Head]:
    """One regressor per type that the ``videos`` have examples of (levels not yet chosen)."""
    rng = np.random.default_rng(config.seed)
    heads = {}
    for kind in TYPES:
        lengths = [e.offset - e.onset + 1 for v in videos for e in v.events if e.type == kind]
        if not lengths:
            continue
        xs, ys = [], []
        for video in videos:
            y = pseudo_labels(len(video), video.events, kind)
            keep = np.isfinite(video.features.x).all(axis=1)
            xs.append(video.features.x[keep])
            ys.append(y[keep])
        x, y = np.vstack(xs), np.concatenate(ys)
        zero = np.flatnonzero(y == 0)
        drop = rng.choice(zero, round(len(zero) * (1 - config.negatives)), replace=False)
        keep = np.setdiff1d(np.arange(len(y)), drop)
        regressor = fit_regressor(x[keep], y[keep], config.regressor, config.seed)
        fps = float(np.median([v.fps for v in videos]))
        smooth_s = (np.mean(lengths) / 2 / fps) if config.smooth else 0.0
        heads[kind] = Head(regressor, float(smooth_s))
    return heads


def predict_table(
    spotter: LearnedSpotter, videos: Sequence[VideoFeatures], settings: AnalyzeSettings
) -> pd.DataFrame:
    """Spotted intervals of ``videos`` in MEGC's columns (``PRED_COLUMNS``)."""
    rows = []
    for video in videos:
        signal = spotter.signal(video.features, video.fps, settings)
        for iv in find_intervals(signal, video.fps, settings):
            rows.append(
                {"subject": video.subject, "video": video.id, "onset": iv.onset,
                 "apex": iv.apex, "offset": iv.offset, "type": iv.type, "score": iv.score}
            )  # fmt: skip
    return pd.DataFrame(rows, columns=PRED_COLUMNS)


def truth_of(videos: Sequence[VideoFeatures]) -> pd.DataFrame:
    """The coded events of ``videos`` in MEGC's columns (``TRUTH_COLUMNS``)."""
    rows = [
        {"subject": v.subject, "video": v.id, "onset": e.onset, "apex": e.apex,
         "offset": e.offset, "type": e.type, "emotion": e.emotion}
        for v in videos
        for e in v.events
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=TRUTH_COLUMNS)


def _grid_f1(tables: list[pd.DataFrame], truth: pd.DataFrame, iou: float) -> list[float]:
    """Pooled overall F1 of each prediction table against ``truth``, in one call of
    ``spotting_scores``: each table's videos are renamed apart (``<n>|<video>``) with a copy
    of the truth, so matching never crosses tables and its counts split by table."""
    preds, truths = [], []
    for n, table in enumerate(tables):
        preds.append(table.assign(video=f"{n}|" + table.video.astype(str)))
        truths.append(truth.assign(video=f"{n}|" + truth.video.astype(str)))
    pred = pd.concat(preds, ignore_index=True)
    matches = spotting_scores(pred, pd.concat(truths, ignore_index=True), iou).matches
    table_of = matches.video.str.split("|", n=1).str[0].astype(int)
    out = []
    for n, table in enumerate(tables):
        tp = int(matches.iou[table_of == n].notna().sum())
        fp, fn = len(table) - tp, len(truth) - tp
        out.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return out


Inner = list[tuple[LearnedSpotter, list[VideoFeatures]]]


def select_levels(inner: Inner, config: SpotterConfig) -> dict[str, tuple[float, float]]:
    """Each type's (threshold, extend): the grid point with the best pooled overall F1 of the
    inner spotters on their held-out (training) subjects; the macro head first, then the
    micro head with the macro one in place; ties go to the first grid point."""
    videos = [v for _, held_out in inner for v in held_out]
    truth = truth_of(videos)
    grid = [(t, t * r) for t in config.selection.thresholds for r in config.selection.extend_ratios]
    chosen: dict[str, tuple[float, float]] = {}
    for kind in [k for k in TYPES if k in inner[0][0].heads]:
        tables = []
        for levels in grid:
            parts = []
            for spotter, held_out in inner:
                spotter.heads[kind].threshold, spotter.heads[kind].extend = levels
                parts.append(predict_table(spotter, held_out, config.analyze))
            tables.append(pd.concat(parts, ignore_index=True))
        f1 = _grid_f1(tables, truth, config.iou)
        best = grid[int(np.argmax(f1))]  # the first of equal F1s
        for spotter, _ in inner:
            spotter.heads[kind].threshold, spotter.heads[kind].extend = best
        chosen[kind] = best
    return chosen


def fit_spotter(videos: Sequence[VideoFeatures], config: SpotterConfig) -> LearnedSpotter:
    """Fit on ``videos`` and choose the levels on them by an inner split by subject (fitted on
    some of their subjects, scored on the others, so no level is set on frames its model saw).
    Only ``videos`` are read: a protocol that passes the training subjects leaks nothing. A
    type some inner split has no examples of gets no head."""
    groups = [subject_key(v) for v in videos]
    subjects = sorted(set(groups))
    if len(subjects) < 2:
        raise ValueError(f"a learned spotter needs at least 2 subjects, got {len(subjects)}")
    splits = GroupKFold(n_splits=min(config.selection.inner_folds, len(subjects)))
    inner: Inner = []
    for train, test in splits.split(np.zeros(len(videos)), groups=groups):
        heads = fit_heads([videos[i] for i in train], config)
        inner.append((LearnedSpotter(config.analyze, heads), [videos[i] for i in test]))
    heads = fit_heads(videos, config)
    kinds = [k for k in heads if all(k in s.heads for s, _ in inner)]
    if not kinds:
        raise ValueError("no coded expressions in the training videos: nothing to learn")
    for spotter, _ in inner:
        spotter.heads = {k: spotter.heads[k] for k in kinds}
    levels = select_levels(inner, config)
    final = {k: heads[k] for k in kinds}
    for kind, (threshold, extend) in levels.items():
        final[kind].threshold, final[kind].extend = threshold, extend
    return LearnedSpotter(config.analyze, final, tuple(subjects), config.model_dump(mode="json"))
