"""Issue 14, item 1: the peer models (HTNet, SSSNet, RCN, HOOF + linear SVM) in the harness."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from microexpr import datasets, load_bundle, models
from microexpr.config import (
    ConfigError,
    ExperimentConfig,
    PreprocessConfig,
    TrainConfig,
    load_config,
)
from microexpr.models.classical import STRAIN, HoofSVM, U, V, hoof_features
from microexpr.models.htnet import Attention
from microexpr.preprocess.cache import source_key
from microexpr.preprocess.pipelines import region_mosaic, run_pipeline
from microexpr.recipe import resolve
from microexpr.samples import Sample
from microexpr.synth.replicas.flow_images import write_flat
from microexpr.train.classical import fit_classical
from microexpr.train.experiment import run_experiment
from microexpr.train.trainer import train_fold

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY_HTNET = {"dim": 8, "heads": 2, "block_repeats": [1, 1, 1]}
HEADS = {"htnet": "mlp_head.2.weight", "sssnet": "fc.weight"}  # others: classifier.weight


@functools.cache
def astronaut_face() -> np.ndarray:
    """scikit-image's astronaut, cropped to her face (68 landmarks are found on it)."""
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[40:200, 140:300].copy()


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# name, options, input side, parameters at 3 classes
PEERS = [
    ("htnet", {}, 28, 139_582_982),  # the public Model.py at main_HTNet.py's settings
    ("sssnet", {}, 64, 1_349_251),  # MEB's SSSNet: 1.33 M of it in the first linear layer
    ("sssnet", {"input_size": 28}, 28, 169_603),
    ("rcn_a", {}, 28, 15_331),  # the public RCN_A at 32 maps, pool 5
    ("rcn_s", {}, 28, 15_331),  # the public RCN_S less its never-called conv3 (9,312)
    ("rcn_w", {}, 28, 13_795),
    ("rcn_p", {}, 28, 13_795),
]


@pytest.mark.parametrize(("name", "options", "side", "params"), PEERS)
def test_peer_shapes_and_parameter_counts(name, options, side, params):
    model = models.create(name, num_classes=3, **options).eval()
    spec = models.info(name).input
    assert spec.size == (28 if name != "sssnet" else 64)
    with torch.no_grad():
        out = model(torch.rand(2, 3, side, side) * 255)
    assert out.shape == (2, 3)
    assert _count(model) == params


def test_every_peer_declares_its_input():
    kinds = {name: models.info(name).input for name in ("htnet", "sssnet", "rcn_a", "hoof_svm")}
    assert kinds["htnet"].kind == "flow_regions" and kinds["htnet"].scaling == "raw"
    assert kinds["sssnet"].kind == kinds["rcn_a"].kind == kinds["hoof_svm"].kind == "flow_image"
    assert kinds["rcn_a"].scaling == kinds["sssnet"].scaling == "unit"


def test_htnet_single_position_attention_is_the_value_projection():
    torch.manual_seed(0)
    attention = Attention(dim=12, heads=3).eval()
    x = torch.randn(4, 12, 1, 1)
    inner = attention.heads * attention.dim_head
    q, k, v = attention.to_qkv(x).flatten(2).split(inner, dim=1)
    weights = torch.softmax((q.transpose(1, 2) @ k) * attention.scale, dim=-1)  # all ones
    expected = attention.to_out((v @ weights.transpose(1, 2)).view(4, inner, 1, 1))
    torch.testing.assert_close(attention(x), expected)


def test_htnet_multi_position_attention_matches_a_reference():
    torch.manual_seed(0)
    attention = Attention(dim=8, heads=2).eval()
    x = torch.randn(3, 8, 2, 2)
    q, k, v = attention.to_qkv(x).chunk(3, dim=1)
    heads = [t.reshape(3, 2, 4, 4) for t in (q, k, v)]  # (n, heads, dim_head, positions)
    scores = torch.einsum("nhdi,nhdj->nhij", heads[0], heads[1]) * attention.scale
    out = torch.einsum("nhij,nhdj->nhdi", torch.softmax(scores, dim=-1), heads[2])
    torch.testing.assert_close(attention(x), attention.to_out(out.reshape(3, 8, 2, 2)))


