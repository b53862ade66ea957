"""Every 2-D seed config (seeds 000-002 and their composite variants) loads and trains one
epoch end to end on a small synthetic replica of the data it names."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from microexpr.config import ExperimentConfig, load_config
from microexpr.inputs import model_inputs
from microexpr.recipe import resolve
from microexpr.synth import write_synthetic
from microexpr.synth.replicas.flow_images import write_flat
from microexpr.train.experiment import load_samples, run_experiment

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("seed00[012]_*.yaml"))


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_image_folder(root: Path, classes: tuple[str, ...]) -> None:
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("test", 2)):
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                cv2.imwrite(str(folder / f"{i}.jpg"), rng.integers(0, 255, (40, 40, 3), np.uint8))


def synthetic_root(cfg: ExperimentConfig, root: Path) -> Path:
    """A replica of the config's dataset: two subjects (so LOSO has two folds)."""
    name = cfg.data.name
    if name == "image_folder":
        write_image_folder(root, ("expressionless", "pout", "smile", "laugh"))
    elif name == "flow_images":
        write_synthetic("flow", root, n_subjects=2, clips_per_subject=4, size=28)
        # the apex faces beside the flow images, as the composite set has them
        faces = root / "combined_datasets_whole"
        faces.mkdir()
        rng = np.random.default_rng(1)
        for face in pd.read_csv(root / "combined_3_class2_for_optical_flow.csv")["imagename"]:
            cv2.imwrite(str(faces / face), rng.integers(0, 255, (48, 48, 3), np.uint8))
    elif name == "ckplus":
        # three subjects: every class needs three samples for the stratified 3-fold split;
        # frames large enough for the face detector (the Plan aligns on 68 landmarks)
        write_synthetic("ckplus", root, n_subjects=3, clips_per_subject=7, size=96, n_frames=4)
    else:
        write_synthetic(name, root, n_subjects=2, clips_per_subject=5, size=96, n_frames=4)
    return root


def test_every_seed_config_is_here():
    stems = {p.stem for p in CONFIGS}
    assert {"seed000_expression4", "seed001_fer2013", "seed001_ckplus", "seed002_casme2"} <= stems
    assert {"seed000_composite", "seed001_composite", "seed002_composite"} <= stems
    assert "seed002_composite_flow" in stems


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_seed_config_trains_one_epoch_on_synthetic_data(path, tmp_path):
    cfg = load_config(path)
    raw = cfg.model_dump(mode="json")
    raw["data"]["root"] = str(synthetic_root(cfg, tmp_path / "data"))
    raw["train"].update(epochs=1, batch_size=4, device="cpu")
    raw["model"]["input_size"] = 32  # tiny; the recipe itself is the config's
    metrics = run_experiment(ExperimentConfig.model_validate(raw), tmp_path / "out", False)
    predictions = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert len(predictions) == metrics["overall"]["n"] > 0
    assert 0.0 <= metrics["overall"]["accuracy"] <= 1.0
    assert (tmp_path / "out" / "report.md").is_file()


def test_model_input_kind_reads_the_flow_images_in_place_of_the_faces(tmp_path, flow_records):
    """seed002_composite_flow.yaml's switch: a face model reads exactly what STSTNet reads."""
    write_flat(flow_records, tmp_path)
    faces = tmp_path / "combined_datasets_whole"
    faces.mkdir()
    for subject, clip, _, _ in flow_records:
        cv2.imwrite(str(faces / f"{subject}_{clip}.jpg"), np.full((28, 28, 3), 200, np.uint8))

    def images(model: dict) -> torch.Tensor:
        raw = {"data": {"root": str(tmp_path)}, "model": {"input_size": 28, **model}}
        plan = resolve(ExperimentConfig.model_validate(raw))
        assert plan.preprocess is None  # the reader's files are the inputs
        return model_inputs(load_samples(plan), plan).images

    face_images = images({"name": "se_resnext50_32x4d", "scaling": "raw"})
    flow_images = images({"name": "se_resnext50_32x4d", "input_kind": "flow_image"})
    assert torch.allclose(face_images, face_images[0, 0, 0, 0], atol=3)  # the grey faces
    ststnet = images({"name": "ststnet", "scaling": "imagenet"})
    assert torch.equal(flow_images, ststnet)  # the same files, the same scaling
    assert flow_images.std() > 0.3


def test_model_input_kind_is_refused_for_a_clip_model():
    raw = {"model": {"name": "c3d_vgg", "input_kind": "flow_image"}}
    with pytest.raises(ValueError, match="clip model"):
        resolve(ExperimentConfig.model_validate(raw))
