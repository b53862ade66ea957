"""Pretrained weights from a local file, the timm way, for every registered model.

``load_pretrained(model, path)`` reads a ``.safetensors`` file, or a ``.pt``/``.pth``/``.bin``
file through ``torch.load(weights_only=True)`` so that a checkpoint can never run code. It then
does what timm's ``load_pretrained`` does for its own models, for the project's models too:

* unwraps ``{"state_dict": ...}``-style checkpoints and strips ``module.`` (DataParallel),
  ``_orig_mod.`` (``torch.compile``) and ``model.`` (Lightning) prefixes;
* renames keys of the other published layouts of the same architectures (torchvision's old
  DenseNet ``norm.1``/``conv.1``, torchvision VGG and MobileNetV2, Cadene's / timm's legacy
  SENet) onto timm's names, and a file's classifier onto the model's classifier name;
* adapts the input convolution(s) to the model's channel count with timm's
  ``adapt_input_conv`` (sum for one channel, repeat-and-scale otherwise; 3-D kernels too);
* drops a classifier whose class count differs, leaving the model's own random init.

Nothing that does not fit is loaded silently: the :class:`LoadReport` names what was loaded,
renamed, adapted, skipped and left at init.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from timm.models import adapt_input_conv
from torch import nn

PICKLE_SUFFIXES = (".pt", ".pth", ".bin")
# Checkpoint wrappers, outermost first (timm/torchvision training scripts, Lightning, others).
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
# Prefixes added by DataParallel/DistributedDataParallel, torch.compile and Lightning.
PREFIXES = ("module.", "_orig_mod.", "model.")
# Classifier names of timm, torchvision and Cadene's pretrainedmodels.
HEAD_NAMES = ("fc", "classifier", "head.fc", "head", "last_linear")

Rule = Callable[[str], str | None]


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did with each tensor (counters ``num_batches_tracked``,
    which hold no learnt value, are left out of every list)."""

    path: str  # the file, or "a state dict"
    model: str
    total: int = 0
    loaded: list[str] = field(default_factory=list)
    prefix: str = ""
    renamed: dict[str, str] = field(default_factory=dict)
    adapted: dict[str, tuple[int, int]] = field(default_factory=dict)
    dropped_head: dict[str, tuple[int, int]] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    reinitialised: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One paragraph for the log: counts, and the names that matter."""
        parts = [f"{self.model} <- {self.path}: loaded {len(self.loaded)} of {self.total} tensors"]
        if self.prefix:
            parts.append(f"stripped prefix {self.prefix!r}")
        if self.renamed:
            src, dst = next(iter(self.renamed.items()))
            parts.append(f"renamed {len(self.renamed)} keys (e.g. {src} -> {dst})")
        for src, dst in dict.fromkeys(self.adapted.values()):
            keys = [k for k, pair in self.adapted.items() if pair == (src, dst)]
            parts.append(f"adapted input conv {_names(keys)} from {src} to {dst} channels")
        if self.dropped_head:
            src, dst = next(iter(self.dropped_head.values()))
            parts.append(
                f"dropped classifier {_names(self.dropped_head)} (file {src} classes, model {dst})"
            )
        parts.append(f"left at init: {len(self.reinitialised)} ({_names(self.reinitialised)})")
        parts.append(f"unexpected in the file: {_names(self.unexpected)}")
        mismatched = [f"{k} {list(a)} vs {list(b)}" for k, (a, b) in self.mismatched.items()]
        parts.append(f"shape mismatches: {_names(mismatched)}")
        return "; ".join(parts) + "."


def load_pretrained(
    model: nn.Module,
    path: str | Path | Mapping[str, torch.Tensor],
    *,
    strict_shapes: bool = False,
    first_conv: str | Sequence[str] | None = None,
    classifier: str | Sequence[str] | None = None,
) -> LoadReport:
    """Load the tensors of ``path`` (a file, or a state dict already in memory) that fit
    ``model`` and report on all of them.

    ``first_conv`` / ``classifier`` are module names as in timm's ``pretrained_cfg``; when not
    given they come from the model's ``pretrained_cfg`` (timm models) or are found generically.
    ``strict_shapes`` turns shape mismatches outside the classifier and the input convs
    into a ``ValueError`` instead of skipped tensors.
    """
    if isinstance(path, Mapping):
        state, path = dict(path), "a state dict"
    else:
        state = read_state_dict(path)
    target = model.state_dict()
    report = LoadReport(str(path), type(model).__name__, sum(not _is_counter(k) for k in target))
    state, report.prefix = _strip_prefix(state, target)
    heads = _module_names(classifier, model, "classifier") or _trailing_linears(model)
    state = _rename(state, target, heads, report.renamed)

    convs = _module_names(first_conv, model, "first_conv")
    for key in _input_convs(state, target, convs):
        src, dst = state[key].shape[1], target[key].shape[1]
        state[key] = _adapt(state[key], dst)
        report.adapted[key] = (src, dst)

    head_keys = {f"{h}.{p}" for h in heads for p in ("weight", "bias")}
    fits: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key not in target:
            if not _is_counter(key):
                report.unexpected.append(key)
        elif tensor.shape == target[key].shape:
            fits[key] = tensor
        elif key in head_keys:
            report.dropped_head[key] = (tensor.shape[0], target[key].shape[0])
        else:
            report.mismatched[key] = (tuple(tensor.shape), tuple(target[key].shape))
    if strict_shapes and report.mismatched:
        shapes = ", ".join(f"{k} {list(a)} vs {list(b)}" for k, (a, b) in report.mismatched.items())
        raise ValueError(f"{path}: {len(report.mismatched)} tensors differ in shape: {shapes}")

    report.dropped_head = {k: report.dropped_head[k] for k in target if k in report.dropped_head}
    model.load_state_dict(fits, strict=False)
    report.loaded = [k for k in fits if not _is_counter(k)]
    report.reinitialised = [k for k in target if k not in fits and not _is_counter(k)]
    return report


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The flat ``{name: tensor}`` of a weights file; anything else is a one-line ValueError
    (a pickle that wants to build objects is refused by ``weights_only=True`` unexecuted)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            obj: object = load_file(path)
        except SafetensorError as err:
            raise ValueError(f"{path}: not a safetensors file ({_one_line(err)})") from None
    elif suffix in PICKLE_SUFFIXES:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch.load raises many types for foreign or hostile files
            raise ValueError(
                f"{path}: refused, not a plain tensor checkpoint "
                f"(torch.load weights_only: {_one_line(err)}); save a state_dict() instead"
            ) from None
    else:
        raise ValueError(
            f"{path}: unknown weights format {suffix!r} (.safetensors, .pt, .pth, .bin)"
        )
    return _unwrap(obj, path)


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{path}: not a state dict (holds {type(obj).__name__})")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(
                f"{path}: not a state dict ({key!r} holds {type(value).__name__}, not a tensor)"
            )
    return dict(obj)


def _one_line(err: Exception) -> str:
    """The informative line of an exception (torch's weights-only refusal is a page long)."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split(". ", 1)[0]
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    return f"{type(err).__name__}: {line}"[:240]


def _strip_prefix(
    state: dict[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], str]:
    """Remove wrapper prefixes that every file key has and the model's keys do not."""
    stripped = ""
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            if all(k.startswith(prefix) for k in state) and not all(
                k.startswith(prefix) for k in target
            ):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                stripped += prefix
                changed = True
    return state, stripped


def _rename(
    state: dict[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    heads: list[str],
    renamed: dict[str, str],
) -> dict[str, torch.Tensor]:
    """Map file keys the model lacks onto model keys the file lacks, by the first rule that
    names one; a flattened Linear becomes the conv-as-FC timm uses (VGG's pre-logits)."""
    rules = [
        _torchvision_densenet,
        _legacy_senet,
        _torchvision_vgg,
        _torchvision_mobilenet_v2(target),
    ]
    rules += _head_rule(state, target, heads)
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key not in target:
            for rule in rules:
                new = rule(key)
                if new is not None and new in target and new not in state and new not in out:
                    if not _is_counter(key):
                        renamed[key] = new
                    key = new
                    want = target[key]
                    if tensor.ndim == 2 and want.ndim == 4 and tensor.numel() == want.numel():
                        tensor = tensor.reshape(want.shape)
                    break
        out[key] = tensor
    return out


def _torchvision_densenet(key: str) -> str | None:
    """torchvision's DenseNet checkpoints still use ``denselayerN.norm.1``; timm ``norm1``."""
    m = re.fullmatch(r"(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\..+)", key)
    return m[1] + m[2] if m else None


def _legacy_senet(key: str) -> str | None:
    """Cadene's pretrainedmodels SENet (timm ``legacy_se*``): ``layer0.conv1``, ``se_module``."""
    new = re.sub(r"^layer0\.(conv1|bn1)\.", r"\1.", key).replace(".se_module.", ".se.")
    return new if new != key else None


def _torchvision_vgg(key: str) -> str | None:
    """torchvision VGG's ``classifier.0/3/6`` are timm's ``pre_logits.fc1/fc2`` and ``head.fc``."""
    m = re.fullmatch(r"classifier\.([036])\.(weight|bias)", key)
    names = {"0": "pre_logits.fc1", "3": "pre_logits.fc2", "6": "head.fc"}
    return f"{names[m[1]]}.{m[2]}" if m else None


def _torchvision_mobilenet_v2(target: Mapping[str, torch.Tensor]) -> Rule:
    """torchvision MobileNetV2 ``features.i`` onto timm's stem, ``blocks.s.b`` and head.

    Feature ``i`` (1..n) is timm's ``i``-th block in order; torchvision numbers the layers
    inside a block by position, timm by role, and the first block has no expansion conv.
    """
    blocks = sorted(
        {(int(m[1]), int(m[2])) for k in target if (m := re.match(r"blocks\.(\d+)\.(\d+)\.", k))}
    )
    expand = {
        "0.0": "conv_pw",
        "0.1": "bn1",
        "1.0": "conv_dw",
        "1.1": "bn2",
        "2": "conv_pwl",
        "3": "bn3",
    }
    depthwise = {"0.0": "conv_dw", "0.1": "bn1", "1": "conv_pw", "2": "bn2"}
    ends = {(0, "0"): "conv_stem", (0, "1"): "bn1"}
    ends |= {(len(blocks) + 1, "0"): "conv_head", (len(blocks) + 1, "1"): "bn2"}

    def rename(key: str) -> str | None:
        if key.startswith("classifier.1."):
            return "classifier." + key.removeprefix("classifier.1.")
        m = re.fullmatch(r"features\.(\d+)\.(?:conv\.)?(.+)\.(\w+)", key)
        if m is None:
            return None
        i, layer, param = int(m[1]), m[2], m[3]
        if (i, layer) in ends:
            return f"{ends[i, layer]}.{param}"
        if not 1 <= i <= len(blocks):
            return None
        block = "blocks.{}.{}".format(*blocks[i - 1])
        roles = expand if f"{block}.conv_pwl.weight" in target else depthwise
        return f"{block}.{roles[layer]}.{param}" if layer in roles else None

    return rename


def _head_rule(
    state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], heads: list[str]
) -> list[Rule]:
    """A file's classifier (``fc``, ``classifier``, ``last_linear``...) onto the model's one,
    when the model has a single classifier and the file does not already use its name."""
    if len(heads) != 1 or f"{heads[0]}.weight" in state:
        return []
    found = [h for h in HEAD_NAMES if f"{h}.weight" in state and f"{h}.weight" not in target]
    if len(found) != 1:
        return []

    def rename(key: str) -> str | None:
        return heads[0] + key.removeprefix(found[0]) if key.startswith(found[0] + ".") else None

    return [rename]


def _module_names(names: str | Sequence[str] | None, model: nn.Module, cfg_key: str) -> list[str]:
    """Explicit module names, else the ones timm's ``pretrained_cfg`` declares, else []."""
    if names is None:
        cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
        names = cfg.get(cfg_key)
    if names is None:
        return []
    return [names] if isinstance(names, str) else list(names)


def _trailing_linears(model: nn.Module) -> list[str]:
    """The classifier(s) of a model without a cfg: the last Linear, with the Linears right
    before it that have as many outputs (several heads, as in ``ms_resnet3d50``)."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        return []
    classes = linears[-1][1].out_features
    heads: list[str] = []
    for name, module in reversed(linears):
        if module.out_features != classes:
            break
        heads.insert(0, name)
    return heads


def _input_convs(
    state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], convs: list[str]
) -> list[str]:
    """Conv weights to adapt: the named ones, or else the stem found generically.

    The stem is the leading run of conv weights, in model order, that differ from the file's
    only in their input channels, all by the same counts: parallel input convs (STSTNet's
    three streams, the multi-scale 3-D stem) take the same input. The run ends at the first
    conv that does not fit that way, so a deeper conv of another width is never "adapted".
    """
    if convs:
        keys: Iterable[str] = (f"{c}.weight" for c in convs)
        return [
            k for k in keys if k in state and k in target and _in_chans_only(state[k], target[k])
        ]
    found: list[str] = []
    first: tuple[int, int] | None = None
    for key, weight in target.items():
        if weight.ndim not in (4, 5) or key not in state:
            continue
        pair = (state[key].shape[1], weight.shape[1])
        if not _in_chans_only(state[key], weight) or pair != (first or pair):
            break
        first = pair
        found.append(key)
    return found


def _in_chans_only(src: torch.Tensor, dst: torch.Tensor) -> bool:
    """True when two conv weights differ in the input-channel axis and nowhere else."""
    return (
        src.ndim == dst.ndim
        and src.ndim in (4, 5)
        and src.shape[1] != dst.shape[1]
        and src.shape[:1] + src.shape[2:] == dst.shape[:1] + dst.shape[2:]
    )


def _adapt(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """timm's ``adapt_input_conv``; a 3-D kernel (O, I, T, H, W) goes through it as
    (O, I, T*H, W), the same sum / repeat-and-scale over the channel axis."""
    if weight.ndim == 4:
        return adapt_input_conv(in_chans, weight, base_chans=weight.shape[1])
    o, i, t, h, w = weight.shape
    flat = adapt_input_conv(in_chans, weight.reshape(o, i, t * h, w), base_chans=i)
    return flat.reshape(o, in_chans, t, h, w)


def _is_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def _names(keys: Iterable[str], limit: int = 6) -> str:
    keys = list(keys)
    if not keys:
        return "none"
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more
