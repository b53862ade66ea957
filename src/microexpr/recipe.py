"""Config -> Plan: every default filled in one place, every option checked before any work.

What the model declares (its InputSpec) and what the reader gives (clips, still images or
flow images) decide the input and the preprocessing; the config overrides either. A typo in
an ``options:`` dict, an unknown name or a device that is not there fails here, with the key
named, before a run folder is written.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

import torch

from microexpr import datasets, labels, losses, models
from microexpr.config import (
    AugmentConfig,
    ConfigError,
    ExperimentConfig,
    PreprocessConfig,
    TrainConfig,
)
from microexpr.datasets.registry import Provides
from microexpr.plan import Plan
from microexpr.preprocess.pipelines import resolve_preprocess
from microexpr.protocols import PROTOCOLS
from microexpr.registry import UnknownNameError
from microexpr.spec import FLOW_IMAGE_CHANNELS, InputSpec

# The pipeline that makes each input kind from a clip of frames.
PIPELINE_FOR_KIND = {
    "flow_image": "flow_image",
    "apex_image": "apex_face",
    "image": "apex_face",
    "clip": "face_clip",
    "flow_clip": "flow_clip",
    "flow_regions": "flow_regions",
}
# What a pipeline can start from, where that is more than a reader's clips of frames:
# HTNet's regions also come from a flow-image reader's flow image and apex face.
PIPELINE_SOURCES: dict[str, tuple[Provides, ...]] = {"flow_regions": ("clips", "flow_images")}
# Input kinds a reader's files already are, needing no preprocessing.
READY_KINDS: dict[Provides, tuple[str, ...]] = {
    "clips": (),
    "images": ("apex_image", "image"),
    "flow_images": ("flow_image", "apex_image", "image"),
}


def resolve(cfg: ExperimentConfig) -> Plan:
    """The Plan of ``cfg``; raises ConfigError (naming the key) for anything that cannot run."""
    reader = _named("data.name", datasets.READERS.get, cfg.data.name)
    check_options(reader.read, cfg.data.options, "data.options", positional=1, fixed=("report",))
    taxonomy = _named("data.taxonomy", labels.get, cfg.data.taxonomy)
    entry = _named("model.name", models.info, cfg.model.name)
    spec = input_spec(entry.input, cfg)
    clip = cfg.clip.model_copy(update={"num_frames": cfg.clip.num_frames or spec.num_frames})
    model_options = dict(cfg.model.options)
    if spec.is_clip:  # a 3-D model is sized by its clip
        model_options = {"num_frames": clip.num_frames, "input_size": spec.size, **model_options}
    _check_model(cfg.model.name, len(taxonomy.classes), spec.in_chans, model_options)
    if cfg.model.input_size is not None:  # the declared size is known to fit its model
        _check_input_size(cfg.model.name, len(taxonomy.classes), spec, model_options)
    _check_loss(cfg.train, len(taxonomy.classes))
    if cfg.train.pretext is not None and (spec.is_clip or entry.family == "classical"):
        raise ConfigError(
            "train.pretext turns images for a network to learn from: "
            f"{cfg.model.name} {'reads clips' if spec.is_clip else 'is fitted by scikit-learn'}"
        )
    protocol = _named("protocol.name", PROTOCOLS.get, cfg.protocol.name)
    check_options(protocol, cfg.protocol.options, "protocol.options", positional=1)
    train = cfg.train.model_copy(
        update={"device": resolve_device(cfg.train.device), "augment": _augment(cfg.train, spec)}
    )
    return Plan(
        name=cfg.name,
        data=cfg.data,
        classes=taxonomy.classes,
        model=cfg.model.name,
        model_options=model_options,
        weights=cfg.model.weights,
        input=spec,
        preprocess=preprocess_for(spec, reader.provides, cfg.preprocess, clip.longer),
        clip=clip,
        train=train,
        protocol=cfg.protocol,
        engine=_engine(cfg, train),
        folds_per_call=cfg.folds_per_call,
        ensemble=cfg.ensemble,
    )


# Where a flow input's values of zero horizontal motion lie, by scaling: min-max scaled
# images reflect about the middle of their range, flow_max clips about 0.
FLOW_CENTRE = {"raw": 127.5, "unit": 0.5, "flow_max": 0.0}
# The channel holding u, by input kind: flow images (and their regions) as the composite's
# files are (spec.FLOW_IMAGE_CHANNELS), flow clips u, v, strain.
U_CHANNEL = {
    "flow_image": FLOW_IMAGE_CHANNELS.index("u"),
    "flow_regions": FLOW_IMAGE_CHANNELS.index("u"),
    "flow_clip": 0,
}


def _augment(train: TrainConfig, spec: InputSpec) -> AugmentConfig | None:
    """The augmentation with a flip's reflection of u filled in for flow inputs (the u
    channel of :data:`U_CHANNEL`), for training flips and test-time flips alike."""
    augment = train.augment
    if augment is None or not (augment.hflip or augment.test_hflip):
        return augment
    if augment.flip_reflect is not None:
        if not 0 <= augment.flip_reflect[0] < spec.in_chans:
            raise ConfigError(
                f"train.augment.flip_reflect: channel {augment.flip_reflect[0]} of an input "
                f"with {spec.in_chans} channels"
            )
        return augment
    if spec.kind not in U_CHANNEL:
        return augment
    if spec.scaling not in FLOW_CENTRE:
        raise ConfigError(
            f"train.augment.hflip or test_hflip on {spec.kind} scaled {spec.scaling!r}: set "
            "train.augment.flip_reflect to [0, value of zero horizontal flow]"
        )
    reflect = (U_CHANNEL[spec.kind], FLOW_CENTRE[spec.scaling])
    return augment.model_copy(update={"flip_reflect": reflect})


def input_spec(declared: InputSpec, cfg: ExperimentConfig) -> InputSpec:
    """The model's declared input with the config's overrides (kind, size, channels, scaling,
    clip length)."""
    if cfg.model.input_kind is not None and declared.is_clip:
        raise ConfigError(f"model.input_kind: {cfg.model.name} is a clip model (2-D models only)")
    update = {
        "kind": cfg.model.input_kind,
        "size": cfg.model.input_size,
        "in_chans": cfg.model.in_chans,
        "scaling": cfg.model.scaling,
        "num_frames": cfg.clip.num_frames if declared.is_clip else None,
    }
    return declared.model_copy(update={k: v for k, v in update.items() if v is not None})


def preprocess_for(
    spec: InputSpec, provides: Provides, cfg: PreprocessConfig, longer: str = "window"
) -> PreprocessConfig | None:
    """The resolved pipeline that makes ``spec``'s input from what the reader provides, or
    None when the reader's files are that input already."""
    ready = spec.kind in READY_KINDS[provides]
    if cfg.pipeline == "none" or (cfg.pipeline == "auto" and ready):
        if not ready:
            raise ConfigError(
                f"preprocess.pipeline: none, but a {spec.kind} model cannot read the reader's "
                f"{provides} as they are"
            )
        return None
    pipeline = PIPELINE_FOR_KIND[spec.kind] if cfg.pipeline == "auto" else cfg.pipeline
    if provides not in PIPELINE_SOURCES.get(pipeline, ("clips",)):
        raise ConfigError(
            f"preprocess.pipeline: {pipeline} needs clips of frames; this reader gives {provides}"
        )
    update: dict = {"pipeline": pipeline, "size": cfg.size or spec.size}
    if spec.is_clip:
        # A model that reads a random window of a longer clip gets the whole span.
        windowed = pipeline == "face_clip" and longer == "window"
        update["num_frames"] = None if windowed else spec.num_frames
    if spec.in_chans == 1:
        update["gray"] = True
    try:
        return resolve_preprocess(cfg.model_copy(update=update))
    except (UnknownNameError, ValueError) as err:
        raise ConfigError(f"preprocess: {err}") from None


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when there is a GPU, else ``cpu``; a GPU asked for and absent is an
    error, not a silent CPU run."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device: {name} asked for, but this machine has no CUDA GPU")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"train.device: {name}, but there are {torch.cuda.device_count()} CUDA devices"
            )
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("train.device: mps asked for, but it is not available here")
    return name


