"""What a model takes as input, declared beside it as timm's pretrained configs carry mean,
std and input size, so that training, caching and inference all build the same tensor."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from microexpr.config import InputKind, Scaling

CLIP_KINDS = ("clip", "flow_clip")
# A flow image's channels as OpenCV reads them (B, G, R): the published composite files
# (``STSNet_whole_norm_u_v_os``) store u, v, strain as R, G, B, so ``cv2.imread`` gives
# strain, v, u. Measured on all 442: channel 0 is the one that correlates with the strain
# of the other two (median r 0.85; -0.07 to -0.02 with strain in another channel) and sits near
# 0 (per-image median below 40 in 97 % of them), as a non-negative magnitude does.
# ``preprocess/flow.encode_flow_image`` writes the same order, so models trained on the
# composite read the project's own flow images alike. Flow clips (``flow_clip``) are float
# u, v, strain in that order.
FLOW_IMAGE_CHANNELS = ("strain", "v", "u")


class InputSpec(BaseModel):
    """kind: ``flow_image`` (strain/v/u image, :data:`FLOW_IMAGE_CHANNELS`), ``apex_image``
    (a face, the apex frame), ``image`` (a still face image), ``clip`` (frames),
    ``flow_clip`` (flow maps over time) or ``flow_regions`` (the flow image's eye and
    mouth-corner regions placed by the apex face's landmarks, tiled 2 x 2: HTNet's input).
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
