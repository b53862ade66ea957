"""`microexpr synth`: every layout written with its defaults reads back as its ground truth."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from microexpr.cli import app
from microexpr.datasets import load
from microexpr.synth import LAYOUTS, write_synthetic

READER = {"flow": "flow_images", "flow-per-subject": "flow_images"}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layout_reads_back_as_written(tmp_path, layout):
    truth = write_synthetic(layout, tmp_path, 2, 3, size=32, seed=1)
    samples = load(READER.get(layout, layout), tmp_path)
    assert len(samples) == len(truth) == 6
    assert Counter(s.label for s in samples) == Counter(r["label"] for r in truth)
    assert len({s.subject for s in samples}) >= 2  # composite spreads clips over 3 databases
    if "apex" in truth[0]:
        by_id = {s.id: s for s in samples}
        for record in truth:
            sample = by_id[record["id"]]
            assert (sample.onset, sample.apex, sample.offset) == (
                record["onset"],
                record["apex"],
                record["offset"],
            )


def test_database_frame_rate_is_the_default(tmp_path):
    write_synthetic("smic", tmp_path, 1, 2, size=32)
    assert {s.fps for s in load("smic", tmp_path)} == {100.0}


def _digest(folder: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".xlsx"):
        sha.update(path.relative_to(folder).as_posix().encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()


def test_cli_is_deterministic_by_seed(tmp_path):
    runner = CliRunner()
    args = ["synth", "--layout", "casme2", "--subjects", "2", "--clips", "2", "--size", "32"]
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        result = runner.invoke(app, [*args, "--out", str(tmp_path / name), "--seed", seed])
        assert result.exit_code == 0, result.output
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")
    # The sheet itself (xlsx zips carry a timestamp) holds the same rows.
    sheets = [load("casme2", tmp_path / n) for n in ("a", "b")]
    assert [(s.id, s.label, s.apex) for s in sheets[0]] == [
        (s.id, s.label, s.apex) for s in sheets[1]
    ]


def test_cli_writes_truth_and_passes_quirks(tmp_path):
    truth = tmp_path / "truth.csv"
    result = CliRunner().invoke(
        app,
        [
            "synth",
            "--layout",
            "samm",
            "--out",
            str(tmp_path / "samm"),
            "--subjects",
            "1",
            "--clips",
            "2",
            "--size",
            "32",
            "--quirk",
            "version=plain",
            "--truth",
            str(truth),
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(truth.read_text().splitlines()) == 3
    assert len(load("samm", tmp_path / "samm")) == 2


def test_unknown_layout_is_refused(tmp_path):
    with pytest.raises(KeyError, match="known"):
        write_synthetic("nope", tmp_path, 1, 1)
