"""Labelled face images in class folders, as seed 000's 4-class set (15106 jpg, 128x128).

Layout: ``<root>/<split>/<class>/*.jpg`` with splits such as ``train``/``test`` (kept in
``meta["usage"]`` for the hold-out protocol), or ``<root>/<class>/*.jpg`` without splits.
Each image is its own subject: such sets carry no subject ids.
"""

from __future__ import annotations

from pathlib import Path

from microexpr.datasets.coded_sheet import (
    IMAGE_SUFFIXES,
    VerifyImages,
    image_problem,
    verify_option,
)
from microexpr.datasets.problems import Report, reporting
from microexpr.datasets.registry import register
from microexpr.errors import DataError
from microexpr.labels import Taxonomy, normalise_emotion
from microexpr.labels import register as register_taxonomy
from microexpr.samples import Sample

# Seed 000's classes (its table 1).
register_taxonomy(Taxonomy("expression-4", ("expressionless", "pout", "smile", "laugh")))


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


@register("image_folder", "face images in <split>/<class>/ or <class>/ folders", provides="images")
@reporting
def load_image_folder(
    root: Path,
    splits: tuple[str, ...] = ("train", "val", "test"),
    verify_images: VerifyImages = "keyframes",
    report: Report | None = None,
) -> list[Sample]:
    """One sample per image; the class is the folder name, the split its parent's name.
    An image that does not decode whole (``verify_images`` other than ``none``) is a bad row:
    skipped with its reason or raised, as ``on_error`` says."""
    assert report is not None  # given by @reporting
    verify_option(verify_images)
    if not root.is_dir():
        raise DataError(root, "not a folder")
    split_dirs = [root / s for s in splits if (root / s).is_dir()]
    parents = [(d.name, d) for d in split_dirs] or [("", root)]
    samples = []
    for usage, parent in parents:
        for class_dir in _class_dirs(parent):
            for image in _images(class_dir):
                reason = image_problem(image) if verify_images != "none" else None
                if reason is not None:
                    report.fail(DataError(image, f"cannot read image: {reason}"))
                    continue
                sample_id = "/".join(p for p in (usage, class_dir.name, image.stem) if p)
                samples.append(
                    Sample(
                        id=sample_id,
                        dataset="image_folder",
                        subject=sample_id,
                        label=normalise_emotion(class_dir.name),
                        frames=(image,),
                        apex=0,
                        meta={"usage": usage} if usage else {},
                    )
                )
    if not samples and not report.errors:
        raise DataError(root, "no images in <class>/ or <split>/<class>/ folders")
    return samples
