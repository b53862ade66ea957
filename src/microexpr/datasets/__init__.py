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
from microexpr.datasets.registry import READERS, load, names, register
from microexpr.errors import DataError

__all__ = ["READERS", "DataError", "load", "names", "register"]
