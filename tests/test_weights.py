"""Pretrained weights from a local file: timm/torchvision layouts into the registered models,
input-conv adaptation, classifier drop, and refusal of files that are not plain state dicts.

Source checkpoints are built here with random weights (nothing is downloaded), saved to
``tmp_path`` and loaded back through :func:`load_pretrained`.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from microexpr import models
from microexpr.models.c3d_vgg import C3DVGG
from microexpr.models.flow_nets import STSTNet
from microexpr.models.resnet3d_ms import MSResNet3d
from microexpr.models.weights import load_pretrained

C3D_SMALL = {"widths": (4,) * 8, "hidden": 8, "num_frames": 4, "input_size": 16}
MS3D_SMALL = {"layers": (1, 1, 1, 1), "widths": (4, 4, 4, 4), "stem_width": 6}


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save(state, path)
    return path


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def seresnext_1000() -> dict[str, torch.Tensor]:
    """timm's SE-ResNeXt-50 with an ImageNet-sized head (1000 classes, 3 input channels)."""
    return timm.create_model("seresnext50_32x4d", num_classes=1000).state_dict()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_timm_file_into_one_channel_five_class_se_resnext(seresnext_1000, tmp_path, suffix):
    if suffix == ".pth":  # a training checkpoint of a DataParallel model
        wrapped = {f"module.{k}": v for k, v in seresnext_1000.items()}
        torch.save({"epoch": 3, "state_dict": wrapped}, tmp_path / "w.pth")
        path = tmp_path / "w.pth"
    else:
        path = _save(seresnext_1000, tmp_path / "w.safetensors")
    model = models.create("se_resnext50_32x4d", num_classes=5, in_chans=1)
    before = _snapshot(model)

    report = load_pretrained(model, path)

    assert report.prefix == ("module." if suffix == ".pth" else "")
    assert report.adapted == {"conv1.weight": (3, 1)}
    assert report.dropped_head == {"fc.weight": (1000, 5), "fc.bias": (1000, 5)}
    assert report.reinitialised == ["fc.weight", "fc.bias"]
    assert report.unexpected == [] and report.mismatched == {}
    assert len(report.loaded) == report.total - 2
    after = model.state_dict()
    for key, value in after.items():
        if key.startswith("fc."):
            assert torch.equal(value, before[key]), key  # the model's own init, untouched
        elif key != "conv1.weight":
            assert torch.equal(value, seresnext_1000[key]), key
    assert torch.equal(after["conv1.weight"], seresnext_1000["conv1.weight"].sum(1, keepdim=True))
    summary = report.summary()
    assert "\n" not in summary
    assert "conv1.weight from 3 to 1 channels" in summary
    assert "dropped classifier fc.weight, fc.bias (file 1000 classes, model 5)" in summary


def test_legacy_senet_names_and_a_head_of_the_same_size(tmp_path):
    """Cadene's / timm's legacy SE-ResNeXt names (``layer0.conv1``, ``se_module``,
    ``last_linear``); with as many classes as the model, the head is loaded, not dropped."""
    source = timm.create_model("legacy_seresnext50_32x4d", num_classes=5).state_dict()
    model = models.create("se_resnext50_32x4d", num_classes=5, in_chans=3)

    report = load_pretrained(model, _save(source, tmp_path / "legacy.pth"))

    assert report.renamed["layer0.conv1.weight"] == "conv1.weight"
    assert report.renamed["layer4.2.se_module.fc2.weight"] == "layer4.2.se.fc2.weight"
    assert report.renamed["last_linear.weight"] == "fc.weight"
    assert report.reinitialised == [] and report.dropped_head == {} and report.adapted == {}
    assert report.unexpected == [] and report.mismatched == {}
    after = model.state_dict()
    for key, value in source.items():
        if not key.endswith("num_batches_tracked"):  # counters are left out of the report
            assert torch.equal(after[report.renamed.get(key, key)], value), key


def _c3d(in_chans: int, num_classes: int = 5) -> C3DVGG:
    return C3DVGG(num_classes, in_chans, **C3D_SMALL)


def _ms3d(in_chans: int, num_classes: int = 5) -> MSResNet3d:
    return MSResNet3d(num_classes, in_chans, **MS3D_SMALL)


def _ststnet(in_chans: int, num_classes: int = 5) -> STSTNet:
    return STSTNet(num_classes, in_chans)


