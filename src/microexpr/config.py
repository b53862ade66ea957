"""The one experiment schema: a YAML file in ``configs/`` is an :class:`ExperimentConfig`.

Every section lives here (data, model, preprocessing, clips, training, protocol), so a config
is validated in one place and nothing below the command line imports training code to read
one. Unknown keys and out-of-range values are refused with the key named. Defaults that
depend on the model or the reader (input size, channels, scaling, which preprocessing) are
filled in once by :func:`microexpr.recipe.resolve`, which turns a config into a Plan.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Scaling = Literal["raw", "unit", "imagenet", "flow_max"]
InputKind = Literal["flow_image", "apex_image", "image", "clip", "flow_clip", "flow_regions"]
ResampleMethod = Literal["linear", "tim"]
PipelineName = Literal["flow_image", "apex_face", "face_clip", "flow_clip", "flow_regions"]


class ConfigError(ValueError):
    """A config that cannot run as written; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    """Which reader, where, and which taxonomy turns its emotions into classes."""

    name: str = "flow_images"
    root: str | None = None
    options: dict = Field(default_factory=dict)
    taxonomy: str = "composite3"


class ModelConfig(_Strict):
    """The registered model and what of its declared input (InputSpec) to override."""

    name: str = "ststnet"
    options: dict = Field(default_factory=dict)
    in_chans: int | None = Field(None, ge=1)  # default: the model's InputSpec
    input_size: int | None = Field(None, ge=8)
    scaling: Scaling | None = None
    weights: str | None = None  # local file of pretrained weights (never downloaded)
    # What a 2-D model reads, in place of the kind it is registered with: e.g. the flow
    # images for a face model (apex_image) or the apex faces for a flow model; flow_regions
    # is HTNet's four-region mosaic of the flow image.
    input_kind: Literal["flow_image", "apex_image", "image", "flow_regions"] | None = None


