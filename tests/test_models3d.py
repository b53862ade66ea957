"""Shapes and training behaviour of the 3-D clip models (seeds S3 and S4)."""

from __future__ import annotations

import pytest
import torch

from microexpr import losses, models
from microexpr.models.c3d_vgg import C3DVGG
from microexpr.models.resnet3d_ms import MSResNet3d, fuse_heads

TINY_MS = {"layers": (1, 1, 1, 1), "widths": (4, 8, 8, 8), "stem_width": 8}


def test_registry_declares_clip_inputs():
    vgg, ms = models.info("c3d_vgg").input, models.info("ms_resnet3d50").input
    assert (vgg.kind, vgg.size, vgg.in_chans, vgg.num_frames) == ("clip", 128, 3, 16)
    assert (ms.kind, ms.size, ms.in_chans, ms.num_frames) == ("flow_clip", 112, 3, 16)
    assert (vgg.scaling, ms.scaling) == ("unit", "flow_max")


def test_c3d_vgg_flattens_2048_features_into_1024_dense_on_seed_clip():
    model = models.create("c3d_vgg", num_classes=5).eval()
    assert isinstance(model, C3DVGG)
    assert model.feature_shape == (128, 1, 4, 4)
    assert (model.fc.in_features, model.fc.out_features) == (2048, 1024)
    clip = torch.zeros(1, 3, 16, 128, 128)
    with torch.no_grad():
        features = model.features(clip)
        logits = model(clip)
    assert features.shape == (1, 128, 1, 4, 4)
    assert logits.shape == (1, 5)


def test_c3d_vgg_pools_match_the_seed_plan():
    model = models.create("c3d_vgg", num_classes=4)
    pools = [m.kernel_size for m in model.features if isinstance(m, torch.nn.MaxPool3d)]
    assert pools == [(1, 2, 2)] + [(2, 2, 2)] * 4
    convs = [m.out_channels for m in model.features if isinstance(m, torch.nn.Conv3d)]
    assert convs == [32, 32, 64, 64, 128, 128, 128, 128]


def test_c3d_vgg_small_clip_reaches_one_frame():
    model = models.create(
        "c3d_vgg", num_classes=3, num_frames=6, input_size=24, widths=(2,) * 8, hidden=8
    )
    assert model.feature_shape == (2, 1, 1, 1)
    assert model(torch.zeros(2, 3, 6, 24, 24)).shape == (2, 3)


@pytest.mark.slow
def test_ms_resnet3d50_full_size_gives_batch_by_classes():
    model = models.create("ms_resnet3d50", num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 16, 112, 112)).shape == (2, 3)


def test_ms_resnet3d50_is_a_resnet50_skeleton():
    model = models.create("ms_resnet3d50", num_classes=3)
    assert isinstance(model, MSResNet3d)
    depths = [len(s) for s in (model.stage1, model.stage2, model.stage3, model.stage4)]
    assert depths == [3, 4, 6, 3]
    assert model.num_features == 2048


def test_ms_resnet3d_tiny_flow_clip_shapes_by_mode():
    model = models.create("ms_resnet3d50", num_classes=4, **TINY_MS)
    clip = torch.randn(2, 3, 16, 112, 112)
    model.train()
    assert model(clip).shape == (2, 3, 4)  # one row per head for multi_head_ce
    model.eval()
    with torch.no_grad():
        fused = model(clip)
    assert fused.shape == (2, 4)
    assert torch.allclose(torch.softmax(fused, 1).sum(1), torch.ones(2), atol=1e-5)


def test_fused_output_is_mean_head_probability():
    logits = torch.randn(5, 3, 4)
    expected = torch.softmax(logits, dim=2).mean(dim=1)
    assert torch.allclose(torch.softmax(fuse_heads(logits), dim=1), expected, atol=1e-6)


def test_multi_head_ce_adds_head_losses():
    criterion = losses.create_loss("multi_head_ce", num_classes=4, weights=(1.0, 0.5, 2.0))
    logits, target = torch.randn(6, 3, 4), torch.randint(0, 4, (6,))
    ce = torch.nn.functional.cross_entropy
    expected = ce(logits[:, 0], target) + 0.5 * ce(logits[:, 1], target)
    expected = expected + 2.0 * ce(logits[:, 2], target)
    assert torch.allclose(criterion(logits, target), expected)
    assert torch.allclose(criterion(logits[:, 0], target), ce(logits[:, 0], target))
    with pytest.raises(ValueError, match="3 weights for 2 heads"):
        criterion(logits[:, :2], target)


def test_ms_resnet3d_trains_with_multi_head_loss():
    torch.manual_seed(0)
    model = models.create("ms_resnet3d50", num_classes=2, drop_rate=0.0, **TINY_MS)
    criterion = losses.create_loss("multi_head_ce", num_classes=2)
    x, y = torch.randn(4, 3, 4, 16, 16), torch.tensor([0, 1, 0, 1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    first = None
    for _ in range(10):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        first = first if first is not None else loss.item()
    assert loss.item() < first


@pytest.mark.parametrize(
    ("name", "model", "taxonomy"),
    [
        ("seed003_casme", "c3d_vgg", "casme-4"),
        ("seed003_casme2", "c3d_vgg", "casme2-5"),
        ("seed004_smic", "ms_resnet3d50", "smic-3"),
        ("seed004_samm", "ms_resnet3d50", "samm-5"),
        ("seed004_casme2", "ms_resnet3d50", "casme2-5"),
    ],
)
def test_seed_configs_validate(name, model, taxonomy):
    from pathlib import Path

    from microexpr import labels
    from microexpr.config import load_config

    cfg = load_config(Path(__file__).parents[1] / "configs" / f"{name}.yaml")
    assert (cfg.model.name, cfg.data.taxonomy) == (model, taxonomy)
    labels.get(cfg.data.taxonomy)  # the taxonomy exists
    if model == "c3d_vgg":  # seed S3's recipe
        assert (cfg.train.optimizer, cfg.train.lr, cfg.train.momentum) == ("sgd", 1e-4, 0.9)
        assert cfg.train.batch_size == 16 and cfg.clip.expand and cfg.clip.num_frames == 16
    else:
        assert cfg.train.loss == "multi_head_ce" and cfg.train.augment is None
