"""`microexpr train` killed with SIGKILL at random moments, then run again: the same metrics,
predictions and final weights as a run never interrupted, nothing finished done again, and
every result, fold and cache file whole (files lost: 0).

Each run is the real command line (``microexpr.cli.main`` with its argv) in its own process,
forked from a forkserver that has imported microexpr once (a fresh interpreter per run would
spend most of the test importing torch). Test-only hooks, installed in the child before the
command starts, log what the run is doing and widen the moments worth hitting: every fsync of
a file being written sleeps, so a kill lands while a fold file, a report file or a cache
entry is half-way through its write. Production code has no hook and no sleep.

The default run kills three times (while a fold file, a report file and a cache entry is
written); ``-m slow`` kills 20 times at moments drawn over the four phases
(during a fold, while a fold file, a report file or a cache entry is written).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from microexpr import atomicio
from microexpr.synth import write_synthetic

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")

CONFIG = """\
name: kill test
data: {name: casme2, taxonomy: casme2-3}
model: {name: ststnet}
preprocess: {align: none}
train: {epochs: 12, batch_size: 4, lr: 0.001, device: cpu}
protocol: {name: loso}
engine: per_fold  # one fold is one unit of work (the stacked engine's unit is its group)
"""
WINDOW = 0.3  # seconds each fsync sleeps in a run that is to be killed (and each epoch 0.05)
# What a kill is aimed at: a line of the child's event log, and how long after it the kill may
# come. Which such line (the k-th) is drawn from those an uninterrupted run logs.
PHASES = {
    "fold": (re.compile(r"^fold (?!all-subjects)"), 12 * 0.05),
    "fold file": (re.compile(r"^write .*/folds/"), WINDOW),
    "report": (
        re.compile(r"^write .*/\.(predictions\.csv|metrics\.json|confusion\.png|report\.md)"),
        WINDOW,
    ),
    "cache": (re.compile(r"^write .*/cache/.*\.(npz|png)"), WINDOW),
}


def _child(argv: list[str], log: str, slow: bool) -> None:
    """One `microexpr` run with hooks that log what it does (and slow its file writes)."""
    import torch

    from microexpr.preprocess import cache
    from microexpr.train import experiment, trainer

    torch.set_num_threads(1)  # a kill test measures survival, not speed; no thread contention
    events = open(log, "a", buffering=1)  # noqa: SIM115 (lives as long as the process)
    sync, train_fold, run_pipeline = os.fsync, experiment.train_fold, cache.run_pipeline
    end_of_epoch = trainer.LossWatch.check

    def logged_fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if not os.path.isdir(path):
            events.write(f"write {path}\n")
            if slow:
                time.sleep(WINDOW)
        sync(fd)

    def logged_train_fold(*args, desc: str = "train", **kwargs):
        events.write(f"fold {desc}\n")
        return train_fold(*args, desc=desc, **kwargs)

    def slow_end_of_epoch(watch, epoch: int) -> None:
        time.sleep(0.05)
        end_of_epoch(watch, epoch)

    def logged_run_pipeline(sample, config):
        events.write(f"prepare {sample.id}\n")
        return run_pipeline(sample, config)

    os.fsync = logged_fsync
    experiment.train_fold = logged_train_fold
    cache.run_pipeline = logged_run_pipeline
    if slow:
        trainer.LossWatch.check = slow_end_of_epoch
    sys.argv = ["microexpr", *argv]
    with open(Path(log).with_suffix(".out"), "w") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        from microexpr.cli import main

        main()


@dataclass
class Runner:
    """Starts runs of one experiment in forked children."""

    context: multiprocessing.context.BaseContext
    config: Path
    data: Path

    def argv(self, out: Path, cache: Path) -> list[str]:
        return [
            "train",
            str(self.config),
            "--data",
            str(self.data),
            "--out",
            str(out),
            "--cache",
            str(cache),
            "--workers",
            "1",
        ]

    def start(self, folder: Path, log: Path, slow: bool) -> multiprocessing.Process:
        argv = self.argv(folder / "out", folder / "cache")
        process = self.context.Process(target=_child, args=(argv, str(log), slow))
        process.start()
        return process

    def complete(self, folder: Path, log: Path) -> None:
        process = self.start(folder, log, slow=False)
        process.join(600)
        output = log.with_suffix(".out").read_text() if log.with_suffix(".out").exists() else ""
        assert process.exitcode == 0, output


@pytest.fixture(scope="module")
def runner(tmp_path_factory) -> Runner:
    root = tmp_path_factory.mktemp("kill")
    write_synthetic("casme2", root / "data", 3, 3, size=32, seed=0, n_frames=6)
    (root / "config.yaml").write_text(CONFIG)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["microexpr.cli", "microexpr.train.experiment", "test_kill"])
    return Runner(context, root / "config.yaml", root / "data")


@dataclass
class Baseline:
    """An uninterrupted run: what it gives, and how many moments of each phase it has."""

    outcome: dict
    moments: dict[str, int]


@pytest.fixture(scope="module")
def baseline(runner, tmp_path_factory) -> Baseline:
    folder = tmp_path_factory.mktemp("baseline")
    runner.complete(folder, folder / "events.log")
    lines = (folder / "events.log").read_text().splitlines()
    moments = {name: sum(bool(p.search(line)) for line in lines) for name, (p, _) in PHASES.items()}
    assert all(moments.values()), moments
    return Baseline(outcome(folder / "out"), moments)


def outcome(out: Path) -> dict:
    """What must not depend on interruptions: scores, predictions, final weights."""
    metrics = json.loads(atomicio.read_text(out / "metrics.json"))
    return {
        "scores": {k: metrics[k] for k in ("overall", "per_dataset", "per_class", "confusion")},
        "predictions": atomicio.read_text(out / "predictions.csv"),
        "weights": (out / "model" / "weights.safetensors").read_bytes(),
    }


def finished(folder: Path) -> set[str]:
    """The units of work on disk and whole: ``fold <name>`` and ``prepare <sample id>``."""
    done = set()
    for path in (folder / "out" / "folds").glob("*.csv"):
        if atomicio.problem(path) is None:
            done.add(f"fold {path.stem}")
    for npz in (folder / "cache").glob("*/*.npz"):
        png = npz.with_suffix(".png")
        if atomicio.problem(npz) is None and atomicio.problem(png) is None:
            done.add(f"prepare {npz.stem.rsplit('-', 1)[0]}")
    if (folder / "out" / "model" / "bundle.json").is_file():
        done.add("fold all-subjects")
    return done


def damaged(folder: Path) -> list[str]:
    """Files a finished run must hold that are missing or fail their checksum."""
    out = folder / "out"
    names = ["config.json", "plan.json", "predictions.csv", "metrics.json", "report.md"]
    checked = [out / name for name in [*names, "confusion.png"]]
    checked += sorted((out / "folds").glob("*.csv"))
    for npz in sorted((folder / "cache").glob("*/*.npz")):
        checked += [npz, npz.with_suffix(".png")]
    bad = [f"{p}: {reason}" for p in checked if (reason := atomicio.problem(p)) is not None]
    bundle = [out / "model" / name for name in ("bundle.json", "weights.safetensors")]
    return bad + [f"{p}: missing" for p in bundle if not p.is_file()]


def kill_at(
    runner: Runner, folder: Path, phase: str, moments: int, stratum: tuple[int, int], seed: int
) -> str:
    """Start a slowed run, kill it at a random one of its ``moments`` of ``phase``, drawn
    from part ``stratum[0]`` of ``stratum[1]`` equal parts (so that kills aimed at one phase
    spread over all of its moments: every fold, every report file); returns the event the
    kill followed."""
    pattern, spread = PHASES[phase]
    log = folder / "killed.log"
    process = runner.start(folder, log, slow=True)
    rng = random.Random(seed)
    part, parts = stratum
    wanted = 1 + min(int((part + rng.random()) * moments / parts), moments - 1)
    deadline = time.monotonic() + 600
    while True:
        lines = log.read_text().splitlines() if log.exists() else []
        matching = [line for line in lines if pattern.search(line)]
        if len(matching) >= wanted:
            break
        assert process.is_alive(), f"the run ended before {phase} moment {wanted}: {lines[-3:]}"
        assert time.monotonic() < deadline, f"no {phase} moment {wanted} within 600 s"
        time.sleep(0.01)
    time.sleep(rng.uniform(0, spread))
    process.kill()
    process.join()
    assert process.exitcode == -signal.SIGKILL, "the run ended before the kill"
    return matching[wanted - 1]


def survive(
    runner: Runner,
    baseline: Baseline,
    folder: Path,
    phase: str,
    seed: int,
    stratum: tuple[int, int] = (0, 1),
) -> str:
    """One kill and one re-run; asserts the promises and returns what the kill hit."""
    hit = kill_at(runner, folder, phase, baseline.moments[phase], stratum, seed)
    done = finished(folder)
    runner.complete(folder, folder / "rerun.log")
    redone = {line for line in (folder / "rerun.log").read_text().splitlines()}
    assert not done & redone, f"finished work done again after a kill at {hit!r}"
    assert outcome(folder / "out") == baseline.outcome, f"results differ after a kill at {hit!r}"
    assert not damaged(folder), damaged(folder)
    return hit


@pytest.mark.parametrize(
    ("phase", "written"), [("fold file", "/folds/"), ("report", "/out/."), ("cache", "/cache/")]
)
def test_a_run_killed_while_a_file_is_written_resumes_to_the_same_result(
    runner, baseline, tmp_path, phase, written
):
    hit = survive(runner, baseline, tmp_path, phase, seed=1)
    assert written in hit, hit


@pytest.mark.soak  # 20 kills and re-runs: about 15 min, a measurement rather than a CI step
def test_twenty_kills_at_random_moments_all_survived(runner, baseline, tmp_path_factory):
    phases = list(PHASES)
    hits = []
    for k in range(20):
        folder = tmp_path_factory.mktemp(f"kill{k:02d}")
        phase, stratum = phases[k % 4], (k // 4, 5)  # five kills per phase, spread over it
        hits.append((phase, survive(runner, baseline, folder, phase, k, stratum)))
    print("\n".join(f"kill {k + 1:2d} [{phase}]: {hit}" for k, (phase, hit) in enumerate(hits)))
    assert len(hits) == 20


@pytest.mark.slow
def test_the_real_command_killed_mid_run_resumes(runner, tmp_path):
    """The installed `microexpr` script in fresh interpreters: killed once its first fold is
    on disk, run again, it ends as an uninterrupted run of the same script does."""
    command = [str(Path(sys.executable).with_name("microexpr"))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(folder: Path) -> subprocess.Popen:
        argv = runner.argv(folder / "out", folder / "cache")
        return subprocess.Popen(command + argv, env=env, stdout=subprocess.DEVNULL)

    assert run(tmp_path / "whole").wait(600) == 0
    process = run(tmp_path / "killed")
    folds = tmp_path / "killed" / "out" / "folds"
    deadline = time.monotonic() + 600
    while not list(folds.glob("*.csv")) and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert run(tmp_path / "killed").wait(600) == 0
    assert outcome(tmp_path / "killed" / "out") == outcome(tmp_path / "whole" / "out")
    assert not damaged(tmp_path / "killed")


PARENT = """\
import multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor

