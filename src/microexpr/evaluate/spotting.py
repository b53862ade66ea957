"""MEGC interval-spotting scores, and the spot-then-recognise (STR) analysis of the spotted hits.

Both tables hold one row per interval with columns ``subject, video, onset, offset``; frames
are inclusive, so an interval covers ``offset - onset + 1`` frames. Optional columns:

- ``type``: ``micro`` or ``macro`` (``micro-expression``/``macro-expression`` are read as
  such). Either both tables have it or neither does.
- ``emotion`` (or ``label``, the name :class:`microexpr.samples.Sample` uses), in either
  table; a table holding both is refused rather than guessing which one is meant.
- ``score``, in the predictions only: the confidence that orders matching.

Rules, and where they come from:

- IoU is ``|P ∩ T| / |P ∪ T|`` over the frames of the two intervals, and a prediction is a
  hit when it is ``>= iou`` (MEGC uses 0.5) against a truth of the same video and type
  not already matched. Each truth is matched at most once and each prediction at most once,
  so per video TP = a <= min(m, n), FP = n - a, FN = m - a for m truths and n predictions:
  the definition of the MEGC 2020 baseline paper (He, Wang, Li, Yap, FG 2020), kept by the
  later challenges, and the ``thresh = 0.5`` / ``calc_iou(clip, label) >= thresh`` test of
  its code (HeyingGithub/Baseline-project-for-MEGC2020_spotting,
  ``MDMD_results/result_helper.py``).
- Matching order: predictions by ``score`` descending when that column exists, else by onset
  (then offset, then row order); each takes the not-yet-matched truth with the highest IoU,
  ties going to the truth with the earliest onset. The paper leaves the order open; this
  one is deterministic and lets a confident prediction claim its truth first.
- A prediction only competes for truths of its own ``type``: a micro prediction lying on a
  macro truth is a micro FP and leaves the macro truth a macro FN. MEGC scores the two types
  separately (the baseline's ``return_preds_labels`` keeps only labels of ``cls``) and the
  overall row pools their counts (its README: overall TP 130 = 109 macro + 21 micro).
- TP, FP and FN are pooled over every video given, then precision, recall and F1 come from
  the pooled counts; any 0/0 is 0, as in the baseline's ``pred_clips_analysis``. Scoring each
  database on its own, as MEGC reports, means calling this once per database.

Where the public scripts part from that definition, this module follows the paper:

- The MEGC 2020 baseline counts as TP every truth that some prediction hits and as FP the
  predictions minus that number (``precision_small``), so one prediction over two truths
  scores two TPs; here it scores one and the other truth stays a FN. Its ``calc_iou`` also
  adds the +1 of inclusive frames outside ``max(0, ·)``, so disjoint intervals overlap by one
  frame, and it gives single-frame intervals an IoU of 0; here overlap is ``max(0, ·+1)`` and
  a single frame is an interval of length 1.
- SoftNet (genbing99/SoftNet-SpotME) and MEAN (genbing99/MEAN_Spot-then-recognize) match with
  the vendored ``Utils/mean_average_precision`` in its VOC "greedy" policy: a prediction looks
  only at its best-IoU truth and is a FP when that truth is taken, even if another free truth
  clears the threshold; MEAN also drops the sort by confidence. ME-TST (zizheng-guo/ME-TST,
  ``Utils/mean_average_precision_str``) counts one TP per truth a prediction hits.
- AUW-GCN (xjtupanda/AUW-GCN, ``utils/eval_utils.py``) takes IoU ``> 0.5`` on half-open
  intervals; here exactly 0.5 is a hit, as the paper's ``>= k`` says.

Analysis (STR, MEGC 2023-2025; MEAN's ``training_utils.recognition_evaluation``): over the
hits whose truth has an emotion, the predicted emotion is scored against the matched truth's.
``emotion_precision`` and ``uar`` are the macro precision and recall, ``analysis_f1`` is their
harmonic mean (MEAN's ``f1_all``, which ME-TST's ``train_evaluate.py`` also multiplies), ``uf1``
the mean per-class F1, and ``strs = f1 x analysis_f1``; the MEGC 2025 summary table (arXiv
2506.15298) checks out the same way (SAMM: 0.0278 x 0.2222 = 0.0062). The classes averaged
over are ``classes`` when given (a class absent from both sides then counts 0, as that table's
3-class figures imply; hits of other true emotions are left out, as a 3-class protocol leaves
"others" out), else every emotion seen among the analysed hits on either side (MEAN's per-class
loop skips classes seen on neither). A hit whose prediction has no emotion is a wrong
prediction, not left out. That table's UAR equals its macro precision, which looks like
swapped arguments; ``uar`` here is the macro recall. MEGC's STR scores micro-expressions, so
its number is the ``micro`` row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

REQUIRED = ("subject", "video", "onset", "offset")
TYPES = ("micro", "macro")
OVERALL = "overall"
EMOTION_COLUMNS = ("emotion", "label")
SPOTTING_COLUMNS = ("tp", "fp", "fn", "precision", "recall", "f1")
ANALYSIS_COLUMNS = (
    "analysed",
    "accuracy",
    "emotion_precision",
    "uar",
    "analysis_f1",
    "uf1",
    "strs",
)
COUNT_COLUMNS = ("tp", "fp", "fn", "analysed")
_NO_EMOTION = ""  # a predicted emotion that is missing; never a class, always wrong
_GROUP = ["subject", "video", "type"]


@dataclass(frozen=True)
class SpottingScores:
    """Spotting (and, with emotions on both sides, analysis) scores of one pool of videos.

    ``table`` has one row per type present (``micro``, ``macro``) and an ``overall`` row, with
    the columns of ``SPOTTING_COLUMNS`` and, when both tables carry emotions, of
    ``ANALYSIS_COLUMNS`` (NaN, and 0 analysed, in a row whose truths name no emotion).
    ``matches`` has one row per prediction in matching order: its interval, ``score`` and
    ``emotion`` when given, and the matched truth's ``truth_onset``, ``truth_offset``,
    ``truth_emotion`` and ``iou`` (NaN for a false positive).
    """

    table: pd.DataFrame
    matches: pd.DataFrame
    iou: float

    def to_dict(self) -> dict:
        """JSON-ready: counts as ints, NaN as None."""

        def value(column: str, x: float) -> int | float | None:
            if pd.isna(x):
                return None
            return int(x) if column in COUNT_COLUMNS else float(x)

        return {
            "iou": self.iou,
            "rows": {
                str(name): {column: value(column, x) for column, x in row.items()}
                for name, row in self.table.iterrows()
            },
        }


def interval_iou(onset_a: int, offset_a: int, onset_b: int, offset_b: int) -> float:
    """Frame IoU of two inclusive intervals ``[onset, offset]``."""
    overlap = max(0, min(offset_a, offset_b) - max(onset_a, onset_b) + 1)
    union = (offset_a - onset_a + 1) + (offset_b - onset_b + 1) - overlap
    return overlap / union


def spotting_scores(
    pred: pd.DataFrame,
    truth: pd.DataFrame,
    iou: float = 0.5,
    *,
    classes: Sequence[str] | None = None,
) -> SpottingScores:
    """Match ``pred`` to ``truth`` as MEGC does and score spotting and the STR analysis.

    ``iou`` is the least IoU of a hit; a ratio equal to it counts (frame counts are integers
    and the division is correctly rounded, so 5/10 against 0.5 is exact). ``classes`` fixes
    the emotions the analysis averages over (see the module docstring). Raises ``ValueError``
    naming the table and column when a column is missing or holds an unusable value.
    """
    if not 0 < iou <= 1:
        raise ValueError(f"iou must be in (0, 1], not {iou}")
    p = _prepare(pred, "pred", with_score=True)
    t = _prepare(truth, "truth", with_score=False)
    if ("type" in pred.columns) != ("type" in truth.columns):
        has, lacks = ("pred", "truth") if "type" in pred.columns else ("truth", "pred")
        raise ValueError(
            f"{has} has a 'type' column and {lacks} has not: give both (per-type scores) or "
            "neither (one untyped pool)"
        )
    matches = _match(p, t, iou)
    typed = "type" in pred.columns
    names = [k for k in TYPES if k in set(p.type) | set(t.type)] if typed else []
    analyse = "emotion" in p.columns and "emotion" in t.columns
    wanted = None if classes is None else [str(c).strip().lower() for c in classes]
    rows = {}
    for name in [*names, OVERALL]:
        m = matches if name == OVERALL else matches[matches.type == name]
        truths = t if name == OVERALL else t[t.type == name]
        rows[name] = _spotting_row(m, len(truths))
        if analyse:
            rows[name] |= _analysis_row(m, truths, wanted, rows[name]["f1"])
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "type"
    table = table.astype({c: "int64" for c in COUNT_COLUMNS if c in table.columns})
    if not typed:
        matches = matches.drop(columns="type")
    return SpottingScores(table=table, matches=matches.drop(columns="row"), iou=iou)


def format_scores(scores: SpottingScores) -> str:
    """Plain-text table for the terminal: counts as ints, ratios to 4 places, NaN as '-'."""
    text = scores.table.to_string(float_format=lambda x: f"{x:.4f}", na_rep="-")
    note = f"hit: frame IoU >= {scores.iou:g} with an unmatched truth of the same video (and type)"
    if "strs" in scores.table.columns:
        note += "; STRS = f1 x analysis_f1"
    return f"{text}\n{note}"


def _prepare(frame: pd.DataFrame, name: str, with_score: bool) -> pd.DataFrame:
    """Checked, normalised copy: text keys, integer frames, type, emotion, score, row order."""
    for column in REQUIRED:
        if column not in frame.columns:
            raise ValueError(f"{name} is missing column {column!r} (needs {', '.join(REQUIRED)})")
    out = pd.DataFrame(
        {
            "subject": _keys(frame["subject"], name, "subject"),
            "video": _keys(frame["video"], name, "video"),
            "onset": _frames(frame["onset"], name, "onset"),
            "offset": _frames(frame["offset"], name, "offset"),
            "type": _types(frame["type"], name) if "type" in frame.columns else OVERALL,
            "row": np.arange(len(frame)),
        }
    )
    backwards = np.flatnonzero(out.offset.to_numpy() < out.onset.to_numpy())
    if len(backwards):
        i = backwards[0]
        onset, offset = out.onset.iat[i], out.offset.iat[i]
        raise ValueError(f"{name} row {i} (from 0): offset {offset} is before onset {onset}")
    emotions = [c for c in EMOTION_COLUMNS if c in frame.columns]
    if len(emotions) == 2:
        raise ValueError(f"{name} has both 'emotion' and 'label' columns; keep one")
    if emotions:
        out["emotion"] = [_label(v) for v in frame[emotions[0]]]
    if with_score and "score" in frame.columns:
        score = pd.to_numeric(frame["score"], errors="coerce").to_numpy(dtype=float)
        if np.isnan(score).any():
            raise ValueError(f"{name} column 'score' has empty or non-numeric values")
        out["score"] = score
    return out


def _keys(values: pd.Series, name: str, column: str) -> list[str]:
    """Ids as text, so a subject read as 6 in one file and '6' in the other still meet."""
    if values.isna().any():
        raise ValueError(f"{name} column {column!r} has empty values")
    return [str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in values]


def _frames(values: pd.Series, name: str, column: str) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    if np.isnan(numbers).any() or (numbers != np.round(numbers)).any():
        raise ValueError(f"{name} column {column!r} must hold whole frame numbers")
    return numbers.astype(np.int64)


def _types(values: pd.Series, name: str) -> list[str]:
    kinds = [str(v).strip().lower().removesuffix("-expression") for v in values]
    bad = sorted({str(v) for v, k in zip(values, kinds, strict=True) if k not in TYPES})
    if bad:
        raise ValueError(f"{name} column 'type' must be micro or macro, not {', '.join(bad)}")
    return kinds


def _label(value: object) -> str | None:
    """Emotion as lower-case text (3.0 read from a CSV becomes '3'); None when missing."""
    if pd.isna(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().lower() or None


def _match(pred: pd.DataFrame, truth: pd.DataFrame, iou: float) -> pd.DataFrame:
    """One row per prediction, in matching order, with its matched truth or NaN."""
    order = (
        ["score", "onset", "offset", "row"]
        if "score" in pred.columns
        else ["onset", "offset", "row"]
    )
    pred = pred.sort_values(order, ascending=[c != "score" for c in order], kind="stable")
    pred = pred.reset_index(drop=True)
    truth = truth.sort_values(["onset", "offset", "row"], kind="stable")
    truth_groups = truth.groupby(_GROUP, sort=False).indices
    found = {c: np.full(len(pred), np.nan) for c in ("truth_onset", "truth_offset", "iou")}
    found_emotion: list[object] = [None] * len(pred)
    for key, members in pred.groupby(_GROUP, sort=False).indices.items():
        if key not in truth_groups:
            continue
        candidates = truth.iloc[truth_groups[key]]
        t_on, t_off = candidates.onset.tolist(), candidates.offset.tolist()
        taken = np.zeros(len(candidates), dtype=bool)
        for k in members:  # positions, in matching order
            onset, offset = int(pred.onset.iat[k]), int(pred.offset.iat[k])
            ious = np.array(
                [interval_iou(onset, offset, a, b) for a, b in zip(t_on, t_off, strict=True)]
            )
            free = np.flatnonzero((ious >= iou) & ~taken)
            if not len(free):
                continue
            best = free[np.argmax(ious[free])]  # first of equal IoUs: earliest truth onset
            taken[best] = True
            found["truth_onset"][k], found["truth_offset"][k] = t_on[best], t_off[best]
            found["iou"][k] = ious[best]
            if "emotion" in candidates.columns:
                found_emotion[k] = candidates.emotion.iat[best]
    matches = pred.assign(**found).astype({"truth_onset": "Int64", "truth_offset": "Int64"})
    if "emotion" in truth.columns:
        matches["truth_emotion"] = found_emotion
    return matches


def _spotting_row(matches: pd.DataFrame, n_truth: int) -> dict[str, float]:
    tp = int(matches.iou.notna().sum())
    fp, fn = len(matches) - tp, n_truth - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


def _analysis_row(
    matches: pd.DataFrame, truths: pd.DataFrame, classes: list[str] | None, f1: float
) -> dict[str, float]:
    """Recognition scores over the hits, and STRS; NaN when the truths have nothing to name."""

    def usable(emotion: object) -> bool:  # pandas stores a missing emotion as NaN
        return isinstance(emotion, str) and (classes is None or emotion in classes)

    if not any(usable(e) for e in truths.emotion):
        return dict.fromkeys(ANALYSIS_COLUMNS, math.nan) | {"analysed": 0}
    hits = matches[[usable(e) for e in matches.truth_emotion]]
    if hits.empty:
        return dict.fromkeys(ANALYSIS_COLUMNS, 0.0) | {"analysed": 0}
    y_true = list(hits.truth_emotion)
    y_pred = [e if isinstance(e, str) else _NO_EMOTION for e in hits.emotion]
    labels = classes if classes is not None else sorted((set(y_true) | set(y_pred)) - {_NO_EMOTION})
    kw = {"labels": labels, "average": "macro", "zero_division": 0}
    precision = float(precision_score(y_true, y_pred, **kw))
    uar = float(recall_score(y_true, y_pred, **kw))
    analysis_f1 = 2 * precision * uar / (precision + uar) if precision + uar else 0.0
    return {
        "analysed": len(hits),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "emotion_precision": precision,
        "uar": uar,
        "analysis_f1": analysis_f1,
        "uf1": float(f1_score(y_true, y_pred, **kw)),
        "strs": f1 * analysis_f1,
    }