@pytest.mark.parametrize(
    ("build", "in_chans", "convs", "heads"),
    [
        (_c3d, 1, ["features.0.weight"], ["classifier"]),
        (_c3d, 2, ["features.0.weight"], ["classifier"]),
        (_ms3d, 1, [f"stem.branches.{i}.weight" for i in range(3)], ["heads.0.1", "heads.1.1"]),
        (_ststnet, 1, ["conv1.weight", "conv2.weight", "conv3.weight"], ["fc"]),
    ],
)
def test_3d_and_multi_stream_input_convs(tmp_path, build, in_chans, convs, heads):
    """5-D kernels get timm's sum (1 channel) or repeat-and-scale (2 channels) over the channel
    axis; parallel input convs (multi-scale stem, STSTNet's streams) are all adapted."""
    source = build(3, num_classes=1000).state_dict()
    model = build(in_chans)
    before = _snapshot(model)

    report = load_pretrained(model, _save(source, tmp_path / "w.safetensors"))

    assert report.adapted == dict.fromkeys(convs, (3, in_chans))
    assert all(f"{h}.weight" in report.dropped_head for h in heads)
    assert report.mismatched == {} and report.unexpected == []
    after = model.state_dict()
    for key in convs:
        w = source[key]
        expected = w.sum(1, keepdim=True) if in_chans == 1 else w[:, :2] * 1.5
        assert torch.allclose(after[key], expected), key
    for key in after:
        if key in report.dropped_head:
            assert torch.equal(after[key], before[key]), key
        elif key not in convs:
            assert torch.equal(after[key], source[key]), key


def test_torchvision_densenet_old_names_into_densenet201_eca(tmp_path):
    """torchvision's released DenseNet files still say ``denselayer1.norm.1`` (and predate
    ``num_batches_tracked``); the ECA layers have no pretrained counterpart."""
    modern = torchvision.models.densenet201().state_dict()
    old = {
        re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
        for k, v in modern.items()
        if not k.endswith("num_batches_tracked")
    }
    assert "features.denseblock4.denselayer32.conv.2.weight" in old
    model = models.create("densenet201_eca", num_classes=5)

    report = load_pretrained(model, _save(old, tmp_path / "densenet201.pth"))

    eca = [f"features.eca{i}.conv.weight" for i in range(1, 5)]
    assert report.reinitialised == [*eca, "classifier.weight", "classifier.bias"]
    assert report.renamed["features.denseblock1.denselayer1.norm.1.weight"] == (
        "features.denseblock1.denselayer1.norm1.weight"
    )
    assert report.unexpected == [] and report.mismatched == {} and report.adapted == {}
    after = model.state_dict()
    for key, value in modern.items():
        if not key.startswith("classifier.") and not key.endswith("num_batches_tracked"):
            assert torch.equal(after[key], value), key


def test_torchvision_resnet50_into_se_resnet50(tmp_path):
    """torchvision and timm ResNet-50 share names (``fc`` included); the project's SE layers
    are left at init."""
    source = torchvision.models.resnet50().state_dict()
    model = models.create("se_resnet50", num_classes=5, in_chans=1)

    report = load_pretrained(model, _save(source, tmp_path / "resnet50.safetensors"))

    assert report.adapted == {"conv1.weight": (3, 1)}
    assert set(report.dropped_head) == {"fc.weight", "fc.bias"}
    assert report.reinitialised[-2:] == ["fc.weight", "fc.bias"]
    assert all(".se." in k for k in report.reinitialised[:-2]) and len(report.reinitialised) > 2
    assert report.unexpected == [] and report.mismatched == {}
    assert torch.equal(model.state_dict()["layer3.5.conv2.weight"], source["layer3.5.conv2.weight"])


def test_torchvision_mobilenet_v2_into_timm_layout(tmp_path):
    source = torchvision.models.mobilenet_v2().state_dict()
    model = models.create("mobilenetv2", num_classes=5, in_chans=1)

    report = load_pretrained(model, _save(source, tmp_path / "mobilenet_v2.pth"))

    assert report.unexpected == [] and report.mismatched == {}
    assert report.reinitialised == ["classifier.weight", "classifier.bias"]
    assert report.adapted == {"conv_stem.weight": (3, 1)}
    after = model.state_dict()
    pairs = {
        "blocks.0.0.conv_dw.weight": "features.1.conv.0.0.weight",
        "blocks.0.0.conv_pw.weight": "features.1.conv.1.weight",
        "blocks.1.0.conv_pw.weight": "features.2.conv.0.0.weight",
        "blocks.1.1.bn2.running_var": "features.3.conv.1.1.running_var",
        "blocks.6.0.conv_pwl.weight": "features.17.conv.2.weight",
        "conv_head.weight": "features.18.0.weight",
        "bn2.bias": "features.18.1.bias",
    }
    for mine, theirs in pairs.items():
        assert torch.equal(after[mine], source[theirs]), mine
    assert torch.equal(after["conv_stem.weight"], source["features.0.0.weight"].sum(1, True))


