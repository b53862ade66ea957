"""Issue 15: folds as Ray tasks on a local 2-CPU Ray, worker failures, and the nested sweep."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from microexpr.config import DataConfig, ExperimentConfig, TrainConfig
from microexpr.protocols import loso
from microexpr.samples import subject_key
from microexpr.synth.replicas.flow_images import write_flat
from microexpr.train.experiment import run_experiment
from microexpr.train.ray_backend import stay_on_loopback
from microexpr.train.sweep import candidates, inner_folds, parse_grid, run_sweep

stay_on_loopback()  # before ray is imported: the local test cluster binds to 127.0.0.1 only
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture
def one_thread():
    """Ray tasks run one torch thread; the local reference run does too, so bits match."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(root: Path, engine: str, epochs: int = 3, **extra) -> ExperimentConfig:
    return ExperimentConfig(
        data=DataConfig(root=str(root)),
        train=TrainConfig(epochs=epochs, batch_size=16, lr=1e-3, device="cpu"),
        engine=engine,
        **extra,
    )


def _same_results(a: Path, b: Path) -> None:
    pd.testing.assert_frame_equal(
        pd.read_csv(a / "predictions.csv").sort_values("sample_id", ignore_index=True),
        pd.read_csv(b / "predictions.csv").sort_values("sample_id", ignore_index=True),
    )


@pytest.mark.parametrize(
    ("engine", "extra"),
    [
        pytest.param("per_fold", {}, marks=pytest.mark.slow),  # one task per fold: ~2 min
        ("stacked", {"folds_per_call": 3}),
    ],
)
def test_ray_run_equals_the_local_run(tmp_path, flow_records, local_ray, one_thread, engine, extra):
    root = write_flat(flow_records, tmp_path / "data").parent
    cfg = _config(root, engine, **extra)
    local = run_experiment(cfg, tmp_path / "local", False, save_model=False)
    remote = run_experiment(cfg, tmp_path / "ray", False, save_model=False, backend="ray")
    assert remote["overall"] == local["overall"]
    _same_results(tmp_path / "local", tmp_path / "ray")


def _ray_task_pids() -> list[int]:
    """Ray workers busy with a fold task (Ray titles them ``ray::_call``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"ray::_call" in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
def test_a_killed_worker_still_scores_every_fold_once(
    tmp_path, flow_records, local_ray, one_thread
):
    root = write_flat(flow_records, tmp_path / "data").parent
    cfg = _config(root, "per_fold", epochs=60)
    reference = run_experiment(cfg, tmp_path / "local", False, save_model=False)
    done: dict = {}
    run = threading.Thread(
        target=lambda: done.update(
            metrics=run_experiment(cfg, tmp_path / "ray", False, save_model=False, backend="ray")
        )
    )
    run.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and run.is_alive() and time.monotonic() < deadline:
        busy = _ray_task_pids()
        if busy:
            killed = busy[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    run.join()
    assert killed is not None, "no fold task was seen running"
    predictions = pd.read_csv(tmp_path / "ray" / "predictions.csv")
    assert len(list((tmp_path / "ray" / "folds").glob("*.csv"))) == 6
    assert predictions["sample_id"].is_unique and len(predictions) == len(flow_records)
    assert done["metrics"]["overall"] == reference["overall"]
    _same_results(tmp_path / "local", tmp_path / "ray")


def test_inner_splits_never_hold_the_outer_test_subject(tmp_path, flow_records):
    from microexpr import datasets

    samples = datasets.load("flow_images", write_flat(flow_records, tmp_path).parent)
    for outer in loso(samples):
        tested = {subject_key(samples[i]) for i in outer.test}
        folds = inner_folds(outer, samples, 2)
        assert len(folds) == 2
        for fold in folds:
            seen = {subject_key(samples[i]) for i in fold.train + fold.test}
            assert not seen & tested
            assert set(fold.train) | set(fold.test) == set(outer.train)


def test_grid_gives_every_combination_and_refuses_fixed_sections():
    grid = parse_grid(["train.lr=1e-3,1e-2", "train.epochs=1,2"])
    assert len(candidates(grid)) == 4
    assert candidates(grid)[1] == ["train.lr=1e-3", "train.epochs=2"]
    with pytest.raises(ValueError, match="cannot change data"):
        parse_grid(["data.root=a,b"])


@pytest.mark.slow  # Ray Tune starts a worker per trial: minutes on the shared 2-core machine
def test_sweep_chooses_inside_training_subjects_and_scores_outer_folds(
    tmp_path, flow_records, local_ray
):
    root = write_flat(flow_records, tmp_path / "data").parent
    cfg = _config(root, "per_fold", epochs=2)
    grid = parse_grid(["train.lr=1e-3,1e-2"])
    metrics = run_sweep(cfg, grid, tmp_path / "sweep", inner_folds=2, max_folds=2, progress=False)
    record = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert len(record["inner_uf1"]) == 2 and len(record["chosen"]) == 2
    assert all(c in record["candidates"] for c in record["chosen"].values())
    assert metrics["overall"]["n"] == 8  # two outer test subjects, 4 samples each
    assert len(list((tmp_path / "sweep" / "folds").glob("*.csv"))) == 2
