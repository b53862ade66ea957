"""Cross-architecture ensembles of finished runs: a fixed equal-weight mean or members
chosen per fold by nested selection, refused on any mismatch between members, scored and
reported as a training run is.

The members are two real runs (STSTNet, 2 epochs, and HOOF + linear SVM) trained through
``run_experiment`` on random flow images of six subjects, with inner predictions on two
splits of every fold's training subjects, so the predictions.csv and inner_predictions.csv
read here are exactly the ones ``microexpr train --inner-predictions 2`` writes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, recall_score
from typer.testing import CliRunner

from microexpr import atomicio
from microexpr.cli import app
from microexpr.config import ConfigError, ExperimentConfig, config_from, load_config
from microexpr.errors import DataError
from microexpr.evaluate.ensemble import (
    BIAS_GRID,
    MEMBERS,
    SELECTION,
    choose_bias,
    classes_of,
    combine_runs,
    member_subsets,
    normalised_weights,
    outer_fold_of,
    read_predictions,
    shifted,
    write_ensemble,
)
from microexpr.evaluate.report import INNER_PREDICTIONS
from microexpr.synth.replicas.flow_images import write_flat
from microexpr.train.experiment import run_experiment

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CLASSES = ["negative", "positive", "surprise"]
PROBS = [f"p_{c}" for c in CLASSES]
REPORT_FILES = ("predictions.csv", "metrics.json", "report.md", "confusion.png", MEMBERS)


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> list[Path]:
    """Two finished runs of different architectures under the same LOSO protocol."""
    root = tmp_path_factory.mktemp("ensemble")
    rng = np.random.default_rng(0)
    records = [
        (subject, f"clip{k}", CLASSES[k % 3], rng.integers(0, 256, (28, 28, 3), np.uint8))
        for subject in ["sub01", "sub02", "s1", "s02", "006", "017"]
        for k in range(4)
    ]
    data = write_flat(records, root / "data").parent
    cache = root / "cache"
    ststnet = config_from(
        {
            "data": {"root": str(data)},
            "train": {"epochs": 2, "batch_size": 16, "lr": 1e-3, "device": "cpu"},
        }
    )
    raw = load_config(CONFIGS / "classical_hoof_svm.yaml").model_dump()
    raw["data"]["root"] = str(data)
    raw["protocol"] = ststnet.protocol.model_dump()
    hoof = ExperimentConfig.model_validate(raw)
    runs = [root / "ststnet", root / "hoof"]
    for cfg, out in zip((ststnet, hoof), runs, strict=True):
        run_experiment(cfg, out, progress=False, cache=cache, save_model=False, inner_predictions=2)
    return runs


def _table(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "predictions.csv", dtype={"sample_id": str, "subject": str})


def _variant(source: Path, folder: Path, change) -> Path:
    """A copy of a finished run whose predictions.csv is ``change(table)``, written as a run
    writes it (atomically, with its checksum)."""
    shutil.copytree(source, folder)
    atomicio.write_text(folder / "predictions.csv", change(_table(source)).to_csv(index=False))
    return folder


def _by_id(run: Path) -> pd.DataFrame:
    return _table(run).set_index("sample_id")


def test_members_are_real_runs_of_two_architectures(members):
    plans = [json.loads((m / "plan.json").read_text()) for m in members]
    assert [p["model"] for p in plans] == ["ststnet", "hoof_svm"]
    assert all(classes_of(_table(m)) == CLASSES for m in members)


def test_average_is_the_mean_of_the_members(members):
    combined = combine_runs(members)
    assert list(combined.columns) == list(_table(members[0]).columns)
    expected = np.mean([_by_id(m).loc[combined.sample_id, PROBS].to_numpy() for m in members], 0)
    np.testing.assert_allclose(combined[PROBS].to_numpy(), expected, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(combined.y_pred, expected.argmax(1))
    reference = _table(members[0])
    for key in ("sample_id", "subject", "dataset", "fold", "y_true"):
        assert combined[key].tolist() == reference[key].tolist()


def test_members_in_another_row_order_give_the_same_average(members, tmp_path):
    shuffled = _variant(
        members[1], tmp_path / "shuffled", lambda t: t.sample(frac=1, random_state=1)
    )
    pd.testing.assert_frame_equal(combine_runs(members), combine_runs([members[0], shuffled]))


def test_given_weights_are_normalised(members, tmp_path):
    rng = np.random.default_rng(3)

    def noise(table: pd.DataFrame) -> pd.DataFrame:
        table[PROBS] = rng.dirichlet(np.ones(3), len(table))
        return table.assign(y_pred=table[PROBS].to_numpy().argmax(1))

    runs = [*members, _variant(members[0], tmp_path / "third", noise)]
    combined = combine_runs(runs, [1, 1, 2])
    parts = [_by_id(r).loc[combined.sample_id, PROBS].to_numpy() for r in runs]
    expected = 0.25 * parts[0] + 0.25 * parts[1] + 0.5 * parts[2]
    np.testing.assert_allclose(combined[PROBS].to_numpy(), expected, rtol=0, atol=1e-9)
    pd.testing.assert_frame_equal(combined, combine_runs(runs, [0.5, 0.5, 1.0]))
    pd.testing.assert_frame_equal(combine_runs(members), combine_runs(members, [3, 3]))


@pytest.mark.parametrize("weights", [[1, 0], [1, -1], [1, float("nan")], [1], [1, 1, 1]])
def test_bad_weights_are_refused(members, weights):
    with pytest.raises(ValueError, match="weights"):
        combine_runs(members, weights)


def test_metrics_equal_scikit_learn_on_the_averaged_predictions(members, tmp_path):
    out = tmp_path / "ens"
    metrics = write_ensemble(members, out)
    table = _table(out)
    pd.testing.assert_frame_equal(table, combine_runs(members), check_exact=False, atol=1e-12)
    y, p = table.y_true, table.y_pred
    overall = metrics["overall"]
    assert overall["n"] == len(table) == 24
    assert overall["accuracy"] == pytest.approx(accuracy_score(y, p), abs=1e-12)
    assert overall["uf1"] == pytest.approx(f1_score(y, p, average="macro"), abs=1e-12)
    assert overall["uar"] == pytest.approx(recall_score(y, p, average="macro"), abs=1e-12)
    for name, rows in table.groupby("dataset"):
        present = sorted(rows.y_true.unique())
        uf1 = f1_score(rows.y_true, rows.y_pred, labels=present, average="macro")
        assert metrics["per_dataset"][name]["uf1"] == pytest.approx(uf1, abs=1e-12)
    assert json.loads((out / "metrics.json").read_text())["overall"] == overall


def test_ensemble_folder_is_traceable(members, tmp_path):
    out = tmp_path / "ens"
    write_ensemble(members, out, [1, 3])
    for name in REPORT_FILES:
        assert atomicio.problem(out / name) is None, name
    record = json.loads((out / MEMBERS).read_text())
    assert [m["path"] for m in record["members"]] == [str(m.resolve()) for m in members]
    assert [m["weight"] for m in record["members"]] == [0.25, 0.75]
    assert [m["model"] for m in record["members"]] == ["ststnet", "hoof_svm"]
    for member, run in zip(record["members"], members, strict=True):
        for name in ("config.json", "plan.json", "predictions.csv"):
            assert member["sha256"][name] == atomicio.digest((run / name).read_bytes())
        assert member["config"] == json.loads((run / "config.json").read_text())
    assert "## Members" in (out / "report.md").read_text()
    # an ensemble folder is itself a valid member (same predictions format)
    again = combine_runs([out, members[0]])
    assert len(again) == 24


def _drop_first(table: pd.DataFrame) -> pd.DataFrame:
    return table.iloc[1:]


def _extra(table: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([table, table.iloc[[0]].assign(sample_id="sneaked_in")], ignore_index=True)


def _set(column: str, value: object):
    def change(table: pd.DataFrame) -> pd.DataFrame:
        table.loc[table.index[5], column] = value
        return table

    return change


def _relabel(table: pd.DataFrame) -> pd.DataFrame:
    table.loc[table.index[5], "y_true"] = (table.y_true.iloc[5] + 1) % 3
    return table


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_drop_first, r"sample {first} \(scored in .*ststnet\) is missing"),
        (_extra, r"sample sneaked_in is not scored in .*ststnet"),
        (_relabel, r"sample {sixth}: y_true"),
        (_set("fold", "another-fold"), r"sample {sixth}: fold 'another-fold'"),
        (_set("subject", "sub99"), r"sample {sixth}: subject 'sub99'"),
        (
            lambda t: t.rename(columns={"p_surprise": "p_happiness"}),
            r"classes \['negative', 'positive', 'happiness'\] differ",
        ),
        (lambda t: pd.concat([t, t.iloc[[2]]]), r"sample {third} appears more than once"),
    ],
)
def test_a_member_that_differs_is_refused_naming_run_and_sample(members, tmp_path, change, message):
    ids = _table(members[0]).sample_id
    bad = _variant(members[1], tmp_path / "bad_member", change)
    pattern = message.format(first=ids[0], third=ids[2], sixth=ids[5])
    with pytest.raises(DataError, match=rf"bad_member/predictions\.csv: {pattern}") as err:
        combine_runs([members[0], bad])
    assert "\n" not in str(err.value)


def test_unfinished_or_repeated_members_are_refused(members, tmp_path):
    unfinished = _variant(members[1], tmp_path / "unfinished", lambda t: t)
    atomicio.checksum_path(unfinished / "predictions.csv").unlink()
    with pytest.raises(atomicio.CorruptFileError, match="unfinished"):
        combine_runs([members[0], unfinished])
    with pytest.raises(DataError, match=r"nowhere/predictions\.csv: missing: not a finished run"):
        combine_runs([members[0], tmp_path / "nowhere"])
    with pytest.raises(ValueError, match="given twice"):
        combine_runs([members[0], members[0]])
    with pytest.raises(ValueError, match="at least two"):
        combine_runs(members[:1])
    with pytest.raises(FileExistsError, match="one of the members"):
        write_ensemble(members, members[1])
    training_run = tmp_path / "training_run"
    training_run.mkdir()
    atomicio.write_text(training_run / "config.json", "{}")
    with pytest.raises(FileExistsError, match="training run"):
        write_ensemble(members, training_run)
    assert not (training_run / "predictions.csv").exists()


def test_normalised_weights_default_to_equal():
    np.testing.assert_allclose(normalised_weights(None, 4), [0.25] * 4)
    np.testing.assert_allclose(normalised_weights([1, 1, 2], 3), [0.25, 0.25, 0.5])


def test_cli_ensemble_end_to_end(members, tmp_path):
    out = tmp_path / "cli_ens"
    args = ["ensemble", *map(str, members), "--out", str(out), "--weights", "1,2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Full" in result.output and "members.json" in result.output
    for name in REPORT_FILES:
        assert atomicio.problem(out / name) is None, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["ensemble"]["weights"] == pytest.approx([1 / 3, 2 / 3])
    expected = write_ensemble(members, tmp_path / "api_ens", [1, 2])
    assert metrics["overall"] == expected["overall"]


def test_cli_ensemble_refuses_bad_weights_and_mismatches(members, tmp_path):
    runner = CliRunner()
    runs = [*map(str, members), "--out", str(tmp_path / "o")]
    for weights in ("1,x", "1,0", "1,1,1"):
        result = runner.invoke(app, ["ensemble", *runs, "--weights", weights])
        assert result.exit_code == 2, result.output
        assert "--weights" in result.output
    bad = _variant(members[1], tmp_path / "bad", _drop_first)
    result = runner.invoke(
        app, ["ensemble", str(members[0]), str(bad), "--out", str(tmp_path / "o")]
    )
    assert isinstance(result.exception, DataError)
    assert not (tmp_path / "o").exists()


def _inner(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / INNER_PREDICTIONS, dtype={"sample_id": str, "subject": str})


def test_inner_predictions_hold_out_each_training_subject_once_and_never_the_test_one(members):
    for run in members:
        outer, inner = _table(run), _inner(run)
        assert atomicio.problem(run / INNER_PREDICTIONS) is None
        inner["outer"] = inner.fold.map(outer_fold_of)
        assert set(inner.outer) == set(outer.fold)
        for fold, rows in inner.groupby("outer"):
            tested = set(outer.subject[outer.fold == fold])
            assert tested.isdisjoint(rows.subject)
            trained = outer[outer.fold != fold]  # every other subject's samples, once each
            assert sorted(rows.sample_id) == sorted(trained.sample_id)
            assert rows.fold.nunique() == 2


def test_selection_is_the_best_subset_on_the_inner_rows(members, tmp_path):
    out = tmp_path / "selected"
    metrics = write_ensemble(members, out, select="inner")
    record = json.loads((out / SELECTION).read_text())
    assert record["candidates"] == [[0, 1], [0], [1]] == [list(s) for s in member_subsets(2)]
    outer = [_by_id(m) for m in members]
    inner = [
        _inner(m).assign(key=lambda t: t.fold + "/" + t.sample_id).set_index("key") for m in members
    ]
    table = _table(out)
    for fold, choice in record["folds"].items():
        rows = inner[0][inner[0].fold.map(outer_fold_of) == fold]
        uf1 = []
        for subset in record["candidates"]:
            mean = np.mean([inner[i].loc[rows.index, PROBS].to_numpy() for i in subset], 0)
            uf1.append(f1_score(rows.y_true, mean.argmax(1), average="macro"))
        assert choice["inner_uf1"] == pytest.approx(uf1, abs=1e-12)
        best = max(range(len(uf1)), key=lambda i: (uf1[i], -i))
        assert choice["chosen"] == record["candidates"][best]
        test = table[table.fold == fold]
        expected = np.mean(
            [outer[i].loc[test.sample_id, PROBS].to_numpy() for i in choice["chosen"]], 0
        )
        np.testing.assert_allclose(test[PROBS].to_numpy(), expected, rtol=0, atol=1e-9)
    assert metrics["overall"]["uf1"] == pytest.approx(
        f1_score(table.y_true, table.y_pred, average="macro"), abs=1e-12
    )
    report = (out / "report.md").read_text()
    assert "Nested selection" in report and "chosen in folds" in report
    assert "seed None" not in report and "determinism" not in metrics


def test_test_fold_predictions_never_reach_the_selection(members, tmp_path):
    """Making a member perfect (or useless) on the outer test subjects changes no choice."""

    def oracle(table: pd.DataFrame) -> pd.DataFrame:
        table[PROBS] = np.eye(3)[table.y_true]
        return table.assign(y_pred=table.y_true)

    def wrong(table: pd.DataFrame) -> pd.DataFrame:
        table[PROBS] = np.eye(3)[(table.y_true + 1) % 3]
        return table.assign(y_pred=(table.y_true + 1) % 3)

    write_ensemble(members, tmp_path / "base", select="inner")
    base = json.loads((tmp_path / "base" / SELECTION).read_text())
    for change in (oracle, wrong):
        changed = _variant(members[1], tmp_path / change.__name__, change)
        write_ensemble([members[0], changed], tmp_path / f"ens_{change.__name__}", select="inner")
        again = json.loads((tmp_path / f"ens_{change.__name__}" / SELECTION).read_text())
        assert again["folds"] == base["folds"]


def _inner_variant(source: Path, folder: Path, change) -> Path:
    shutil.copytree(source, folder)
    atomicio.write_text(folder / INNER_PREDICTIONS, change(_inner(source)).to_csv(index=False))
    return folder


def test_inner_rows_of_a_test_subject_or_missing_files_are_refused(members, tmp_path):
    outer = _table(members[1])
    fold, subject = outer.fold.iloc[0], outer.subject.iloc[0]

    def leak(table: pd.DataFrame) -> pd.DataFrame:
        row = table.index[table.fold.map(outer_fold_of) == fold][0]
        table.loc[row, "subject"] = subject
        return table

    leaky = [_inner_variant(m, tmp_path / f"leaky_{m.name}", leak) for m in members]
    with pytest.raises(DataError, match=rf"fold {fold}: test subject .*/{subject} is in its inner"):
        write_ensemble(leaky, tmp_path / "o_leak", select="inner")
    with pytest.raises(DataError, match=rf"leaky_hoof/inner_predictions\.csv: sample {fold}~inner"):
        write_ensemble([members[0], leaky[1]], tmp_path / "o_mismatch", select="inner")
    bare = _variant(members[1], tmp_path / "bare", lambda t: t)
    (bare / INNER_PREDICTIONS).unlink()
    with pytest.raises(DataError, match=r"inner_predictions\.csv: missing: run `microexpr train`"):
        write_ensemble([members[0], bare], tmp_path / "o", select="inner")
    with pytest.raises(ValueError, match="weights"):
        write_ensemble(members, tmp_path / "o2", [1, 2], select="inner")
    ids = read_predictions(members[0], INNER_PREDICTIONS).sample_id
    assert ids.is_unique and ids.str.contains("~inner").all()


def test_cli_ensemble_select_inner(members, tmp_path):
    out = tmp_path / "cli_sel"
    runner = CliRunner()
    result = runner.invoke(
        app, ["ensemble", *map(str, members), "--out", str(out), "--select", "inner"]
    )
    assert result.exit_code == 0, result.output
    assert "choices:" in result.output
    expected = write_ensemble(members, tmp_path / "api_sel", select="inner")
    assert json.loads((out / "metrics.json").read_text())["overall"] == expected["overall"]
    for bad in (["--select", "best"], ["--select", "inner", "--weights", "1,1"]):
        args = ["ensemble", *map(str, members), "--out", str(tmp_path / "x"), *bad]
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output


def test_inner_predictions_need_two_splits_and_the_local_backend(members, tmp_path):
    config = json.loads((members[0] / "config.json").read_text())
    cfg = ExperimentConfig.model_validate(config)
    for options in ({"inner_predictions": 1}, {"inner_predictions": 2, "backend": "ray"}):
        with pytest.raises(ConfigError, match="inner-predictions"):
            run_experiment(cfg, tmp_path / "o", progress=False, save_model=False, **options)
    assert not (tmp_path / "o").exists()


def test_choose_bias_undoes_a_planted_prior_and_keeps_zero_without_one():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 3, 600)
    logits = rng.normal(size=(600, 3)) + 1.5 * np.eye(3)[y_true]
    fair = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    skewed = shifted(fair, np.array([0.0, 0.0, -0.75]))  # surprise under-called
    bias, uf1 = choose_bias(y_true, skewed)
    before = f1_score(y_true, skewed.argmax(1), average="macro")
    assert bias[0] == 0 and bias[2] > 0 and set(bias) <= set(BIAS_GRID)
    assert uf1 == pytest.approx(f1_score(y_true, shifted(skewed, bias).argmax(1), average="macro"))
    assert uf1 > before + 0.02
    np.testing.assert_allclose(shifted(skewed, bias).sum(1), 1.0)
    perfect = np.eye(3)[y_true] * 0.9 + 0.05
    bias, uf1 = choose_bias(y_true, perfect)
    assert bias.tolist() == [0, 0, 0] and uf1 == 1.0


def test_class_bias_is_chosen_on_the_inner_rows_only(members, tmp_path):
    plain = write_ensemble(members, tmp_path / "plain", select="inner")
    write_ensemble(members, tmp_path / "biased", select="inner", class_bias=True)
    base = json.loads((tmp_path / "plain" / SELECTION).read_text())
    record = json.loads((tmp_path / "biased" / SELECTION).read_text())
    assert "log-probability" in record["recipe"] and "log-probability" not in base["recipe"]
    inner = [
        _inner(m).assign(key=lambda t: t.fold + "/" + t.sample_id).set_index("key") for m in members
    ]
    outer, table = [_by_id(m) for m in members], _table(tmp_path / "biased")
    for fold, choice in record["folds"].items():
        assert choice["chosen"] == base["folds"][fold]["chosen"]
        rows = inner[0][inner[0].fold.map(outer_fold_of) == fold]
        mean = np.mean([inner[i].loc[rows.index, PROBS].to_numpy() for i in choice["chosen"]], 0)
        bias, uf1 = choose_bias(rows.y_true.to_numpy(), mean)
        assert choice["bias"] == bias.tolist() and choice["inner_uf1_biased"] == uf1
        assert uf1 >= max(choice["inner_uf1"])
        test = table[table.fold == fold]
        mean = np.mean(
            [outer[i].loc[test.sample_id, PROBS].to_numpy() for i in choice["chosen"]], 0
        )
        np.testing.assert_allclose(test[PROBS].to_numpy(), shifted(mean, bias), atol=1e-9)
    assert "log-probability" in (tmp_path / "biased" / "report.md").read_text()
    assert plain["overall"]["n"] == len(table)

    def oracle(t: pd.DataFrame) -> pd.DataFrame:
        t[PROBS] = np.eye(3)[t.y_true]
        return t.assign(y_pred=t.y_true)

    changed = _variant(members[1], tmp_path / "oracle", oracle)
    write_ensemble([members[0], changed], tmp_path / "ens_oracle", select="inner", class_bias=True)
    again = json.loads((tmp_path / "ens_oracle" / SELECTION).read_text())
    assert again["folds"] == record["folds"]


def test_class_bias_takes_one_run_and_needs_inner_selection(members, tmp_path):
    metrics = write_ensemble(members[:1], tmp_path / "one", select="inner", class_bias=True)
    record = json.loads((tmp_path / "one" / SELECTION).read_text())
    assert record["candidates"] == [[0]] and metrics["overall"]["n"] == len(_table(members[0]))
    with pytest.raises(ValueError, match="at least two runs"):
        write_ensemble(members[:1], tmp_path / "o1", select="inner")
    with pytest.raises(ValueError, match="select=inner"):
        write_ensemble(members, tmp_path / "o2", class_bias=True)
    runner = CliRunner()
    args = ["ensemble", str(members[0]), "--out", str(tmp_path / "cli"), "--select", "inner"]
    result = runner.invoke(app, [*args, "--class-bias"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, [*args[:4], "--class-bias"])
    assert result.exit_code == 2 and "--select inner" in result.output
