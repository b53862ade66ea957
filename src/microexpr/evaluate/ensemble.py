"""An ensemble of finished runs: the mean of their class probabilities, fixed in advance or
chosen per fold by nested selection.

Members may be any architectures trained under the same protocol on the same samples (an
STSTNet run, an SSSNet run, a HOOF + SVM run). Either the recipe is fixed before anything
is scored (equal weights unless the user names others), or (``select="inner"``) each outer
fold takes the equal-weight subset of members that scored best on the inner splits of that
fold's training subjects (each member's ``inner_predictions.csv``), never on its test
subject, and optionally (``class_bias``) the per-class offsets of the log-probabilities,
the decision thresholds, that score best there too. Either way no member, weight or
threshold is chosen on a test fold, so the pooled
figure is as honest as each member's. To keep it so, every member must have scored exactly
the same samples with the same labels, subjects, databases and folds and the same classes;
anything else is refused, naming the run and the first sample that differs. The result is
a run folder like the members' (predictions.csv and the report files of
``evaluate/report.py``) plus ``members.json``, which names every member folder with the
checksums of its config, plan and predictions, and for a selection ``selection.json``.
"""

from __future__ import annotations

import errno
import itertools
import json
import math
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from scipy.special import softmax

from microexpr import atomicio
from microexpr.errors import DataError
from microexpr.evaluate.metrics import scores, uf1
from microexpr.evaluate.report import (
    INNER_PREDICTIONS,
    PREDICTIONS,
    parse_predictions,
    write_report,
)

MEMBERS = "members.json"
SELECTION = "selection.json"
RECIPE = (
    "weighted mean of the members' class probabilities (equal weights unless given), "
    "fixed before scoring"
)
SELECT_RECIPE = (
    "per outer fold, the equal-weight mean of the subset of members with the best pooled UF1 "
    "on the inner leave-subjects-out splits of that fold's training subjects (all members "
    "first, then smaller subsets in member order: a tie goes to the earlier)"
)
BIAS_RECIPE = (
    "then the offsets added to each class's log-probability (the first class's stays 0, the "
    "others from -1 to 1 in steps of 0.25) with the best pooled UF1 on the same inner rows, "
    "by coordinate ascent from no offset (a tie keeps the smaller offset)"
)
# The offsets a class's log-probability may be given: a fixed grid, smallest first so that
# a tie keeps the smaller shift.
BIAS_GRID = tuple(
    sorted(np.arange(-1.0, 1.0001, 0.25).round(2).tolist(), key=lambda b: (abs(b), b))
)
# At most this many passes over the classes; one without a change ends the search sooner.
BIAS_ROUNDS = 3
# How the members are combined: weights fixed in advance, or nested selection of a subset.
Selection = Literal["fixed", "inner"]
# What identifies a sample's place in the protocol; every member must agree on all of it.
KEYS = ("subject", "dataset", "fold", "y_true")
# Files whose checksums make a member traceable (members.json: an ensemble of ensembles).
TRACED = ("config.json", "plan.json", MEMBERS, PREDICTIONS, INNER_PREDICTIONS)


def classes_of(table: pd.DataFrame) -> list[str]:
    """Class names in column order (``p_<class>``), the order ``y_true`` indexes."""
    return [c[2:] for c in table.columns if c.startswith("p_")]


def read_predictions(run_dir: Path, name: str = PREDICTIONS) -> pd.DataFrame:
    """A finished run's pooled predictions (``name``: or its inner ones); DataError when the
    file is missing or a column, a sample id or a probability is not usable,
    CorruptFileError when it is unfinished. Inner rows get ids ``<inner fold>/<sample>``, as
    a sample is held out once in every outer fold but its own."""
    path = Path(run_dir) / name
    if not path.is_file():
        hint = (
            "run `microexpr train` with --inner-predictions N"
            if name == INNER_PREDICTIONS
            else "not a finished run folder (train writes it at the end)"
        )
        raise DataError(path, f"missing: {hint}")
    table = parse_predictions(atomicio.read_text(path))
    missing = [c for c in ("sample_id", *KEYS) if c not in table]
    if missing or not classes_of(table):
        raise DataError(path, f"not a predictions table (missing {missing or 'p_* columns'})")
    if name == INNER_PREDICTIONS:
        table["sample_id"] = table["fold"].astype(str) + "/" + table["sample_id"]
    duplicated = table["sample_id"][table["sample_id"].duplicated()]
    if len(duplicated):
        raise DataError(path, f"sample {duplicated.iloc[0]} appears more than once")
    probs = table[[f"p_{c}" for c in classes_of(table)]].to_numpy(dtype=float)
    bad = ~np.isfinite(probs).all(axis=1)
    if bad.any():
        raise DataError(path, f"sample {table['sample_id'][bad].iloc[0]}: probability not finite")
    return table


