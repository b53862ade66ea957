"""Issue 16 item 6, walked through as a new user would: the real `microexpr train` entry point
on a tiny synthetic database, one everyday fault at a time. Each ends in one ``error:`` line,
exit 1, no traceback, and leaves nothing that blocks the corrected command in the same
``--out``. The full and read-only disks are real tmpfs mounts where mounting is permitted
(root in a container); elsewhere those two are skipped (tests/test_reliability.py covers
them by making the writer raise ENOSPC / EROFS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from microexpr import atomicio
from microexpr.cli import main
from microexpr.synth.replicas.flow_images import write_flat

CONFIG = """\
name: new user
data: {name: flow_images, taxonomy: composite3}
model: {name: ststnet}
train: {epochs: 1, batch_size: 8, lr: 0.001, device: cpu}
protocol: {name: loso}
engine: per_fold
"""


@pytest.fixture
def setup(tmp_path, flow_records) -> tuple[Path, Path]:
    """(config file, data folder) as `microexpr synth --layout flow` would leave them."""
    data = write_flat(flow_records, tmp_path / "data").parent
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    return config, data


def train(config: Path, data: Path | str, out: Path, *extra: str) -> list[str]:
    args = ["train", str(config), "--data", str(data), "--out", str(out)]
    return [*args, "--max-folds", "2", "--no-save-model", "--quiet", *extra]


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """The real entry point; its exit code and everything it printed."""
    sys.argv = ["microexpr", *argv]
    code = 0
    try:
        main()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    output = capsys.readouterr()
    return code, output.out + output.err


def one_line_error(argv: list[str], capsys) -> str:
    code, text = run_cli(argv, capsys)
    assert code == 1, text
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    return errors[0]


def completes(argv: list[str], capsys) -> dict:
    code, text = run_cli(argv, capsys)
    assert code == 0, text
    out = Path(argv[argv.index("--out") + 1])
    return json.loads(atomicio.read_text(out / "metrics.json"))


def unfinished_looking_finished(out: Path) -> list[Path]:
    """Files that carry a checksum that does not match them (none may exist)."""
    return [
        p
        for p in out.rglob("*")
        if p.is_file()
        and not p.name.endswith(atomicio.CHECKSUM_SUFFIX)
        and atomicio.checksum_path(p).exists()
        and atomicio.problem(p) is not None
    ]


@pytest.fixture
def tmpfs(tmp_path):
    """A mount point for a small tmpfs, or skip where mounting is not permitted."""
    point = tmp_path / "mnt"
    point.mkdir()

    def mount(*options: str) -> Path:
        opts = ",".join(options)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        return point

    yield mount
    subprocess.run(["umount", str(point)], capture_output=True)


def test_a_real_full_disk_is_one_error_and_then_the_same_command_completes(setup, tmpfs, capsys):
    config, data = setup
    point = tmpfs("size=16k")
    out = point / "out"
    line = one_line_error(train(config, data, out), capsys)
    assert "No space left on device" in line and str(out) in line
    assert not (out / "metrics.json").exists() or atomicio.problem(out / "metrics.json")
    assert not unfinished_looking_finished(out)
    assert not [p for p in out.rglob(".*.tmp")]  # no temporary left behind
    config_json = out / "config.json"
    assert not config_json.exists() or atomicio.problem(config_json) is None  # never 0 bytes
    subprocess.run(["mount", "-o", "remount,size=64m", str(point)], check=True)
    metrics = completes(train(config, data, out), capsys)
    assert metrics["overall"]["n"] == 8


def test_a_real_read_only_out_is_one_error(setup, tmpfs, capsys):
    config, data = setup
    point = tmpfs("size=1m", "ro")
    line = one_line_error(train(config, data, point / "out"), capsys)
    assert "Read-only file system" in line


def test_a_zero_byte_config_json_blocks_no_rerun(setup, tmp_path, capsys):
    """What a full disk left before issue 16: every re-run failed with "Expecting value"."""
    config, data = setup
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("")
    assert completes(train(config, data, out), capsys)["overall"]["n"] == 8
    assert atomicio.problem(out / "config.json") is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_device_cuda_without_a_gpu(setup, tmp_path, capsys):
    config, data = setup
    line = one_line_error(train(config, data, tmp_path / "o", "--set", "train.device=cuda"), capsys)
    assert "train.device" in line and "no CUDA GPU" in line
    assert not (tmp_path / "o").exists()  # refused before the run folder is made


def test_device_gpu_is_not_a_device(setup, tmp_path, capsys):
    config, data = setup
    line = one_line_error(train(config, data, tmp_path / "o", "--set", "train.device=gpu"), capsys)
    assert "train.device" in line and "'gpu' is not a device" in line


def test_a_misspelt_reader_option(setup, tmp_path, capsys):
    config, data = setup
    argv = train(config, data, tmp_path / "o", "--set", "data.options.colums.onset=3")
    line = one_line_error(argv, capsys)
    assert "unknown option(s) colums" in line and "columns" in line  # the known ones listed
    line = one_line_error(
        ["datasets", "check", "flow_images", str(data), "-o", "colums.onset=3"], capsys
    )
    assert "unknown option(s) colums" in line


@pytest.mark.parametrize(
    "setting", ["train.batch_size=0", "train.epochs=0", "train.epochs=-1", "train.lr=0"]
)
def test_values_out_of_range_name_the_key(setup, tmp_path, capsys, setting):
    config, data = setup
    line = one_line_error(train(config, data, tmp_path / "o", "--set", setting), capsys)
    assert setting.split("=")[0] in line


@pytest.mark.parametrize(("model", "size"), [("ststnet", 8), ("densenet121", 16)])
def test_an_image_size_below_the_models_minimum_names_the_key(setup, tmp_path, capsys, model, size):
    """Above the schema's floor of 8 but below what the model's layers need: before this,
    a shape RuntimeError with a traceback in the first fold."""
    config, data = setup
    extra = ["--set", f"model.name={model}", "--set", f"model.input_size={size}"]
    extra += ["--set", "model.input_kind=flow_image"]
    line = one_line_error(train(config, data, tmp_path / "o", *extra), capsys)
    assert f"model.input_size: {model} cannot take {size} x {size} inputs" in line
    assert not (tmp_path / "o").exists()


def test_images_some_is_refused(setup, capsys):
    _, data = setup
    code, text = run_cli(
        ["datasets", "check", "flow_images", str(data), "--images", "some"], capsys
    )
    assert code == 2 and "'some' is not one of" in text and "Traceback" not in text


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_fold_csv_is_trained_again_not_read_as_finished(
    setup, tmp_path, capsys, caplog, damage
):
    """Before: a truncated fold CSV was read back as a finished fold (n = 14 of 16, NaN
    probabilities, new metrics, exit 0); an empty one gave "No columns to parse"."""
    config, data = setup
    argv = train(config, data, tmp_path / "out")
    first = completes(argv, capsys)
    fold = sorted((tmp_path / "out" / "folds").glob("*.csv"))[0]
    text = fold.read_text()
    fold.write_text(text[: len(text) // 2] if damage == "truncated" else "")
    again = completes(argv, capsys)
    assert again["overall"] == first["overall"]  # the fold trained again gives the same scores
    assert any(
        fold.name in r.getMessage() and "trained again" in r.getMessage() for r in caplog.records
    )
    assert atomicio.problem(fold) is None


def test_a_face_model_without_apex_faces(setup, tmp_path, capsys):
    config, data = setup
    extra = ["--set", "model.name=densenet121", "--set", "model.input_size=32"]
    line = one_line_error(train(config, data, tmp_path / "o", *extra), capsys)
    assert "a face model needs its apex frame" in line and ".png" in line
    assert not (tmp_path / "o" / "config.json").exists()


def test_a_wrong_data_path_blocks_nothing(setup, tmp_path, capsys):
    config, data = setup
    out = tmp_path / "out"
    line = one_line_error(train(config, tmp_path / "no-such-data", out), capsys)
    assert "no-such-data" in line
    assert completes(train(config, data, out), capsys)["overall"]["n"] == 8


def test_relative_and_absolute_data_paths_are_one_configuration(
    setup, tmp_path, capsys, monkeypatch
):
    config, data = setup
    out = tmp_path / "out"
    completes(train(config, data, out), capsys)
    monkeypatch.chdir(data.parent)
    completes(train(config, data.name, out), capsys)


def test_a_really_different_config_names_the_keys(setup, tmp_path, capsys):
    config, data = setup
    out = tmp_path / "out"
    completes(train(config, data, out), capsys)
    extra = ["--set", "train.lr=0.01", "--set", "train.epochs=2"]
    line = one_line_error(train(config, data, out, *extra), capsys)
    assert "train.epochs" in line and "train.lr" in line and str(out) in line


def test_max_folds_makes_a_smoke_run(setup, tmp_path, capsys):
    config, data = setup
    argv = train(config, data, tmp_path / "out")
    argv[argv.index("--max-folds") + 1] = "1"
    assert completes(argv, capsys)["overall"]["n"] == 4  # one subject's 4 clips
    assert len(list((tmp_path / "out" / "folds").glob("*.csv"))) == 1


@pytest.mark.parametrize(
    "command", ["train", "benchmark composite", "prepare", "analyze", "demo", "spot", "sweep"]
)
def test_quiet_exists(command, capsys):
    code, text = run_cli([*command.split(), "--help"], capsys)
    assert code == 0 and "--quiet" in text


def test_piped_output_has_no_progress_codes(setup, tmp_path):
    """The installed script with stdout and stderr piped (not a terminal), --quiet not given."""
    config, data = setup
    argv = train(config, data, tmp_path / "out")
    argv.remove("--quiet")
    script = Path(sys.executable).with_name("microexpr")
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    done = subprocess.run([str(script), *argv], capture_output=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr.decode()
    output = done.stdout + done.stderr
    assert b"\r" not in output and b"\x1b[" not in output


def test_the_demo_piped_has_no_progress_codes(tmp_path):
    """The main job, piped as CI or a log file would take it (a tiny demo: about 10 s)."""
    script = Path(sys.executable).with_name("microexpr")
    argv = ["demo", "--epochs", "2", "--subjects", "3", "--clips", "3", "--out", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    done = subprocess.run([str(script), *argv], capture_output=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr.decode()
    output = done.stdout + done.stderr
    assert b"\r" not in output and b"\x1b[" not in output
    assert (tmp_path / "analysis" / "s01_v01" / "timeline.png").is_file()