def supports_stacking(model_name: str, cfg: TrainConfig) -> bool:
    """The stacked engine implements STSTNet with Adam and plain cross-entropy (its recipe:
    no label smoothing or class weights), with flips as the only augmentation, without a
    plateau schedule, an in-fold pretext or the per-epoch test recording (``record_epochs``,
    a per-fold diagnostic: ``auto`` then trains one fold at a time)."""
    augment = cfg.augment
    only_flips = augment is None or not (augment.geometric or augment.grayscale or augment.mixup)
    return (
        model_name == "ststnet"
        and cfg.optimizer == "adam"
        and cfg.loss == "cross_entropy"
        and not cfg.loss_kwargs
        and cfg.class_weight is None
        and only_flips
        and cfg.plateau is None
        and cfg.pretext is None
        and cfg.record_epochs == 0
    )


def _engine(cfg: ExperimentConfig, train: TrainConfig) -> str:
    """``auto`` stacks whenever the recipe allows: measured faster on both devices
    (docs/speed.md: 16.5x one fold at a time on the shared 2-core CPU; on an H100 the
    stacked engine ran the whole composite LOSO in 35 s, BENCHMARKS.md)."""
    stackable = supports_stacking(cfg.model.name, train)
    if cfg.engine == "stacked":
        if not stackable:
            raise ConfigError(
                "engine: stacked runs ststnet with Adam and plain cross-entropy, no augmentation "
                "but flips, no plateau schedule, train.pretext or train.record_epochs"
            )
        return "stacked"
    if cfg.engine == "auto" and stackable:
        return "stacked"
    return "per_fold"


