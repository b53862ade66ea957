"""Model families (one file each) behind one registry."""

from microexpr.models import (
    c3d_vgg,  # noqa: F401  (registers models)
    classical,  # noqa: F401  (registers models)
    densenet_eca,  # noqa: F401  (registers models)
    flow_nets,  # noqa: F401  (registers models)
    htnet,  # noqa: F401  (registers models)
    psa_resnet,  # noqa: F401  (registers models)
    rcn,  # noqa: F401  (registers models)
    resnet3d_ms,  # noqa: F401  (registers models)
    se_resnext,  # noqa: F401  (registers models)
    sssnet,  # noqa: F401  (registers models)
)
from microexpr.models.registry import (
    MODELS,
    ModelEntry,
    create,
    info,
    list_models,
    load_weights,
    register_model,
)

__all__ = [
    "MODELS",
    "ModelEntry",
    "create",
    "info",
    "list_models",
    "load_weights",
    "register_model",
]
