"""microexpr: facial micro-expression recognition, from database folders to honest LOSO results."""

from microexpr.samples import Sample

__version__ = "0.1.0"
__all__ = ["Sample", "__version__"]
