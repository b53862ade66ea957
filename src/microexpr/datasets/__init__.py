"""Database readers (one module each) behind one registry."""

from microexpr.datasets import (  # noqa: F401  (each module registers its reader)
    casme,
    casme2,
    casme3,
    ckplus,
    composite,
    fer2013,
    flow_images,
    image_folder,
    mmew,
    samm,
    smic,
)
from microexpr.datasets.errors import DataError
from microexpr.datasets.registry import load, names, register

__all__ = ["DataError", "load", "names", "register"]
