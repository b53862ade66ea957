"""Batch augmentation (images and clips, mixup), the plateau schedule's training-only validation
split, and both wired into train_fold."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from microexpr.config import AugmentConfig, PlateauConfig, TrainConfig
from microexpr.train import trainer
from microexpr.train.augment import augment_batch, mix_batch
from microexpr.train.schedule import validation_split
from microexpr.train.trainer import train_fold


def test_no_augmentation_returns_the_batch():
    x = torch.rand(3, 2, 8, 8)
    assert torch.equal(augment_batch(x, AugmentConfig()), x)


def test_flip_always_mirrors_images_and_clips():
    x = torch.rand(2, 3, 5, 8, 8)
    assert torch.equal(augment_batch(x, AugmentConfig(hflip=1.0)), x.flip(-1))
    images = torch.rand(2, 1, 8, 8)
    flipped = augment_batch(images, AugmentConfig(hflip=1.0, rotation=1e-6))
    assert torch.allclose(flipped, images.flip(-1), atol=1e-4)


def test_a_flip_of_a_flow_input_negates_its_horizontal_flow():
    flow = torch.randint(0, 256, (4, 3, 6, 6)).float()  # u, v, strain min-max scaled 0..255
    cfg = AugmentConfig(hflip=1.0, flip_reflect=(0, 127.5))
    for flipped in (
        augment_batch(flow, cfg),
        augment_batch(flow, cfg.model_copy(update={"rotation": 1e-6})),
    ):
        torch.testing.assert_close(flipped[:, 0], 255 - flow[:, 0].flip(-1), atol=1e-3, rtol=0)
        torch.testing.assert_close(flipped[:, 1:], flow[:, 1:].flip(-1), atol=1e-3, rtol=0)
    # min-max scaling of -u is 255 minus that of u, so the reflection is exact for such images
    u = torch.randn(6, 6)
    scaled = lambda a: (a - a.min()) / (a.max() - a.min()) * 255  # noqa: E731
    torch.testing.assert_close(scaled(-u), 255 - scaled(u), atol=1e-4, rtol=0)
    clips = torch.rand(3, 3, 4, 6, 6) * 2 - 1  # flow_max clips: u reflects about 0
    flipped = augment_batch(clips, AugmentConfig(hflip=1.0, flip_reflect=(0, 0.0)))
    assert torch.equal(flipped[:, 0], -clips[:, 0].flip(-1))
    assert torch.equal(flipped[:, 1:], clips[:, 1:].flip(-1))
    none = augment_batch(flow, AugmentConfig(hflip=0.0, flip_reflect=(0, 127.5)))
    assert torch.equal(none, flow)


def test_grayscale_equalises_colour_channels_only():
    x = torch.rand(4, 3, 6, 6)
    gray = augment_batch(x, AugmentConfig(grayscale=1.0))
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    expected = 0.114 * x[:, 0] + 0.587 * x[:, 1] + 0.299 * x[:, 2]
    assert torch.allclose(gray[:, 0], expected)
    flow = torch.rand(4, 2, 6, 6)
    assert torch.equal(augment_batch(flow, AugmentConfig(grayscale=1.0)), flow)


def test_clip_frames_share_one_draw_and_clips_differ():
    torch.manual_seed(0)
    frame = torch.rand(1, 3, 1, 24, 24)
    clips = frame.expand(2, 3, 7, 24, 24).contiguous()
    cfg = AugmentConfig(hflip=0.5, rotation=30, translate=0.1, scale=(0.8, 1.2), shear=10)
    out = augment_batch(clips, cfg)
    assert out.shape == clips.shape
    assert torch.allclose(out, out[:, :, :1].expand_as(out))  # same transform on every frame
    assert not torch.allclose(out[0], out[1])  # one draw per clip


def test_rotation_turns_about_the_centre():
    torch.manual_seed(1)
    x = torch.zeros(8, 1, 33, 33)
    x[:, :, 16, 16] = 1.0
    x[:, :, 16, 28] = 1.0  # a dot 12 px right of the centre
    out = augment_batch(x, AugmentConfig(rotation=90))
    assert torch.all(out[:, 0, 15:18, 15:18].sum((1, 2)) > 0.5)  # the centre stays
    for image in out[:, 0]:
        ys, xs = torch.nonzero(image > 0.2, as_tuple=True)
        far = (ys - 16) ** 2 + (xs - 16) ** 2 > 36
        radius = torch.sqrt(((ys[far] - 16.0) ** 2 + (xs[far] - 16.0) ** 2).float()).mean()
        assert abs(float(radius) - 12) < 1.5  # the dot stays 12 px out, in any direction


def test_validation_split_holds_out_whole_subjects():
    groups = [f"s{i // 4}" for i in range(40)]
    fit, val = validation_split(40, 0.2, seed=0, groups=groups)
    assert len(fit) + len(val) == 40 and not set(fit) & set(val)
    assert not {groups[i] for i in fit} & {groups[i] for i in val}


def test_validation_split_stratifies_by_label_without_subjects():
    labels = [0] * 20 + [1] * 10 + [2] * 10
    fit, val = validation_split(40, 0.25, seed=0, labels=labels)
    assert len(val) == math.ceil(0.25 * 40)
    assert sorted(np.bincount(np.array(labels)[val])) == [2, 3, 5]
    with pytest.raises(ValueError, match="val_fraction"):
        validation_split(10, 1.5, seed=0)


def test_train_fold_augments_and_validates_on_training_samples_only(monkeypatch):
    seen: list[int] = []
    real = trainer._mean_loss

    def spy(model, criterion, data, *args):
        seen.append(len(data))
        return real(model, criterion, data, *args)

    monkeypatch.setattr(trainer, "_mean_loss", spy)
    augmented: list[tuple] = []
    real_augment = trainer.augment_batch
    monkeypatch.setattr(
        trainer, "augment_batch", lambda x, cfg: augmented.append(x.shape) or real_augment(x, cfg)
    )
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    x, y = torch.rand(30, 1, 8, 8), torch.arange(30) % 3
    cfg = TrainConfig(
        epochs=3,
        batch_size=8,
        lr=1e-2,
        augment=AugmentConfig(hflip=0.5, rotation=10),
        plateau=PlateauConfig(val_fraction=0.2, patience=0),
    )
    train_fold(model, (x, y), cfg, 3, progress=False, groups=[i // 3 for i in range(30)])
    assert seen == [6, 6, 6]  # two of ten subjects, checked once per epoch
    assert len(augmented) == 3 * 3 and all(s[1:] == (1, 8, 8) for s in augmented)


def test_a_last_batch_of_one_sample_is_dropped():
    # BatchNorm after global pooling sees one value per channel in a batch of one
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.BatchNorm2d(4),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    )
    x, y = torch.rand(9, 1, 8, 8), torch.arange(9) % 3
    train_fold(model, (x, y), TrainConfig(epochs=1, batch_size=4), 3, progress=False)
    assert int(model[2].num_batches_tracked) == 2


def test_mixup_blends_each_sample_with_one_partner_at_one_weight():
    torch.manual_seed(0)
    x = torch.rand(6, 2, 4, 4)
    y = torch.arange(6)
    mixed, partners, lam = mix_batch(x, y, alpha=0.4)
    assert 0.0 <= lam <= 1.0
    assert sorted(partners.tolist()) == list(range(6))  # a permutation of the batch
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[partners])


def test_train_fold_with_mixup_trains_on_the_blended_loss(monkeypatch):
    # At weight 0 the loss is all the partners': training equals plain training on their labels.
    def fresh():
        torch.manual_seed(1)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))

    x, y = torch.rand(16, 1, 8, 8), torch.arange(16) % 3
    shifted = (y + 1) % 3
    draws: list[int] = []
    monkeypatch.setattr(
        trainer, "mix_batch", lambda xb, yb, a: (draws.append(a) or xb, (yb + 1) % 3, 0.0)
    )
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-2, augment=AugmentConfig(mixup=0.2))
    mixed = train_fold(fresh(), (x, y), cfg, 3, progress=False)
    plain = train_fold(
        fresh(), (x, shifted), TrainConfig(epochs=2, batch_size=8, lr=1e-2), 3, progress=False
    )
    assert draws == [0.2] * 4
    for a, b in zip(mixed.parameters(), plain.parameters(), strict=True):
        assert torch.allclose(a, b)


def test_mixup_is_refused_in_a_cuda_graph_and_by_the_stacked_engine():
    from microexpr.recipe import supports_stacking

    with pytest.raises(ValueError, match="CUDA graph would freeze"):
        TrainConfig(cuda_graph=True, augment=AugmentConfig(mixup=0.2))
    assert supports_stacking("ststnet", TrainConfig(augment=AugmentConfig(hflip=0.5)))
    assert not supports_stacking("ststnet", TrainConfig(augment=AugmentConfig(mixup=0.2)))