@pytest.mark.slow  # torchvision's and timm's VGG-16 are 138 M parameters each
def test_torchvision_vgg16_bn_classifier_into_timm_pre_logits(tmp_path):
    source = torchvision.models.vgg16_bn().state_dict()
    model = models.create("vgg16_bn", num_classes=5, in_chans=1)

    report = load_pretrained(model, _save(source, tmp_path / "vgg16_bn.safetensors"))

    assert report.renamed["classifier.0.weight"] == "pre_logits.fc1.weight"
    assert report.reinitialised == ["head.fc.weight", "head.fc.bias"]
    assert report.unexpected == [] and report.mismatched == {}
    fc1 = model.state_dict()["pre_logits.fc1.weight"]
    assert torch.equal(fc1, source["classifier.0.weight"].reshape(4096, 512, 7, 7))


def test_explicit_names_override_the_generic_search(tmp_path):
    source = _ms3d(3, num_classes=1000).state_dict()
    model = _ms3d(1)

    report = load_pretrained(
        model,
        _save(source, tmp_path / "w.safetensors"),
        first_conv="stem.branches.0",
        classifier="heads.2.1",
    )

    assert report.adapted == {"stem.branches.0.weight": (3, 1)}
    assert set(report.dropped_head) == {"heads.2.1.weight", "heads.2.1.bias"}
    assert {"stem.branches.1.weight", "heads.0.1.weight"} <= set(report.mismatched)


def test_shape_mismatches_are_skipped_or_with_strict_shapes_refused(tmp_path):
    path = _save(C3DVGG(5, 3, **{**C3D_SMALL, "widths": (4,) * 8}).state_dict(), tmp_path / "a.pt")
    model = C3DVGG(5, 3, **{**C3D_SMALL, "widths": (6,) * 8})
    before = _snapshot(model)

    report = load_pretrained(model, path)

    assert report.mismatched["features.0.weight"] == ((4, 3, 3, 3, 3), (6, 3, 3, 3, 3))
    assert report.adapted == {} and "features.0.weight" in report.reinitialised
    assert report.loaded == ["fc.bias", "classifier.weight", "classifier.bias"]
    assert torch.equal(model.state_dict()["features.0.weight"], before["features.0.weight"])
    with pytest.raises(ValueError, match=r"a\.pt: \d+ tensors differ in shape"):
        load_pretrained(model, path, strict_shapes=True)


def test_a_deeper_conv_of_another_width_is_not_taken_for_the_input_conv(tmp_path):
    """File stem 3 -> 3 maps, model stem 3 -> 1 map: the second conv then differs only in its
    input channels (3 vs 1), but it is no input conv and must not be summed."""
    file_widths, model_widths = (3,) + (4,) * 7, (1,) + (4,) * 7
    source = C3DVGG(5, 3, **{**C3D_SMALL, "widths": file_widths}).state_dict()
    model = C3DVGG(5, 3, **{**C3D_SMALL, "widths": model_widths})

    report = load_pretrained(model, _save(source, tmp_path / "w.safetensors"))

    assert report.adapted == {}
    assert report.mismatched["features.5.weight"] == ((4, 3, 3, 3, 3), (4, 1, 3, 3, 3))


class _Payload:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_pickle_that_runs_code_is_refused_unexecuted(tmp_path, writer):
    live = tmp_path / "live"
    pickle.loads(pickle.dumps(_Payload(live), protocol=2))
    assert live.exists()  # the payload works when unpickled

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    if writer == "pickle":
        path.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}, protocol=2))
    else:
        torch.save({"state_dict": _Payload(marker)}, path)
    model = _ststnet(3)
    before = _snapshot(model)

    with pytest.raises(ValueError, match="evil.pth: refused") as err:
        load_pretrained(model, path)

    assert "\n" not in str(err.value)
    assert not marker.exists()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("weights.safetensors", "these are not weights\n", "not a safetensors file"),
        ("weights.pth", "these are not weights\n", "refused"),
        ("weights.ckpt", "these are not weights\n", "unknown weights format"),
    ],
)
def test_a_text_file_is_refused_in_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)

    with pytest.raises(ValueError, match=re.escape(f"{name}: {message}")) as err:
        load_pretrained(_ststnet(3), path)

    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("obj", "message"),
    [([torch.zeros(3)], "holds list"), ({"epoch": 3, "fc.weight": torch.zeros(2)}, "'epoch'")],
)
def test_a_safe_pickle_that_is_not_a_state_dict_is_refused(tmp_path, obj, message):
    path = tmp_path / "other.pt"
    torch.save(obj, path)

    with pytest.raises(ValueError, match=f"other.pt: not a state dict.*{message}"):
        load_pretrained(_ststnet(3), path)
