"""The resolved recipe of an experiment: every default filled, nothing left to decide.

:func:`microexpr.recipe.resolve` makes a Plan from a config. Training, the feature cache
and inference (a saved model bundle, video analysis, export) read only the Plan, so a
model is always fed at prediction time exactly what it was trained on.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from microexpr.config import (
    ClipConfig,
    DataConfig,
    PreprocessConfig,
    ProtocolConfig,
    TrainConfig,
)
from microexpr.spec import InputSpec


class Plan(BaseModel):
    """name, the reader and taxonomy (``data``, ``classes``), the model (``model``,
    ``model_options``: builder options with the clip size filled in, ``weights``), its
    ``input``, the ``preprocess`` pipeline that makes that input from the reader's samples
    (None: the reader's files are the input), how clips are read (``clip``), the training
    recipe (``train``, device resolved), the ``protocol`` and the ``engine`` that trains
    folds. Where preprocessing results are cached is no part of it: it changes no result."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    data: DataConfig
    classes: tuple[str, ...]
    model: str
    model_options: dict
    weights: str | None = None
    input: InputSpec
    preprocess: PreprocessConfig | None
    clip: ClipConfig
    train: TrainConfig
    protocol: ProtocolConfig
    engine: Literal["per_fold", "stacked"]
    folds_per_call: int
    ensemble: int
