"""Runs that survive faults (docs/reliability.md): atomic, checksummed files; unfinished fold
and cache files recomputed with a note; a full or read-only disk, a diverged fold and the
everyday faults of a new user end in one line and block nothing; progress on a terminal
only; the same command twice gives the same predictions; no pickle anywhere."""

from __future__ import annotations

import errno
import io
import json
import logging
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from microexpr import atomicio
from microexpr.cli import _progress, app, main
from microexpr.config import PreprocessConfig, config_from
from microexpr.datasets import load
from microexpr.errors import DataError
from microexpr.preprocess.cache import FeatureCache, prepare
from microexpr.protocols import Fold
from microexpr.samples import Sample
from microexpr.synth import write_synthetic
from microexpr.synth.replicas.flow_images import write_flat
from microexpr.train import trainer
from microexpr.train.experiment import run_experiment
from microexpr.train.folds import run_folds
from microexpr.train.trainer import NonFiniteLossError, train_fold

SRC = Path(__file__).resolve().parents[1] / "src" / "microexpr"
QUICK = {"train": {"epochs": 1, "batch_size": 8, "device": "cpu"}}


def config_for(root: Path, *overrides: str):
    return config_from({**QUICK, "data": {"root": str(root)}}, list(overrides))


@pytest.fixture
def flow_root(tmp_path, flow_records) -> Path:
    return write_flat(flow_records, tmp_path / "data").parent


# ------------------------------------------------------------------------- atomic files


def test_a_written_file_verifies_and_any_damage_is_found(tmp_path):
    path = atomicio.write_text(tmp_path / "metrics.json", '{"uf1": 0.5}')
    assert atomicio.problem(path) is None and atomicio.read_text(path) == '{"uf1": 0.5}'
    damages = {
        "truncated": lambda: path.write_bytes(path.read_bytes()[:5]),
        "emptied": lambda: path.write_bytes(b""),
        "one byte changed": lambda: path.write_bytes(path.read_bytes().replace(b"5", b"6")),
        "sidecar lost": lambda: atomicio.checksum_path(path).unlink(),
        "deleted": lambda: path.unlink(),
    }
    detected = 0
    for damage in damages.values():
        atomicio.write_text(path, '{"uf1": 0.5}')
        damage()
        assert atomicio.problem(path) is not None
        with pytest.raises(atomicio.CorruptFileError, match=re.escape(str(path))):
            atomicio.read_bytes(path)
        detected += 1
    assert detected == len(damages)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = atomicio.write_text(tmp_path / "config.json", "old")
    real_fsync = atomicio.os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomicio.os, "fsync", full)
    with pytest.raises(OSError, match="config.json") as info:
        atomicio.write_text(path, "new and longer")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    monkeypatch.setattr(atomicio.os, "fsync", real_fsync)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]  # sidecar removed
    assert path.read_text() == "old" and atomicio.problem(path) is not None  # not "finished"


# ------------------------------------------------------------------------- fold files


def _samples(n: int = 4) -> list[Sample]:
    return [Sample(f"s{i}", "db", f"p{i % 2}", ("a", "b")[i % 2]) for i in range(n)]


FOLDS = [Fold("p0", (1, 3), (0, 2)), Fold("p1", (0, 2), (1, 3))]


def _fit_counting(calls: list[str]):
    def fit(folds: list[Fold]) -> list[np.ndarray]:
        calls.extend(f.name for f in folds)
        return [np.array([[0.75, 0.25], [0.25, 0.75]], np.float32) for _ in folds]

    return fit


@pytest.mark.parametrize(
    "damage",
    [
        "truncated",  # issue 16: read back as a finished fold with n = 14 of 16 and NaNs
        "empty",  # issue 16: "No columns to parse", no file named
        "no checksum",  # a fold file of an older version, or killed before its sidecar
        "other samples",  # a file under this fold's name that holds other samples
        "nan probabilities",
    ],
)
def test_an_unfinished_fold_file_is_trained_again_with_a_note(tmp_path, caplog, damage):
    samples, calls = _samples(), []
    first = run_folds(samples, FOLDS, _fit_counting(calls), ("a", "b"), tmp_path, progress=False)
    path = tmp_path / "folds" / "p1.csv"
    text = path.read_text()
    if damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "empty":
        path.write_text("")
    elif damage == "no checksum":
        atomicio.checksum_path(path).unlink()
    else:
        table = pd.read_csv(path)
        if damage == "other samples":
            table["sample_id"] = ["x1", "x3"]
        else:
            table["p_a"] = np.nan
        atomicio.write_text(path, table.to_csv(index=False))  # a valid checksum, bad content
    with caplog.at_level(logging.WARNING, "microexpr.train"):
        again = run_folds(
            samples, FOLDS, _fit_counting(calls), ("a", "b"), tmp_path, progress=False
        )
    assert calls == ["p0", "p1", "p1"]  # only the damaged fold, and it once
    assert any(
        "p1.csv" in r.getMessage() and "trained again" in r.getMessage() for r in caplog.records
    )
    pd.testing.assert_frame_equal(first, again)
    assert atomicio.problem(path) is None