@pytest.mark.parametrize(
    ("name", "options", "side"),
    [
        ("htnet", TINY_HTNET, 28),
        ("sssnet", {}, 64),
        ("rcn_a", {}, 28),
        ("rcn_s", {}, 28),
        ("rcn_w", {}, 28),
        ("rcn_p", {}, 28),
    ],
)
def test_one_training_step_updates_the_classifier(name, options, side):
    torch.manual_seed(0)
    model = models.create(name, num_classes=3, **options)
    head = HEADS.get(name, "classifier.weight")
    before = model.state_dict()[head].clone()
    x, y = torch.rand(16, 3, side, side), torch.arange(16) % 3
    cfg = TrainConfig(epochs=1, batch_size=16, lr=1e-2, optimizer="sgd", device="cpu")
    train_fold(model, (x, y), cfg, num_classes=3, progress=False)
    after = model.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert not torch.equal(before, after[head])


@pytest.mark.parametrize(
    ("config", "model", "kind", "pipeline"),
    [
        ("htnet.yaml", "htnet", "flow_regions", "flow_regions"),
        ("sssnet.yaml", "sssnet", "flow_image", None),
        ("rcn.yaml", "rcn_a", "flow_image", None),
        ("classical_hoof_svm.yaml", "hoof_svm", "flow_image", None),
    ],
)
def test_peer_config_resolves(config, model, kind, pipeline):
    plan = resolve(load_config(CONFIGS / config, ["train.device=cpu"]))
    assert plan.model == model and plan.input.kind == kind
    assert (plan.preprocess.pipeline if plan.preprocess else None) == pipeline
    assert plan.protocol.name == "composite_loso" and plan.classes == (
        "negative",
        "positive",
        "surprise",
    )
    if model == "htnet":  # the public recipe, honest: fixed epochs
        assert (plan.train.epochs, plan.train.batch_size, plan.train.lr) == (800, 256, 5e-5)
        assert plan.train.group_by_label and not plan.train.shuffle


def test_flow_regions_need_a_reader_that_has_flow_and_faces_or_clips():
    cfg = ExperimentConfig.model_validate(
        {"data": {"name": "image_folder", "taxonomy": "fer-7"}, "model": {"name": "htnet"}}
    )
    with pytest.raises(ConfigError, match="flow_regions needs clips"):
        resolve(cfg)


def test_region_mosaic_tiles_the_four_crops_and_clamps_the_centres():
    image = np.arange(28 * 28 * 3, dtype=np.int64).reshape(28, 28, 3)
    centres = np.array([[10.7, 9.2], [20.0, 10.0], [2.0, 30.0], [18.0, 22.0]], np.float32)
    mosaic = region_mosaic(image, centres)
    assert mosaic.shape == (28, 28, 3)
    np.testing.assert_array_equal(mosaic[:14, :14], image[2:16, 3:17])  # x 10 -> cols 3..16
    np.testing.assert_array_equal(mosaic[:14, 14:], image[3:17, 13:27])
    np.testing.assert_array_equal(mosaic[14:, :14], image[14:28, 0:14])  # clamped to [7, 21]
    np.testing.assert_array_equal(mosaic[14:, 14:], image[14:28, 11:25])  # y 22 -> 21


def test_flow_regions_pipeline_places_the_regions_from_the_apex_face(tmp_path):
    flow = np.random.default_rng(0).integers(0, 256, (28, 28, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "flow.png"), flow)
    cv2.imwrite(str(tmp_path / "face.png"), astronaut_face())
    sample = Sample(
        "s_1",
        "casme2",
        "s",
        "negative",
        frames=(tmp_path / "face.png",),
        path=tmp_path / "flow.png",
    )
    arrays = run_pipeline(sample, PreprocessConfig(pipeline="flow_regions"))
    centres = arrays["centres"]
    assert arrays["image"].shape == (28, 28, 3) and arrays["image"].dtype == np.uint8
    assert centres[0, 0] < centres[1, 0] and centres[2, 0] < centres[3, 0]  # left, right
    assert centres[:2, 1].max() < centres[2:, 1].min()  # eyes above the mouth corners
    np.testing.assert_array_equal(arrays["image"], region_mosaic(flow, centres))


