"""Shared fixtures: where the real data would be, small flow-image sets, a tiny bundle."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Any Ray the tests start stays on loopback (see train/ray_backend.stay_on_loopback).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

REPO = Path(__file__).resolve().parents[1]
COMPOSITE = REPO.parent / "shared" / "data" / "megc2019_composite"


@pytest.fixture(autouse=True)
def feature_cache(tmp_path_factory, monkeypatch) -> Path:
    """Runs keep their preprocessing in a per-test-session folder, never in ~/.cache."""
    root = tmp_path_factory.getbasetemp() / "feature-cache"
    monkeypatch.setenv("MICROEXPR_CACHE", str(root))
    return root


@pytest.fixture
def composite_root() -> Path:
    """The shared real MEGC2019 composite set; tests that need it skip when it is absent."""
    if not (COMPOSITE / "combined_3_class2_for_optical_flow.csv").is_file():
        pytest.skip(f"real composite data not found at {COMPOSITE}")
    return COMPOSITE


@pytest.fixture
def flow_records() -> list[tuple[str, str, str, np.ndarray]]:
    """Random 28x28 flow images for 6 subjects of three databases, every class per subject."""
    rng = np.random.default_rng(0)
    subjects = ["sub01", "sub02", "s1", "s02", "006", "017"]
    classes = ["negative", "positive", "surprise"]
    return [
        (subject, f"clip{k}", classes[k % 3], rng.integers(0, 256, (28, 28, 3), dtype=np.uint8))
        for subject in subjects
        for k in range(4)
    ]


def train_tiny_bundle(run_dir: Path) -> Path:
    """A flow-image STSTNet bundle trained for one epoch on random flow images of three
    subjects (one fold scored): ``run_dir/model``. For tests that need any real bundle."""
    from microexpr.config import config_from
    from microexpr.synth.replicas.flow_images import write_flat
    from microexpr.train.experiment import run_experiment

    rng = np.random.default_rng(0)
    classes = ("negative", "positive", "surprise")
    records = [
        (f"s{s}", f"s{s}_{k}", classes[k % 3], rng.integers(0, 256, (28, 28, 3), np.uint8))
        for s in range(3)
        for k in range(3)
    ]
    data = write_flat(records, run_dir.parent / f"{run_dir.name}_flow").parent
    cfg = config_from({"data": {"root": str(data)}, "train": {"epochs": 1, "batch_size": 8}})
    run_experiment(cfg, run_dir, progress=False, max_folds=1)
    return run_dir / "model"