def normalised_weights(weights: Sequence[float] | None, count: int) -> np.ndarray:
    """Equal weights by default; given ones must be ``count`` positive numbers, scaled to
    sum to 1 (so ``1,1,2`` and ``0.25,0.25,0.5`` are the same recipe)."""
    if weights is None:
        return np.full(count, 1.0 / count)
    if len(weights) != count:
        raise ValueError(f"{len(weights)} weights for {count} runs")
    if not all(math.isfinite(w) and w > 0 for w in weights):
        raise ValueError(f"weights must be positive numbers, got {list(weights)}")
    w = np.asarray(weights, dtype=float)
    return w / w.sum()


def _aligned(
    reference: pd.DataFrame,
    ref_dir: Path,
    table: pd.DataFrame,
    run_dir: Path,
    name: str = PREDICTIONS,
) -> pd.DataFrame:
    """``table`` in ``reference``'s sample order; DataError naming ``run_dir``'s file and the
    first sample (in the reference's order) that it lacks, adds or places differently."""
    path = Path(run_dir) / name
    if classes_of(table) != classes_of(reference):
        raise DataError(
            path, f"classes {classes_of(table)} differ from {classes_of(reference)} in {ref_dir}"
        )
    ours = set(table["sample_id"])
    lacking = [s for s in reference["sample_id"] if s not in ours]
    if lacking:
        raise DataError(path, f"sample {lacking[0]} (scored in {ref_dir}) is missing")
    theirs = set(reference["sample_id"])
    extra = [s for s in table["sample_id"] if s not in theirs]
    if extra:
        raise DataError(path, f"sample {extra[0]} is not scored in {ref_dir}")
    table = table.set_index("sample_id").loc[reference["sample_id"]].reset_index()
    differs = np.column_stack([table[k].to_numpy() != reference[k].to_numpy() for k in KEYS])
    if differs.any():
        row, col = np.argwhere(differs)[0]
        key = KEYS[col]
        raise DataError(
            path,
            f"sample {reference['sample_id'].iloc[row]}: {key} {table[key].iloc[row]!r}, "
            f"but {reference[key].iloc[row]!r} in {ref_dir}",
        )
    return table


def _all_aligned(
    tables: Sequence[pd.DataFrame], run_dirs: Sequence[Path], name: str = PREDICTIONS
) -> list[pd.DataFrame]:
    """Every member's table in the first member's sample order (:func:`_aligned`)."""
    reference = tables[0]
    return [reference] + [
        _aligned(reference, run_dirs[0], t, d, name)
        for t, d in zip(tables[1:], run_dirs[1:], strict=True)
    ]


def _probabilities(tables: Sequence[pd.DataFrame]) -> np.ndarray:
    """The members' aligned probabilities as one (member, sample, class) array."""
    columns = [f"p_{c}" for c in classes_of(tables[0])]
    return np.stack([t[columns].to_numpy(dtype=float) for t in tables])


def _table(reference: pd.DataFrame, probs: np.ndarray) -> pd.DataFrame:
    """A predictions table of ``reference``'s samples with these probabilities."""
    result = reference[["sample_id", *KEYS]].copy()
    result.insert(result.columns.get_loc("y_true") + 1, "y_pred", probs.argmax(axis=1))
    result[[f"p_{c}" for c in classes_of(reference)]] = probs
    return result


