"""Experiment configuration: one YAML file in ``configs/`` per seed experiment and benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from microexpr.inputs import ClipConfig, Scaling
from microexpr.train.trainer import TrainConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    """Which reader, where, and which taxonomy turns its emotions into classes."""

    name: str = "flow_images"
    root: str | None = None
    options: dict = Field(default_factory=dict)
    taxonomy: str = "composite3"


class ModelConfig(_Strict):
    name: str = "ststnet"
    options: dict = Field(default_factory=dict)
    in_chans: int | None = None  # default: what the model declares
    input_size: int | None = None
    scaling: Scaling = "raw"
    weights: str | None = None  # local file of pretrained weights (never downloaded)
    # What a 2-D model reads, in place of the kind it is registered with: e.g. the flow
    # images for a face model (apex_image) or the apex faces for a flow model.
    input_kind: Literal["flow_image", "apex_image", "image"] | None = None


class ProtocolConfig(_Strict):
    name: str = "loso"
    options: dict = Field(default_factory=dict)


class ExperimentConfig(_Strict):
    """Everything that decides a result; it is written beside the result files."""

    name: str = "experiment"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    clip: ClipConfig = Field(default_factory=ClipConfig)  # 3-D models: clip length, x10, flow
    # "stacked" trains all folds of a group as one network (STSTNet recipe); "auto" uses it
    # when the model and recipe allow, else one fold at a time.
    engine: Literal["auto", "per_fold", "stacked"] = "auto"
    folds_per_call: int = 0  # folds trained together by the stacked engine; 0 = all
    ensemble: int = 1  # independently seeded models per fold, probabilities averaged


def load_config(path: str | Path) -> ExperimentConfig:
    """Read a YAML experiment file; unknown keys are errors that name the key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from err
    return ExperimentConfig.model_validate(raw)
