"""Model families (one file each) behind one registry."""

from microexpr.models import flow_nets  # noqa: F401  (registers models)
from microexpr.models.registry import ModelInfo, create, info, list_models, register_model

__all__ = ["ModelInfo", "create", "info", "list_models", "register_model"]