def _combine(
    tables: Sequence[pd.DataFrame], run_dirs: Sequence[Path], weights: np.ndarray
) -> pd.DataFrame:
    tables = _all_aligned(tables, run_dirs)
    return _table(tables[0], np.average(_probabilities(tables), axis=0, weights=weights))


def member_subsets(count: int) -> list[tuple[int, ...]]:
    """The candidates of a selection: every non-empty subset of ``count`` members, all of
    them first, then smaller ones in member order (a tie goes to the earlier)."""
    return [c for k in range(count, 0, -1) for c in itertools.combinations(range(count), k)]


def outer_fold_of(inner_fold: str) -> str:
    """``s01~inner2`` -> ``s01``: the outer fold whose training subjects an inner fold splits."""
    return inner_fold.rpartition("~inner")[0]


def _check_inner(outer: pd.DataFrame, inner: pd.DataFrame, path: Path) -> np.ndarray:
    """The outer fold of every inner row; DataError when an outer fold has no inner rows or
    an inner split holds out (so scores) a subject of its own outer fold's test set."""
    parent = inner["fold"].astype(str).map(outer_fold_of).to_numpy()
    person = (outer["dataset"].astype(str) + "/" + outer["subject"].astype(str)).to_numpy()
    inner_person = (inner["dataset"].astype(str) + "/" + inner["subject"].astype(str)).to_numpy()
    for fold in pd.unique(outer["fold"]):
        rows = parent == fold
        if not rows.any():
            raise DataError(path, f"no inner splits of outer fold {fold}")
        tested = set(person[outer["fold"].to_numpy() == fold])
        leaked = sorted(tested & set(inner_person[rows]))
        if leaked:
            raise DataError(path, f"fold {fold}: test subject {leaked[0]} is in its inner splits")
    unknown = sorted(set(parent) - set(outer["fold"]))
    if unknown:
        raise DataError(path, f"inner fold of {unknown[0]!r}, which is not an outer fold")
    return parent


def _log(probs: np.ndarray) -> np.ndarray:
    """Log-probabilities, a zero probability clipped so that an offset can still move it."""
    return np.log(np.clip(probs, 1e-12, None))


def shifted(probs: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Probabilities with ``bias`` added to each class's log-probability, renormalised: the
    decision thresholds moved, written as probabilities so every report reads them alike."""
    return softmax(_log(probs) + bias, axis=1)


def choose_bias(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, float]:
    """The per-class log-probability offsets (first class 0, the rest from ``BIAS_GRID``)
    with the best pooled UF1 of ``probs`` on ``y_true``, by coordinate ascent from zero, and
    that UF1. Why: a recipe's prior towards the frequent classes (or a class-balanced loss's
    away from them) is a threshold choice, which only inner rows may make."""
    log_p = _log(probs)
    bias = np.zeros(probs.shape[1])
    best = uf1(y_true, log_p.argmax(1))
    for _ in range(BIAS_ROUNDS):
        moved = False
        for k in range(1, probs.shape[1]):
            for value in BIAS_GRID:
                trial = bias.copy()
                trial[k] = value
                score = uf1(y_true, (log_p + trial).argmax(1))
                if score > best:
                    best, bias, moved = score, trial, True
        if not moved:
            break
    return bias, best


def select_inner(
    outer_tables: Sequence[pd.DataFrame],
    inner_tables: Sequence[pd.DataFrame],
    run_dirs: Sequence[Path],
    class_bias: bool = False,
) -> tuple[pd.DataFrame, dict]:
    """Nested selection of members: for every outer fold, the subset of
    :func:`member_subsets` whose equal-weight mean has the best pooled UF1 on that fold's
    inner held-out rows (inner splits of its training subjects only), then with
    ``class_bias`` the offsets of :func:`choose_bias` on the same rows, applied once to its
    test rows. Returns the predictions table and the record of every fold's choice."""
    outer = _all_aligned(outer_tables, run_dirs)
    inner = _all_aligned(inner_tables, run_dirs, INNER_PREDICTIONS)
    parent = _check_inner(outer[0], inner[0], Path(run_dirs[0]) / INNER_PREDICTIONS)
    outer_probs, inner_probs = _probabilities(outer), _probabilities(inner)
    inner_true = inner[0]["y_true"].to_numpy()
    subsets = member_subsets(len(outer))
    probs = np.empty(outer_probs.shape[1:])
    folds = {}
    outer_fold = outer[0]["fold"].to_numpy()
    for fold in pd.unique(outer_fold):
        rows = parent == fold
        means = [inner_probs[list(s)][:, rows].mean(0) for s in subsets]
        inner_uf1 = [uf1(inner_true[rows], mean.argmax(1)) for mean in means]
        best = max(range(len(subsets)), key=lambda i: (inner_uf1[i], -i))
        test = outer_fold == fold
        probs[test] = outer_probs[list(subsets[best])][:, test].mean(0)
        folds[str(fold)] = {"chosen": list(subsets[best]), "inner_uf1": inner_uf1}
        if class_bias:
            bias, biased_uf1 = choose_bias(inner_true[rows], means[best])
            probs[test] = shifted(probs[test], bias)
            folds[str(fold)].update(bias=bias.tolist(), inner_uf1_biased=biased_uf1)
    record = {
        "recipe": f"{SELECT_RECIPE}, {BIAS_RECIPE}" if class_bias else SELECT_RECIPE,
        "candidates": [list(s) for s in subsets],
        "folds": folds,
    }
    return _table(outer[0], probs), record