# ------------------------------------------------------------------------- cache entries


@pytest.fixture(scope="module")
def casme2_samples(tmp_path_factory) -> list[Sample]:
    root = tmp_path_factory.mktemp("casme2-cache")
    write_synthetic("casme2", root, 2, 2, size=32, seed=1, n_frames=6)
    return load("casme2", root)


FLOW = PreprocessConfig(pipeline="flow_image", align="none")


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "drop the checksum"])
def test_a_corrupted_cache_entry_is_recomputed_with_a_note(
    casme2_samples, tmp_path, caplog, damage
):
    prepare(casme2_samples, FLOW, tmp_path, workers=1, progress=False)
    cache = FeatureCache(tmp_path, FLOW)
    victim = cache.path(casme2_samples[1])
    good = cache.load(casme2_samples[1])
    data = victim.read_bytes()
    if damage == "flip a byte":
        victim.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    elif damage == "truncate":
        victim.write_bytes(data[: len(data) // 2])
    else:
        atomicio.checksum_path(victim).unlink()
    assert not cache.has(casme2_samples[1])
    with pytest.raises(atomicio.CorruptFileError):
        cache.load(casme2_samples[1])
    with caplog.at_level(logging.WARNING, "microexpr.preprocess"):
        again = prepare(casme2_samples, FLOW, tmp_path, workers=1, progress=False)
    assert (again.computed, again.reused) == (1, len(casme2_samples) - 1)
    assert any(casme2_samples[1].id in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(cache.load(casme2_samples[1])["image"], good["image"])


def test_a_cache_entry_holding_a_pickle_is_refused_unexecuted(casme2_samples, tmp_path):
    """An npz can carry pickled objects; the cache reads arrays with allow_pickle=False, so a
    planted object array fails to load even with a valid checksum, and runs no code."""
    prepare(casme2_samples[:1], FLOW, tmp_path, workers=1, progress=False)
    cache = FeatureCache(tmp_path, FLOW)
    marker = tmp_path / "pickle-ran"
    planted = io.BytesIO()
    np.savez(planted, image=np.array([_Payload(marker)], dtype=object))
    atomicio.write_bytes(cache.path(casme2_samples[0]), planted.getvalue())
    with pytest.raises(ValueError, match="allow_pickle"):
        cache.load(casme2_samples[0])
    assert not marker.exists()


class _Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_no_pickle_anywhere_in_the_package():
    """No module imports pickle; torch.load only with weights_only=True; np.load never with
    pickles allowed (tests build malicious pickles on purpose, so only src/ is checked)."""
    offences = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        if re.search(r"^\s*(import|from)\s+(c?pickle|dill|joblib)\b", text, re.MULTILINE):
            offences.append(f"{path.name}: imports pickle")
        for loader, safe in (
            ("torch.load(", "weights_only=True"),
            ("np.load(", "allow_pickle=False"),
        ):
            for match in re.finditer(re.escape(loader), text):
                call = _call_at(text, match.start())
                if safe not in call:
                    offences.append(f"{path.name}: {call}")
    assert not offences


SAFE_LOADS = (("torch.load(", "weights_only=True"), ("np.load(", "allow_pickle=False"))


def _call_at(text: str, start: int) -> str:
    """The call expression starting at ``start``, up to its matching parenthesis."""
    depth = 0
    for end in range(text.index("(", start), len(text)):
        depth += {"(": 1, ")": -1}.get(text[end], 0)
        if depth == 0:
            return text[start : end + 1]
    return text[start:]


# ------------------------------------------------------------------------- whole runs


@pytest.mark.parametrize("failing_write", [1, 3, 5, 6, 10])
def test_a_full_disk_fails_in_one_error_and_the_next_run_completes(
    flow_root, tmp_path, monkeypatch, caplog, failing_write
):
    """Whichever write meets the full disk (config.json, plan.json, a fold file or its
    checksum, the report), the error names the file, no temporary file is left, and the same
    command then completes, recomputing what was unfinished."""
    out, real, count = tmp_path / "out", atomicio._replace_durably, [0]

    def filling(path: Path, data: bytes) -> None:
        count[0] += 1
        if count[0] == failing_write:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(atomicio, "_replace_durably", filling)
    cfg = config_for(flow_root)
    with pytest.raises(OSError, match="No space left") as info:
        run_experiment(cfg, out, False, max_folds=2, save_model=False)
    assert Path(info.value.filename).is_relative_to(out)
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no temporaries
    monkeypatch.setattr(atomicio, "_replace_durably", real)
    with caplog.at_level(logging.WARNING):
        metrics = run_experiment(cfg, out, False, max_folds=2, save_model=False)
    assert metrics["overall"]["n"] == 8
    results = [out / n for n in ("config.json", "plan.json", "predictions.csv", "metrics.json")]
    for path in [*results, *sorted((out / "folds").glob("*.csv"))]:
        assert atomicio.problem(path) is None, path
    if failing_write == 6:  # the first fold's checksum: that fold is trained again, noted
        assert any("trained again" in r.getMessage() for r in caplog.records)


def test_a_zero_byte_config_left_by_an_old_version_blocks_nothing(flow_root, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("")  # issue 16: "Expecting value" on every re-run
    run_experiment(config_for(flow_root), out, False, max_folds=1, save_model=False)
    assert atomicio.problem(out / "config.json") is None


def test_relative_and_absolute_data_paths_are_one_configuration(flow_root, tmp_path, monkeypatch):
    monkeypatch.chdir(flow_root.parent)
    out = tmp_path / "out"
    run_experiment(config_for(Path(flow_root.name)), out, False, max_folds=1, save_model=False)
    run_experiment(config_for(flow_root), out, False, max_folds=1, save_model=False)
    # a new title alone changes no result either
    run_experiment(config_for(flow_root, "name=renamed"), out, False, max_folds=1, save_model=False)


def test_a_face_model_on_flow_images_without_apex_faces_names_the_problem(flow_root, tmp_path):
    cfg = config_for(flow_root, "model.name=densenet121", "model.input_size=32")
    with pytest.raises(DataError, match="a face model needs its apex frame"):
        run_experiment(cfg, tmp_path / "out", False, max_folds=1, save_model=False)
    assert not (tmp_path / "out" / "config.json").exists()


def test_the_same_command_twice_gives_identical_predictions(flow_root, tmp_path):
    cfg = config_for(flow_root, "train.epochs=3", "train.shuffle=true")
    for name in ("first", "second"):
        run_experiment(cfg, tmp_path / name, False, max_folds=3)
    first, second = tmp_path / "first", tmp_path / "second"
    assert (first / "predictions.csv").read_text() == (second / "predictions.csv").read_text()
    weights = "model/weights.safetensors"
    assert (first / weights).read_bytes() == (second / weights).read_bytes()
    settings = json.loads((first / "metrics.json").read_text())["determinism"]
    assert settings["seed"] == 0 and settings["device"] == "cpu"
    assert settings["torch_threads"] == torch.get_num_threads()
    assert "Repeatable: seed 0" in (first / "report.md").read_text()


# ------------------------------------------------------------------------- diverged training


def test_a_nan_loss_stops_the_fold_naming_fold_epoch_and_step():
    x = torch.rand(12, 3, 28, 28)
    x[9] = float("nan")  # in the third batch of four
    y = torch.arange(12) % 3
    cfg = config_from({"train": {"epochs": 3, "batch_size": 4, "device": "cpu"}}).train
    from microexpr.models.flow_nets import ststnet

    with pytest.raises(NonFiniteLossError, match=r"fold sub07: .*nan at epoch 1 of 3, step 3 of 3"):
        train_fold(ststnet(num_classes=3), (x, y), cfg, 3, progress=False, desc="sub07")


def test_an_infinite_loss_in_a_later_epoch_is_found_too(monkeypatch):
    real, calls = trainer.training_loss, [0]

    def blows_up(criterion, logits, y):
        calls[0] += 1
        loss = real(criterion, logits, y)
        return loss * float("inf") if calls[0] == 5 else loss

    monkeypatch.setattr(trainer, "training_loss", blows_up)
    from microexpr.models.flow_nets import ststnet

    cfg = config_from({"train": {"epochs": 4, "batch_size": 4, "device": "cpu"}}).train
    x, y = torch.rand(8, 3, 28, 28), torch.arange(8) % 3
    with pytest.raises(NonFiniteLossError, match=r"(inf|nan) at epoch 3 of 4, step 1 of 2"):
        train_fold(ststnet(num_classes=3), (x, y), cfg, 3, progress=False, desc="f")


# ------------------------------------------------------------------------- the command line


def _one_line_error(argv: list[str], capsys) -> str:
    """Run the real entry point; it must exit 1 with one error line and no traceback."""
    sys.argv = ["microexpr", *argv]
    with pytest.raises(SystemExit) as stop:
        main()
    output = capsys.readouterr()
    text = output.out + output.err
    assert stop.value.code == 1, text
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    return errors[0]


def test_everyday_faults_end_in_one_line(flow_root, tmp_path, monkeypatch, capsys):
    quick = ["--set", "train.epochs=1", "--max-folds", "1", "--no-save-model", "--quiet"]
    quick += ["--set", "engine=per_fold"]  # the trainer whose loss is watched
    base = ["benchmark", "composite", "--data", str(flow_root), *quick]
    blocker = tmp_path / "a file"
    blocker.write_text("")
    line = _one_line_error([*base, "--out", str(blocker / "out")], capsys)
    assert "a file" in line  # an --out that cannot be a folder
    line = _one_line_error(
        [*base, "--out", str(tmp_path / "o"), "--set", "train.device=gpu"], capsys
    )
    assert "train.device" in line
    line = _one_line_error(
        [*base, "--out", str(tmp_path / "o"), "--set", "train.batch_size=0"], capsys
    )
    assert "train.batch_size" in line
    line = _one_line_error(
        ["datasets", "check", "flow_images", str(flow_root), "-o", "colums.onset=3"], capsys
    )
    assert "colums" in line

    def read_only(path: Path, data: bytes) -> None:
        raise PermissionError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(atomicio, "_replace_durably", read_only)
    line = _one_line_error([*base, "--out", str(tmp_path / "ro")], capsys)
    assert "Read-only file system" in line and "config.json" in line
    monkeypatch.undo()

    def diverges(criterion, logits, y):
        return logits.sum() * float("nan")

    monkeypatch.setattr(trainer, "training_loss", diverges)
    line = _one_line_error([*base, "--out", str(tmp_path / "nan")], capsys)
    assert re.search(r"fold \S+: training loss is nan at epoch 1 of 1, step 1", line)


def test_images_must_be_a_known_choice(flow_root):
    result = CliRunner().invoke(
        app, ["datasets", "check", "casme2", str(flow_root), "--images", "some"]
    )
    assert result.exit_code == 2 and "'some' is not one of" in result.output


def test_piped_runs_show_no_progress_bars(flow_root, tmp_path):
    args = ["benchmark", "composite", "--data", str(flow_root), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*args, "--set", "train.epochs=2", "--max-folds", "2"])
    assert result.exit_code == 0, result.output
    assert "\r" not in result.output and "\x1b[" not in result.output


@pytest.mark.parametrize(
    ("terminal", "quiet", "env", "shown"),
    [
        (True, False, None, True),
        (False, False, None, False),
        (True, True, None, False),
        (True, False, "1", False),
        (True, False, "0", True),
    ],
)
def test_progress_only_on_a_terminal(monkeypatch, terminal, quiet, env, shown):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal, raising=False)
    if env is None:
        monkeypatch.delenv("TQDM_DISABLE", raising=False)
    else:
        monkeypatch.setenv("TQDM_DISABLE", env)
    assert _progress(quiet) is shown


def test_library_progress_bars_stay_out_of_pipes(tmp_path, capsys):
    """Called from Python with progress on, the bars still check for a terminal."""
    run_folds(_samples(), FOLDS, _fit_counting([]), ("a", "b"), tmp_path, progress=True)
    captured = capsys.readouterr()
    assert "\r" not in captured.err + captured.out
