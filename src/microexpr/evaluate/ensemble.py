"""An ensemble of finished runs: the weighted mean of their class probabilities, fixed in advance.

Members may be any architectures trained under the same protocol on the same samples (an
STSTNet run, an SSSNet run, a HOOF + SVM run). The recipe is fixed before anything is
scored: equal weights unless the user names others, no member, weight or threshold chosen
on a test fold, so the pooled figure is as honest as each member's. To keep it so, every
member must have scored exactly the same samples with the same labels, subjects, databases
and folds and the same classes; anything else is refused, naming the run and the first
sample that differs. The result is a run folder like the members' (predictions.csv and the
report files of ``evaluate/report.py``) plus ``members.json``, which names every member
folder with the checksums of its config, plan and predictions.
"""

from __future__ import annotations

import errno
import io
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from microexpr import atomicio
from microexpr.errors import DataError
from microexpr.evaluate.metrics import scores
from microexpr.evaluate.report import write_report

PREDICTIONS = "predictions.csv"
MEMBERS = "members.json"
RECIPE = (
    "weighted mean of the members' class probabilities (equal weights unless given), "
    "fixed before scoring"
)
# What identifies a sample's place in the protocol; every member must agree on all of it.
KEYS = ("subject", "dataset", "fold", "y_true")
# Files whose checksums make a member traceable (members.json: an ensemble of ensembles).
TRACED = ("config.json", "plan.json", MEMBERS, PREDICTIONS)


def classes_of(table: pd.DataFrame) -> list[str]:
    """Class names in column order (``p_<class>``), the order ``y_true`` indexes."""
    return [c[2:] for c in table.columns if c.startswith("p_")]


def read_predictions(run_dir: Path) -> pd.DataFrame:
    """A finished run's pooled predictions; DataError when the file is missing or a column,
    a sample id or a probability is not usable, CorruptFileError when it is unfinished."""
    path = Path(run_dir) / PREDICTIONS
    if not path.is_file():
        raise DataError(path, "missing: not a finished run folder (train writes it at the end)")
    # As train/folds.parse_fold reads it (a layer above, so not imported): ids stay text.
    text = atomicio.read_text(path)
    table = pd.read_csv(io.StringIO(text), dtype={"sample_id": str, "subject": str})
    missing = [c for c in ("sample_id", *KEYS) if c not in table]
    if missing or not classes_of(table):
        raise DataError(path, f"not a predictions table (missing {missing or 'p_* columns'})")
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
    reference: pd.DataFrame, ref_dir: Path, table: pd.DataFrame, run_dir: Path
) -> pd.DataFrame:
    """``table`` in ``reference``'s sample order; DataError naming ``run_dir`` and the first
    sample (in the reference's order) that it lacks, adds or places differently."""
    path = Path(run_dir) / PREDICTIONS
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


def _combine(
    tables: Sequence[pd.DataFrame], run_dirs: Sequence[Path], weights: np.ndarray
) -> pd.DataFrame:
    reference = tables[0]
    tables = [reference] + [
        _aligned(reference, run_dirs[0], t, d)
        for t, d in zip(tables[1:], run_dirs[1:], strict=True)
    ]
    columns = [f"p_{c}" for c in classes_of(reference)]
    stack = np.stack([t[columns].to_numpy(dtype=float) for t in tables])
    probs = np.average(stack, axis=0, weights=weights)
    result = reference[["sample_id", *KEYS]].copy()
    result.insert(result.columns.get_loc("y_true") + 1, "y_pred", probs.argmax(axis=1))
    result[columns] = probs
    return result


def _check_members(run_dirs: Sequence[Path]) -> list[Path]:
    run_dirs = [Path(d) for d in run_dirs]
    if len(run_dirs) < 2:
        raise ValueError("an ensemble needs at least two runs")
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


def _member_record(run_dir: Path, table: pd.DataFrame, weight: float) -> dict:
    """Where a member is, what it was (name, model, seed, config) and the checksums of the
    files that made it, with its own pooled scores for comparison."""
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


def _section(members: Sequence[dict]) -> str:
    lines = [
        "",
        "## Members",
        "",
        f"Fixed recipe: {RECIPE}; no member, weight or threshold was chosen on a test fold. "
        f"Each member's folder and checksums: `{MEMBERS}`.",
        "",
        "| run | model | seed | weight | UF1 | UAR |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {m['run']} | {m['model'] or '-'} | {m['seed'] if m['seed'] is not None else '-'} "
        f"| {m['weight']:.4f} | {m['scores']['uf1']:.4f} | {m['scores']['uar']:.4f} |"
        for m in members
    ]
    return "\n".join(lines) + "\n"


def write_ensemble(
    run_dirs: Sequence[Path], out_dir: Path, weights: Sequence[float] | None = None
) -> dict:
    """Combine finished runs (:func:`combine_runs`) and write an ensemble run folder:
    predictions.csv and the report files every run writes, plus ``members.json``. Returns
    the metrics dict. ``out_dir`` may not be a member or a training run's folder."""
    start = time.perf_counter()
    run_dirs = _check_members(run_dirs)
    out_dir = Path(out_dir)
    if out_dir.resolve() in {d.resolve() for d in run_dirs}:
        raise FileExistsError(
            errno.EEXIST, "is one of the members; use another output folder", str(out_dir)
        )
    if (out_dir / "config.json").exists():
        raise FileExistsError(
            errno.EEXIST, "holds a training run; use another output folder", str(out_dir)
        )
    w = normalised_weights(weights, len(run_dirs))
    tables = [read_predictions(d) for d in run_dirs]
    predictions = _combine(tables, run_dirs, w)
    members = [_member_record(d, t, float(x)) for d, t, x in zip(run_dirs, tables, w, strict=True)]
    models = ", ".join(str(m["model"] or m["run"]) for m in members)
    title = f"Ensemble of {len(members)} runs ({models})"
    config = {
        "name": title,
        "ensemble": {
            "recipe": RECIPE,
            "members": [m["path"] for m in members],
            "weights": [m["weight"] for m in members],
            "sha256": [m["sha256"] for m in members],
        },
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomicio.write_text(
        out_dir / MEMBERS, json.dumps({"recipe": RECIPE, "members": members}, indent=2)
    )
    return write_report(
        predictions,
        classes_of(predictions),
        out_dir,
        config,
        time.perf_counter() - start,
        title,
        device="cpu",  # the average is plain arithmetic; nothing is trained or run on a model
        extra_section=_section(members),
    )