from microexpr.processes import exit_with_parent
from microexpr.train.stacked import one_thread_while_parent_lives


def work(path):
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(120)  # a long stacked part


if __name__ == "__main__":
    setups = {"stacked": one_thread_while_parent_lives, "plain": exit_with_parent}
    setup = setups.get(sys.argv[2])
    with ProcessPoolExecutor(
        1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=setup,
        initargs=(os.getpid(), 0.1) if setup else (),
    ) as pool:
        pool.submit(work, sys.argv[1])
        time.sleep(120)
"""

# `prepare`'s own pool, its per-sample work made slow (a worker runs this file's top level
# too, so the patched function exists there).
PREPARING_PARENT = """\
import os, sys, time

from microexpr.preprocess import cache


def slow(sample, feature_cache):
    path = sys.argv[1]
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(120)  # a long preprocessing step
    return sample.id, None


cache.process_one = slow

if __name__ == "__main__":
    from pathlib import Path

    from microexpr.config import PreprocessConfig
    from microexpr.datasets import load
    from microexpr.synth import write_synthetic

    root = Path(sys.argv[1]).parent
    write_synthetic("casme2", root / "data", 2, 1, size=96, seed=1, n_frames=24)
    samples = load("casme2", root / "data")
    config = PreprocessConfig(pipeline="flow_image")
    cache.prepare(samples, config, root / "cache", workers=2, progress=False)
"""


def _alive(pid: int) -> bool:
    """A process that has not exited (a zombie awaiting its reaper counts as exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.parametrize(
    ("script_text", "mode", "watched"),
    [
        (PARENT, "stacked", True),
        (PARENT, "plain", True),
        (PARENT, "none", False),
        (PREPARING_PARENT, "prepare", True),
    ],
    ids=["stacked-engine", "exit-with-parent", "control", "prepare"],
)
def test_pool_workers_exit_when_their_parent_is_killed(tmp_path, script_text, mode, watched):
    """The stacked engine's and ``prepare``'s workers watch their parent: SIGKILL the parent
    and its worker is gone within seconds; without the watch (the control) it computes on."""
    script, pid_file = tmp_path / "parent.py", tmp_path / "worker.pid"
    script.write_text(script_text)
    parent = subprocess.Popen([sys.executable, str(script), str(pid_file), mode])
    try:
        deadline = time.monotonic() + 120
        while not pid_file.exists():
            assert parent.poll() is None and time.monotonic() < deadline, "worker never started"
            time.sleep(0.1)
        worker = int(pid_file.read_text())
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 5
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _alive(worker) is not watched
    finally:
        parent.kill()
        if pid_file.exists() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
