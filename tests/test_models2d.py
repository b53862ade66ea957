"""Seed 2-D models: published parameter counts, the seeds' attention formulas, and a forward
and backward pass of every model on 1-channel 96x96 input with 5 classes."""

from __future__ import annotations

import math

import pytest
import torch

from microexpr import models
from microexpr.models.attention import AFF, ECA, PSAModule, eca_kernel_size
from microexpr.models.backbones import feature_dim

MODELS_2D = [
    "densenet201_eca",
    "densenet121_eca",
    "densenet201",
    "densenet121",
    "psa_resnet50",
    "se_resnet50",
    "cbam_resnet50",
    "eca_resnet50",
    "aff_resnet50",
    "vgg16_bn",
    "mobilenetv2",
    "resnet50",
    "se_resnext50_32x4d",
    "resnext50_32x4d",
]
# Over ~3 s to build and run once on the shared 2-core CPU (138 M parameters): slow.
HEAVY = {"vgg16_bn"}


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on the contended 2-core machine two threads run several times
    slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


@pytest.mark.parametrize(
    ("name", "options", "millions"),
    [
        ("psa_resnet50", {}, 21.15),
        ("psa_resnet50", {"conv_groups": (1, 4, 8, 16)}, 22.56),
        ("se_resnext50_32x4d", {}, 27.56),
        ("densenet201", {}, 20.01),
        ("resnet50", {}, 25.56),
    ],
)
def test_parameter_counts_match_the_references(name, options, millions):
    model = models.create(name, num_classes=1000, in_chans=3, **options)
    assert n_params(model) == pytest.approx(millions, rel=0.01)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in MODELS_2D]
)
def test_forward_and_backward_on_gray_96(name):
    model = models.create(name, num_classes=5, in_chans=1)
    logits = model(torch.randn(2, 1, 96, 96))
    assert logits.shape == (2, 5)
    logits.logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


@pytest.mark.parametrize("name", ["densenet121_eca", "eca_resnet50", "mobilenetv2"])
@pytest.mark.parametrize("size", [48, 112])
def test_other_sizes_and_colour(name, size):
    model = models.create(name, num_classes=3, in_chans=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 3)


def test_return_features_keeps_state_dict_names():
    plain = models.create("se_resnext50_32x4d", num_classes=5, in_chans=1)
    hooked = models.create("se_resnext50_32x4d", num_classes=5, in_chans=1, return_features=True)
    assert plain.state_dict().keys() == hooked.state_dict().keys()
    hooked.load_state_dict(plain.state_dict())
    hooked.eval()
    plain.eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        logits, features = hooked(x)
        assert torch.allclose(logits, plain(x), atol=1e-5)
    assert features.shape == (2, feature_dim(hooked)) == (2, 2048)


def test_eca_kernel_is_the_nearest_odd_of_the_formula():
    for channels in (8, 64, 96, 128, 256, 512, 896, 1024, 1792, 1920, 2048, 4096):
        t = abs(math.log2(channels) / 2 + 0.5)
        k = eca_kernel_size(channels)
        assert k % 2 == 1
        assert abs(k - t) <= 1  # nearest odd number of t
        # ECA-Net's code: int(t), then +1 when even
        assert k == (int(t) if int(t) % 2 else int(t) + 1)
    assert eca_kernel_size(4) == 1  # the formula, where timm's layer would give 3
    assert ECA(1024).conv.kernel_size == (5,)


@pytest.mark.parametrize("position", ["before", "after"])
def test_densenet_eca_has_one_eca_per_dense_block(position):
    model = models.create("densenet121_eca", num_classes=4, eca_position=position)
    names = [name for name, _ in model.features.named_children()]
    for i in range(1, 5):
        block, eca = names.index(f"denseblock{i}"), names.index(f"eca{i}")
        assert eca == (block - 1 if position == "before" else block + 1)
    # DenseNet-121's first block takes 64 channels and gives 64 + 6 * 32 = 256
    channels = 64 if position == "before" else 256
    assert model.features.eca1.conv.kernel_size == (eca_kernel_size(channels),)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 96, 96)).shape == (1, 4)


def test_psa_groups_and_branch_weights_sum_to_one():
    module = PSAModule(64, 64, conv_groups=(2, 4, 8, 16))
    assert [getattr(module, f"conv_{i}").groups for i in range(1, 5)] == [2, 4, 8, 16]
    assert [getattr(module, f"conv_{i}").kernel_size[0] for i in range(1, 5)] == [3, 5, 7, 9]
    x = torch.randn(2, 64, 12, 12)
    feats = torch.stack([getattr(module, f"conv_{i}")(x) for i in range(1, 5)], 1)
    scores = module.se.weights(feats.flatten(0, 1)).view(2, 4, 16, 1, 1)
    weights = torch.softmax(scores, dim=1)
    assert torch.allclose(weights.sum(1), torch.ones(2, 16, 1, 1))
    # the output is the re-weighted branches, last branch first (EPSANet's order)
    out = module(x)
    assert torch.allclose(out[:, :16], (feats * weights)[:, 3], atol=1e-6)
    assert torch.allclose(out[:, 48:], (feats * weights)[:, 0], atol=1e-6)
    strided = PSAModule(64, 64, stride=2)
    assert strided(x).shape == (2, 64, 6, 6)


def test_aff_is_the_plain_sum_when_its_attention_is_neutral():
    fuse = AFF(32, r=4).eval()
    for branch in (fuse.local_att, fuse.global_att):
        torch.nn.init.zeros_(branch[-1].weight)
        torch.nn.init.zeros_(branch[-1].bias)
    x, y = torch.randn(2, 32, 5, 5), torch.randn(2, 32, 5, 5)
    with torch.no_grad():
        assert torch.allclose(fuse(x, y), x + y, atol=1e-6)
