"""Database readers (one module each) behind one registry."""

from microexpr.datasets import flow_images  # noqa: F401  (registers readers)
from microexpr.datasets.errors import DataError
from microexpr.datasets.registry import load, names, register

__all__ = ["DataError", "load", "names", "register"]
