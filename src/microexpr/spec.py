"""What a model takes as input, declared beside it as timm's pretrained configs carry mean,
std and input size, so that training, caching and inference all build the same tensor."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from microexpr.config import InputKind, Scaling

CLIP_KINDS = ("clip", "flow_clip")


class InputSpec(BaseModel):
    """kind: ``flow_image`` (u/v/strain image), ``apex_image`` (a face, the apex frame),
    ``image`` (a still face image), ``clip`` (frames), ``flow_clip`` (flow maps over time) or
    ``flow_regions`` (the flow image's eye and mouth-corner regions placed by the apex face's
    landmarks, tiled 2 x 2: HTNet's input).
    size: side in pixels. in_chans: channels (1 = gray). scaling: ``raw`` 0..255, ``unit``
    0..1, ``imagenet`` ImageNet mean/std (BGR order), ``flow_max`` u/v over their largest
    magnitude and strain over its largest value, per clip. num_frames: clip length."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: InputKind
    size: int = Field(ge=8)
    in_chans: int = Field(3, ge=1)
    scaling: Scaling = "unit"
    num_frames: int | None = Field(None, ge=1)

    @property
    def is_clip(self) -> bool:
        return self.kind in CLIP_KINDS