def test_the_cache_key_of_a_flow_image_sample_follows_its_flow_image(tmp_path):
    for name in ("flow.png", "face.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((28, 28, 3), np.uint8))
    sample = Sample("a", "casme2", "s", "negative", (tmp_path / "face.png",), tmp_path / "flow.png")
    before = source_key(sample)
    os.utime(tmp_path / "flow.png", ns=(0, 10**9))
    assert source_key(sample) != before


def _composite_with_faces(records, root: Path) -> Path:
    write_flat(records, root)
    faces = root / "combined_datasets_whole"
    faces.mkdir()
    for subject, clip, _, _ in records:
        cv2.imwrite(str(faces / f"{subject}_{clip}.jpg"), astronaut_face())
    return root


def test_htnet_trains_through_the_harness_on_flow_regions(tmp_path, flow_records):
    root = _composite_with_faces(flow_records, tmp_path / "data")
    raw = load_config(CONFIGS / "htnet.yaml").model_dump()
    raw["data"]["root"] = str(root)
    raw["model"]["options"] = TINY_HTNET
    raw["train"].update(epochs=1, device="cpu")
    metrics = run_experiment(
        ExperimentConfig.model_validate(raw), tmp_path / "out", False, max_folds=2, save_model=False
    )
    assert metrics["overall"]["n"] > 0


def test_hoof_features_bin_motion_by_direction_and_block():
    assert (STRAIN, V, U) == (0, 1, 2)  # the composite's flow images as OpenCV reads them
    x = torch.full((1, 3, 28, 28), 128.0)
    x[0, U, :4, :4] = 228.0  # u > its median in the top-left block: motion to the right
    features = hoof_features(x, grid=7, bins=8)
    assert features.shape == (1, 7 * 7 * 9)
    hist = features[0, : 7 * 7 * 8].view(49, 8)
    assert hist.sum() == pytest.approx(1.0)
    assert hist[0, 0] == pytest.approx(1.0)  # block 0, orientation bin 0 (rightward)
    torch.testing.assert_close(features[0, 7 * 7 * 8 :], torch.full((49,), 128 / 255))


def test_linear_svm_learns_motion_direction_and_predicts_its_own_decision():
    rng = np.random.default_rng(0)
    images, labels = [], []
    for i in range(60):
        label = i % 3
        image = np.full((3, 28, 28), 128.0)
        angle = 2 * np.pi * label / 3
        image[U, 8:20, 8:20] += 60 * np.cos(angle) + rng.normal(0, 5)
        image[V, 8:20, 8:20] += 60 * np.sin(angle) + rng.normal(0, 5)
        images.append(image)
        labels.append(label)
    x, y = torch.tensor(np.array(images), dtype=torch.float32), torch.tensor(labels)
    model = fit_classical(HoofSVM(), x, y, TrainConfig(device="cpu"))
    assert (model(x).argmax(1) == y).all()


def test_classical_peer_runs_through_the_harness_and_its_bundle_loads(tmp_path, flow_records):
    write_flat(flow_records, tmp_path / "data")
    raw = load_config(CONFIGS / "classical_hoof_svm.yaml").model_dump()
    raw["data"]["root"] = str(tmp_path / "data")
    out = tmp_path / "out"
    metrics = run_experiment(ExperimentConfig.model_validate(raw), out, False)
    assert metrics["overall"]["n"] == len(flow_records)
    bundle = load_bundle(out / "model")
    samples = datasets.load("flow_images", tmp_path / "data")
    table = bundle.predict(samples)
    assert len(table) == len(samples) and set(table["label"]) <= set(bundle.classes)
    weight = bundle.members[0].weight
    assert weight.abs().sum() > 0  # the fitted hyperplanes, saved and loaded as safetensors


@pytest.mark.parametrize(
    ("config", "overrides"),
    [
        ("sssnet.yaml", []),
        ("rcn.yaml", []),
        ("rcn.yaml", ["model.name=rcn_s"]),
        ("rcn.yaml", ["model.name=rcn_w"]),
        ("rcn.yaml", ["model.name=rcn_p"]),
    ],
)
def test_peer_config_runs_one_fold_for_one_epoch(tmp_path, flow_records, config, overrides):
    write_flat(flow_records, tmp_path / "data")
    extra = [f"data.root={tmp_path / 'data'}", "train.epochs=1", "train.device=cpu"]
    cfg = load_config(CONFIGS / config, [*extra, *overrides])
    metrics = run_experiment(cfg, tmp_path / "out", False, max_folds=1, save_model=False)
    assert metrics["overall"]["n"] == 4  # one subject's four clips, scored once
    assert len(list((tmp_path / "out" / "folds").glob("*.csv"))) == 1


def test_every_peer_is_registered():
    names = set(models.list_models())
    assert {"htnet", "sssnet", "rcn_a", "rcn_s", "rcn_w", "rcn_p", "hoof_svm"} <= names
