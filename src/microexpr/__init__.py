"""microexpr: facial micro-expression recognition, from database folders to honest LOSO results."""

from __future__ import annotations

from typing import TYPE_CHECKING

from microexpr.samples import Sample

if TYPE_CHECKING:
    from microexpr.bundle import Bundle, load_bundle

__version__ = "0.1.0"
__all__ = ["Bundle", "Sample", "__version__", "load_bundle"]


def __getattr__(name: str):
    """``microexpr.load_bundle`` and ``microexpr.Bundle`` without importing torch on
    ``import microexpr``."""
    if name in ("load_bundle", "Bundle"):
        from microexpr import bundle

        return getattr(bundle, name)
    raise AttributeError(f"module 'microexpr' has no attribute {name!r}")