def _check_members(run_dirs: Sequence[Path], fewest: int = 2) -> list[Path]:
    """The member folders as paths; ValueError for fewer than ``fewest`` or a repeated one."""
    run_dirs = [Path(d) for d in run_dirs]
    if len(run_dirs) < fewest:
        raise ValueError(
            "an ensemble needs at least two runs"
            if fewest == 2
            else "give at least one run to choose thresholds for"
        )
    seen: dict[Path, Path] = {}
    for d in run_dirs:
        if d.resolve() in seen:
            raise ValueError(f"{d} is given twice (use weights to count a member more)")
        seen[d.resolve()] = d
    return run_dirs


def combine_runs(run_dirs: Sequence[Path], weights: Sequence[float] | None = None) -> pd.DataFrame:
    """The members' weighted mean probabilities as a predictions table (the members'
    columns, ``y_pred`` the argmax of the mean), in the first member's sample order.

    Raises DataError naming the run and the first differing sample when a member scored
    other samples, or gives one another label, subject, database or fold, or other classes.
    """
    run_dirs = _check_members(run_dirs)
    w = normalised_weights(weights, len(run_dirs))
    return _combine([read_predictions(d) for d in run_dirs], run_dirs, w)


def _member_record(run_dir: Path, table: pd.DataFrame, weight: float | None) -> dict:
    """Where a member is, what it was (name, model, seed, config) and the checksums of the
    files that made it, with its own pooled scores for comparison. ``weight``: None when a
    selection chooses it per fold."""
    digests, config, plan = {}, None, None
    for name in TRACED:
        if (run_dir / name).exists():
            data = atomicio.read_bytes(run_dir / name)  # unfinished or edited: refused
            digests[name] = atomicio.digest(data)
            if name == "config.json":
                config = json.loads(data)
            elif name == "plan.json":
                plan = json.loads(data)
    return {
        "run": str(run_dir),
        "path": str(run_dir.resolve()),
        "weight": weight,
        "name": (plan or config or {}).get("name"),
        "model": (plan or {}).get("model"),
        "seed": (plan or {}).get("train", {}).get("seed"),
        "sha256": digests,
        "scores": scores(table["y_true"], table["y_pred"]),
        "config": config,
    }


