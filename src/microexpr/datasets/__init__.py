"""Database readers (one module each) behind one registry."""

from microexpr.datasets import (  # noqa: F401  (each module registers its reader)
    casme,
    casme2,
    casme3,
    casme3_lv,
    casme_sq,
    ckplus,
    composite,
    fer2013,
    flow_images,
    image_folder,
    mmew,
    samm,
    samm_lv,
    smic,
)
from microexpr.datasets.registry import (
    READERS,
    VIDEO_READERS,
    load,
    load_videos,
    names,
    register,
    register_videos,
)
from microexpr.errors import DataError

__all__ = [
    "READERS",
    "VIDEO_READERS",
    "DataError",
    "load",
    "load_videos",
    "names",
    "register",
    "register_videos",
]