def check_options(
    fn: Callable, options: Mapping, key: str, positional: int = 0, fixed: tuple[str, ...] = ()
) -> None:
    """Refuse option names ``fn`` does not take (after ``positional`` leading arguments and
    the ``fixed`` ones the caller passes itself); a ``**kwargs`` function takes any."""
    parameters = list(inspect.signature(fn).parameters.values())
    if any(p.kind == p.VAR_KEYWORD for p in parameters):
        return
    named = [p.name for p in parameters[positional:] if p.kind != p.VAR_POSITIONAL]
    accepted = set(named) - set(fixed)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(
            f"{key}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(accepted))}"
        )


def _named(key: str, lookup: Callable, name: str):
    try:
        return lookup(name)
    except UnknownNameError as err:
        raise ConfigError(f"{key}: {err}") from None


def _check_model(name: str, num_classes: int, in_chans: int, options: dict) -> None:
    """Build the model once (random init, discarded) so a bad option fails before the run."""
    try:
        models.create(name, num_classes=num_classes, in_chans=in_chans, **options)
    except TypeError as err:
        raise ConfigError(f"model.options: {name} does not take these options ({err})") from None


def _check_input_size(name: str, num_classes: int, spec: InputSpec, options: dict) -> None:
    """One zero input of the configured size through the model, so a size below what its
    layers need fails here naming the key, not as a shape error in the first fold."""
    model = models.create(name, num_classes=num_classes, in_chans=spec.in_chans, **options)
    frames = (spec.num_frames or 1,) if spec.is_clip else ()
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, spec.in_chans, *frames, spec.size, spec.size))
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[0]
        raise ConfigError(
            f"model.input_size: {name} cannot take {spec.size} x {spec.size} inputs ({reason})"
        ) from None


def _check_loss(train: TrainConfig, num_classes: int) -> None:
    builder = _named("train.loss", losses.LOSSES.get, train.loss)
    kwargs = dict(train.loss_kwargs)
    if train.class_weight is not None:
        if "weight" not in inspect.signature(builder).parameters or "weight" in kwargs:
            raise ConfigError(
                f"train.class_weight: {train.loss} takes no class weights, or "
                "train.loss_kwargs already gives them"
            )
        kwargs["weight"] = [1.0] * num_classes
    try:
        losses.create_loss(train.loss, num_classes, **kwargs)
    except TypeError as err:
        raise ConfigError(f"train.loss_kwargs: {train.loss} does not take these ({err})") from None