def _section(members: Sequence[dict], selection: dict | None) -> str:
    """The report's members table: weights, or how often a selection chose each member."""
    if selection is None:
        intro = f"Fixed recipe: {RECIPE}; no member, weight or threshold was chosen on a test fold."
        head, share = "weight", [f"{m['weight']:.4f}" for m in members]
    else:
        chosen = [f["chosen"] for f in selection["folds"].values()]
        intro = (
            f"Nested selection: {selection['recipe']}. The outer test subject was scored once, "
            f"by the chosen subset; every fold's choice and inner UF1s: `{SELECTION}`."
        )
        head = "chosen in folds"
        share = [f"{sum(i in c for c in chosen)} of {len(chosen)}" for i in range(len(members))]
    lines = [
        "",
        "## Members",
        "",
        f"{intro} Each member's folder and checksums: `{MEMBERS}`.",
        "",
        f"| run | model | seed | {head} | UF1 | UAR |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {m['run']} | {m['model'] or '-'} | {m['seed'] if m['seed'] is not None else '-'} "
        f"| {x} | {m['scores']['uf1']:.4f} | {m['scores']['uar']:.4f} |"
        for m, x in zip(members, share, strict=True)
    ]
    if selection is not None:
        counts = Counter(tuple(c) for c in chosen)
        lines += ["", "| chosen subset | folds |", "| --- | --- |"]
        lines += [
            f"| {' + '.join(members[i]['run'] for i in subset)} | {n} |"
            for subset, n in counts.most_common()
        ]
    return "\n".join(lines) + "\n"


def write_ensemble(
    run_dirs: Sequence[Path],
    out_dir: Path,
    weights: Sequence[float] | None = None,
    select: Selection = "fixed",
    class_bias: bool = False,
) -> dict:
    """Combine finished runs and write an ensemble run folder: predictions.csv and the
    report files every run writes, plus ``members.json`` (and ``selection.json`` for
    ``select="inner"``, :func:`select_inner`, which with ``class_bias`` also chooses the
    decision thresholds and then takes a single run too; else :func:`combine_runs`).
    Returns the metrics dict. ``out_dir`` may not be a member or a training run's folder."""
    start = time.perf_counter()
    if class_bias and select != "inner":
        raise ValueError("class_bias is chosen on inner splits: use it with select=inner")
    run_dirs = _check_members(run_dirs, fewest=1 if class_bias else 2)
    out_dir = Path(out_dir)
    if out_dir.resolve() in {d.resolve() for d in run_dirs}:
        raise FileExistsError(
            errno.EEXIST, "is one of the members; use another output folder", str(out_dir)
        )
    if (out_dir / "config.json").exists():
        raise FileExistsError(
            errno.EEXIST, "holds a training run; use another output folder", str(out_dir)
        )
    tables = [read_predictions(d) for d in run_dirs]
    selection = None
    if select == "inner":
        if weights is not None:
            raise ValueError("weights are chosen by the selection; give none with select=inner")
        inner = [read_predictions(d, INNER_PREDICTIONS) for d in run_dirs]
        predictions, selection = select_inner(tables, inner, run_dirs, class_bias)
        w: list[float | None] = [None] * len(run_dirs)
        recipe, kind = selection["recipe"], "Nested-selected ensemble"
    else:
        fixed = normalised_weights(weights, len(run_dirs))
        predictions = _combine(tables, run_dirs, fixed)
        w = [float(x) for x in fixed]
        recipe, kind = RECIPE, "Ensemble"
    members = [_member_record(d, t, x) for d, t, x in zip(run_dirs, tables, w, strict=True)]
    models = ", ".join(str(m["model"] or m["run"]) for m in members)
    title = f"{kind} of {len(members)} runs ({models})"
    config = {
        "name": title,
        "ensemble": {
            "recipe": recipe,
            "members": [m["path"] for m in members],
            "weights": [m["weight"] for m in members],
            "sha256": [m["sha256"] for m in members],
        },
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomicio.write_text(
        out_dir / MEMBERS, json.dumps({"recipe": recipe, "members": members}, indent=2)
    )
    if selection is not None:
        atomicio.write_text(out_dir / SELECTION, json.dumps(selection, indent=2))
    return write_report(
        predictions,
        classes_of(predictions),
        out_dir,
        config,
        time.perf_counter() - start,
        title,
        extra_section=_section(members, selection),
        trained=False,  # the average is plain arithmetic on the members' files
    )