class PreprocessConfig(BaseModel):
    """How raw frames become a model's input; its resolved form names the cache folder.

    pipeline: ``auto`` picks the pipeline the model's input needs when the reader gives
    frames, and none when the reader already gives that input (flow images, still images);
    ``none`` reads the reader's files as they are. size: output side (default: the model's
    input size). align: ``landmarks`` = 68 landmarks on the first frame, one similarity
    transform (eyes level, fixed inter-ocular distance) for every frame, then rigid
    registration to the first frame (head drift); ``none`` = the whole frame resized.
    face_size: side of the aligned face that flow and spotting work on. eye_distance /
    eye_height: alignment (fractions of the side). region: crop a named region of the aligned
    face (e.g. ``mouth``) for ``apex_face``. gray: one-channel outputs. span: ``expression`` =
    onset..offset when coded, or ``all`` frames. use_coded_apex: take the coded apex when
    there is one; apex_method: how to find it otherwise (``region_difference`` = seed 002's
    landmark-region difference function, ``region_flow`` = flow magnitude in the same
    regions, ``middle``). num_frames: clip length (None: every frame of the span, for
    models that take a random window per read). resample: ``linear`` | ``tim``.
    flow_method / flow_reference: ``tvl1`` | ``farneback``; flow from the ``onset`` or the
    ``previous`` frame. magnify_alpha > 0 magnifies the aligned clip (Eulerian, band
    magnify_low_hz..high_hz at the sample's fps) first. upsample: face-detector upsampling.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    pipeline: Literal[
        "auto", "none", "flow_image", "apex_face", "face_clip", "flow_clip", "flow_regions"
    ] = "auto"
    size: int | None = Field(None, ge=8)
    align: Literal["landmarks", "none"] = "landmarks"
    face_size: int = Field(128, ge=16)
    eye_distance: float = Field(0.5, gt=0, lt=1)
    eye_height: float = Field(0.3, gt=0, lt=1)
    region: str | None = None
    gray: bool = False
    span: Literal["expression", "all"] = "expression"
    use_coded_apex: bool = True
    apex_method: Literal["region_difference", "region_flow", "middle"] = "region_difference"
    num_frames: int | None = Field(16, ge=1)
    resample: ResampleMethod = "linear"
    flow_method: str = "tvl1"
    flow_reference: Literal["onset", "previous"] = "onset"
    magnify_alpha: float = Field(0.0, ge=0)
    magnify_low_hz: float = Field(0.5, gt=0)
    magnify_high_hz: float = Field(10.0, gt=0)
    upsample: int = Field(1, ge=0)


class ClipConfig(_Strict):
    """How a 3-D model reads the clips preprocessing made (2-D models ignore it).

    num_frames: clip length (default: the model's). longer: a clip longer than that gives a
    random ``window`` of consecutive frames per training read (seed S3; at test the window
    centred on the apex, else the middle) or is ``resample``-d; shorter clips are always
    resampled. subtract_first: frame clips become differences from their first frame (after
    scaling): the subject's appearance cancels and the motion remains (not in seed S3).
    expand: seed S3's x10 training set: original and mirror, each also rotated by ``angles``.
    """

    num_frames: int | None = Field(None, ge=1)
    longer: Literal["window", "resample"] = "window"
    subtract_first: bool = False
    expand: bool = False
    angles: tuple[float, ...] = (5.0, -5.0, 10.0, -10.0)


class AugmentConfig(_Strict):
    """What to draw per training sample (train/augment.py), and the mirror averaged at test
    time; all off by default. Degrees."""

    hflip: float = Field(0.0, ge=0, le=1)  # probability of a horizontal flip
    # (channel, centre): a flip also maps that channel's values v to 2 * centre - v, since a
    # mirror reverses the sign of horizontal motion u. recipe.resolve sets it for flow inputs
    # (u is channel 0; the centre follows the scaling); None elsewhere: a plain mirror.
    flip_reflect: tuple[int, float] | None = None
    rotation: float = Field(0.0, ge=0)  # uniform angle in [-rotation, rotation]
    grayscale: float = Field(0.0, ge=0, le=1)  # probability of graying a 3-channel sample
    translate: float = Field(0.0, ge=0, lt=1)  # uniform shift up to this fraction of the side
    scale: tuple[float, float] = (1.0, 1.0)  # uniform zoom factor range
    shear: float = Field(0.0, ge=0)  # uniform horizontal shear angle in [-shear, shear]
    # mixup (Zhang et al., 2018): each batch blended with a shuffled copy of itself at a
    # weight drawn from Beta(mixup, mixup), the loss blended alike; 0 = off
    mixup: float = Field(0.0, ge=0)
    # test-time flips: every prediction (LOSO folds, bundles, video analysis, the ONNX
    # graph) is the mean of the probabilities of the input and of its mirror image, with u
    # reflected as a training flip reflects it (inference.class_probabilities)
    test_hflip: bool = False

    @property
    def geometric(self) -> bool:
        return bool(self.rotation or self.translate or self.shear or self.scale != (1.0, 1.0))

    @property
    def draws(self) -> bool:
        """Whether a training batch is transformed (mixup aside): test-time flips alone
        leave training, and its random draws, as they are without them."""
        return bool(self.hflip or self.grayscale or self.geometric)


class PretextConfig(_Strict):
    """Self-supervised pretraining inside each fold (train/pretext.py): the fold's own
    training images, each turned by 0, 90, 180 and 270 degrees, teach the network which turn
    it sees for ``epochs`` before it trains on the labels (Gidaris et al., 2018)."""

    task: Literal["rotation"] = "rotation"
    epochs: int = Field(10, ge=1)


class PlateauConfig(_Strict):
    """ReduceLROnPlateau on the loss of a validation split of the training subjects."""

    val_fraction: float = Field(0.1, gt=0, lt=1)  # of the training samples (or subjects)
    patience: int = Field(30, ge=0)  # epochs without improvement before the rate drops
    factor: float = Field(0.1, gt=0, lt=1)
    min_lr: float = Field(0.0, ge=0)


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


class TrainConfig(_Strict):
    """Optimiser, loss and schedule. Defaults are the published STSTNet recipe."""

    epochs: int = Field(800, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(5e-5, gt=0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    loss: str = "cross_entropy"
    loss_kwargs: dict = Field(default_factory=dict)
    # "balanced": the loss weights each class by n / (classes * its count) in the fold's own
    # training samples (scikit-learn's class_weight="balanced"); losses with a weight option
    class_weight: Literal["balanced"] | None = None
    shuffle: bool = False  # the STSTNet loop feeds batches in file order
    # Without shuffling, feed each fold's training samples grouped by class, as the
    # published STSTNet loop does by reading its u_train/<label>/ folders one by one.
    group_by_label: bool = False
    amp: bool = True  # mixed precision, used on CUDA only
    # Replay each full training batch's step as a CUDA graph (train/cuda_graphs.py); CUDA
    # only, bfloat16 autocast instead of float16 with loss scaling. Pays on launch-bound nets.
    cuda_graph: bool = False
    device: str = "auto"
    seed: int = 0
    num_workers: int = Field(0, ge=0)
    augment: AugmentConfig | None = None  # random training-batch augmentation
    plateau: PlateauConfig | None = None  # LR drop on a validation split of the training data
    pretext: PretextConfig | None = None  # self-supervised start on the fold's training images
    # Diagnostic, not a result (docs/peers.md): every N-th epoch (and the last) also score the
    # fold's test samples and keep those probabilities (OUT/folds/<fold>.epochs.csv), so the
    # report can show what per-subject best-epoch selection would have printed. 0 = off. The
    # honest predictions are the same bits either way; it needs the per-fold engine.
    record_epochs: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _mixup_not_graphed(self) -> TrainConfig:
        if self.cuda_graph and self.augment is not None and self.augment.mixup:
            raise ValueError(
                "train.augment.mixup draws a new weight every step, which a CUDA graph would "
                "freeze: set train.cuda_graph false"
            )
        return self

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not _DEVICE.fullmatch(value):
            raise ValueError(f"{value!r} is not a device: auto, cpu, cuda or cuda:N")
        return value


# Sections an inner selection may not change: they decide which samples and folds there are,
# which every candidate's scores must share.
FIXED_SECTIONS = ("data", "protocol")


class InnerConfig(_Strict):
    """Nested selection (train/sweep.py): every combination of ``grid`` (config keys -> values
    to try) is scored by its pooled UF1 on ``folds`` leave-subjects-out splits of each outer
    fold's training subjects; the best is trained on all of them and scores the test once."""

    folds: int = Field(3, ge=2)
    grid: dict[str, list] = Field(min_length=1)

    @field_validator("grid")
    @classmethod
    def _sweepable(cls, grid: dict[str, list]) -> dict[str, list]:
        for key, values in grid.items():
            if key.split(".")[0] in FIXED_SECTIONS:
                raise ValueError(f"{key}: an inner selection cannot change {key.split('.')[0]}")
            if not values:
                raise ValueError(f"{key}: no values to try")
        return grid


class ProtocolConfig(_Strict):
    name: str = "loso"
    options: dict = Field(default_factory=dict)
    inner: InnerConfig | None = None  # nested selection inside each outer fold's training


class ExperimentConfig(_Strict):
    """Everything that decides a result; it is written beside the result files."""

    name: str = "experiment"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    clip: ClipConfig = Field(default_factory=ClipConfig)  # 3-D models: length, window, x10
    train: TrainConfig = Field(default_factory=TrainConfig)
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    # "stacked" trains all folds of a group as one network (STSTNet recipe); "auto" uses it
    # when the model and recipe allow, else one fold at a time.
    engine: Literal["auto", "per_fold", "stacked"] = "auto"
    folds_per_call: int = Field(0, ge=0)  # folds trained together by the stacked engine; 0 = all
    ensemble: int = Field(1, ge=1)  # independently seeded models per fold, probabilities averaged


def parse_overrides(pairs: list[str]) -> dict:
    """``key.sub=value`` pairs (``--set``) -> a nested dict; values are read as YAML, so
    ``3``, ``1e-4``, ``true``, ``null`` and ``[5, 10]`` get their types."""
    overrides: dict = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. train.epochs=10")
        try:
            value = _yaml_value(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {pair!r}: value is not valid YAML ({err})") from None
        *parents, leaf = key.strip().split(".")
        target = overrides
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"--set {pair!r}: {part} was set to a value above")
        target[leaf] = value
    return overrides


def _yaml_value(text: str) -> object:
    """A value as YAML reads it, except that ``1e-4`` is a number (YAML 1.1 wants ``1.0e-4``)."""
    if not text.strip():
        return ""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def merge(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` merged in, nested dicts key by key (neither is changed)."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def validate(schema: type[BaseModel], raw: dict, source: str) -> BaseModel:
    """``schema`` from plain data; every problem becomes one line naming the dotted key."""
    try:
        return schema.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None


def read_yaml_mapping(path: str | Path) -> dict:
    """A YAML file's top-level mapping (an empty file: {}); bad YAML or another kind of value
    is a ConfigError naming the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, found {type(raw).__name__}")
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML experiment file and apply ``--set`` overrides; unknown keys and bad values
    are errors that name the key."""
    return config_from(read_yaml_mapping(path), overrides, source=str(path))


def config_from(
    raw: dict, overrides: list[str] | None = None, source: str = "config"
) -> ExperimentConfig:
    """An ExperimentConfig from plain data plus ``--set`` overrides."""
    return validate(ExperimentConfig, merge(raw, parse_overrides(overrides or [])), source)
