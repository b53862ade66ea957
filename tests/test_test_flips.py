"""Test-time flips (``train.augment.test_hflip``): every prediction is the mean of the
probabilities of the input and of its mirror image, u reflected as a training flip reflects
it, in the per-fold and stacked engines, a bundle and its ONNX export alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_engines import FOLDS, _data
from test_export import assert_parity, trained_flow_bundle

from microexpr import load_bundle
from microexpr.config import AugmentConfig, DataConfig, ExperimentConfig, TrainConfig
from microexpr.export import export_onnx, input_batch, random_inputs
from microexpr.inference import mirror, predict_proba
from microexpr.models.flow_nets import ststnet
from microexpr.preprocess.pipelines import region_mosaic
from microexpr.recipe import resolve
from microexpr.train.augment import augment_batch
from microexpr.train.stacked import predict_stacked, train_stacked
from microexpr.train.trainer import train_fold

REFLECT_U = (2, 127.5)  # the composite's flow images: strain, v, u in 0-255
TEST_FLIPS = AugmentConfig(test_hflip=True, flip_reflect=REFLECT_U)


def test_the_mirror_is_the_training_flip_and_undoes_itself():
    images, _ = _data(6)
    mirrored = mirror(images, REFLECT_U)
    assert torch.equal(mirrored[:, :2], images[:, :2].flip(-1))
    assert torch.allclose(mirrored[:, 2], 255.0 - images[:, 2].flip(-1))
    assert torch.allclose(mirror(mirrored, REFLECT_U), images, atol=1e-4)
    always = AugmentConfig(hflip=1.0, flip_reflect=REFLECT_U)
    assert torch.equal(augment_batch(images, always), mirrored)
    assert torch.equal(mirror(images, None), images.flip(-1))


def test_mirroring_htnets_region_mosaic_is_the_mosaic_of_the_mirrored_face():
    """The 2 x 2 mosaic keeps the regions in image order (left eye, right eye; left, right
    mouth corner), so flipping it whole swaps the two sides as a mirrored face would: each
    tile becomes the flipped crop of the other side's region."""
    rng = np.random.default_rng(0)
    side = 28
    flow = rng.integers(0, 256, (side, side, 3), np.uint8)
    centres = np.array([[9, 9], [19, 10], [10, 20], [17, 21]], np.float32)  # not symmetric
    mirrored_face = flow[:, ::-1].copy()
    mirrored_face[..., 2] = 255 - mirrored_face[..., 2]  # u turns over
    # A mirrored face's image-left region is the original image-right one, at side - x.
    mirrored_centres = centres[[1, 0, 3, 2]] * (-1, 1) + (side, 0)
    expected = region_mosaic(mirrored_face, mirrored_centres)
    mosaic = torch.from_numpy(region_mosaic(flow, centres)).permute(2, 0, 1)[None].float()
    got = mirror(mosaic, REFLECT_U)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got, expected.astype(np.float32))


def test_predictions_average_the_image_and_its_mirror():
    torch.manual_seed(0)
    model = ststnet(3, 3)
    images = _data(12)[0] / 255  # in [0, 1]: a random network's softmax is not saturated
    unit = (2, 0.5)
    plain = predict_proba(model, images, device="cpu")
    flipped = predict_proba(
        model, images, device="cpu", augment=TEST_FLIPS.model_copy(update={"flip_reflect": unit})
    )
    expected = (plain + predict_proba(model, mirror(images, unit), device="cpu")) / 2
    np.testing.assert_allclose(flipped, expected, atol=1e-6)
    assert not np.allclose(flipped, plain, atol=1e-4)
    np.testing.assert_allclose(flipped.sum(1), 1.0, atol=1e-5)


def test_the_stacked_engine_averages_the_mirror_as_one_model_does():
    images, targets = _data()
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, device="cpu")
    net = train_stacked(images, targets, FOLDS, cfg, 3, None, False)
    cpu = torch.device("cpu")
    plain = predict_stacked(net, images, FOLDS, cpu)
    on_mirror = predict_stacked(net, mirror(images, REFLECT_U), FOLDS, cpu)
    flipped = predict_stacked(net, images, FOLDS, cpu, TEST_FLIPS)
    for both, a, b in zip(flipped, plain, on_mirror, strict=True):
        np.testing.assert_allclose(both, (a + b) / 2, atol=1e-6)
        assert not np.allclose(both, a, atol=1e-4)
    for i, fold in enumerate(FOLDS):  # fold i's own network, read as one model
        alone = predict_proba(net.fold_model(i), images[list(fold.test)], augment=TEST_FLIPS)
        np.testing.assert_allclose(flipped[i], alone, atol=1e-5)


def test_test_flips_alone_leave_training_as_it_is():
    images, targets = _data(16)
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, device="cpu", shuffle=True)
    trained = []
    for augment in (None, TEST_FLIPS):
        torch.manual_seed(0)
        model = ststnet(3, 3)
        train_fold(
            model, (images, targets), cfg.model_copy(update={"augment": augment}), 3, progress=False
        )
        trained.append(model)
    for a, b in zip(trained[0].parameters(), trained[1].parameters(), strict=True):
        assert torch.equal(a, b)


def test_test_flips_alone_get_the_reflection_of_u():
    test_only = TrainConfig(augment=AugmentConfig(test_hflip=True))
    plan = resolve(ExperimentConfig(data=DataConfig(root="x"), train=test_only))
    assert plan.train.augment.flip_reflect == REFLECT_U and not plan.train.augment.hflip


def test_a_bundle_and_its_export_average_the_mirror(tmp_path, flow_records):
    train = {"epochs": 1, "batch_size": 8, "lr": 1e-3, "augment": {"test_hflip": True}}
    source = trained_flow_bundle(tmp_path, flow_records, train=train)
    bundle = load_bundle(source)
    assert bundle.plan.train.augment.test_hflip
    inputs = random_inputs(bundle.plan, 8)
    images = input_batch(inputs)
    (member,) = bundle.members
    plain = predict_proba(member, images, device="cpu")
    on_mirror = predict_proba(member, mirror(images, REFLECT_U), device="cpu")
    np.testing.assert_allclose(bundle.probabilities(inputs), (plain + on_mirror) / 2, atol=1e-6)
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    export_onnx(source, tmp_path / "onnx")
    assert_parity(source, tmp_path / "onnx")
