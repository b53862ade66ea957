"""FER2013: 35,887 48x48 grey faces in one CSV, with its own Training/PublicTest/PrivateTest split.

Layouts (docs/datasets.md, "FER2013")::

    <root>/fer2013.csv             emotion, pixels, Usage
    <root>/icml_face_data.csv      emotion, " Usage", " pixels" (headers with a leading space)
    <root>/train.csv               emotion, pixels (Kaggle; test.csv has no labels, not read)
    <root>/train/<angry|...>/*.jpg and test/<...>/*.jpg   (Kaggle image folders)

Downstream code reads images from files, so CSV pixels are checked (2304 values 0..255 per
row, all rows before anything is written) and saved once as PNGs under ``images_dir``
(default ``<root>/fer2013_png/<csv name>/``), reused while the CSV is unchanged. Each image is
its own subject (FER2013 has no identities); ``meta["usage"]`` holds the split.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from microexpr.datasets.coded_sheet import (
    IMAGE_SUFFIXES,
    VerifyImages,
    check_images,
    verify_option,
)
from microexpr.datasets.problems import Report, reporting
from microexpr.datasets.registry import register
from microexpr.datasets.sheets import Record, find_file, subfolders
from microexpr.errors import DataError
from microexpr.labels import normalise_emotion
from microexpr.samples import Sample

LABELS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")  # codes 0-6
SIDE = 48
CSV_NAMES = ("fer2013.csv", "icml_face_data.csv", "train.csv")
FOLDER_USAGE = {"train": "Training", "test": "Test"}


def _pixels(text: str, record: Record) -> np.ndarray:
    try:
        values = np.array(text.split(), dtype=np.int64)
    except (ValueError, OverflowError):
        raise record.error("pixels hold something other than numbers 0..255") from None
    if values.size != SIDE * SIDE:
        raise record.error(f"pixels: {values.size} values, expected {SIDE}x{SIDE} = {SIDE * SIDE}")
    if values.min() < 0 or values.max() > 255:
        raise record.error("pixels outside 0..255")
    return values.astype(np.uint8).reshape(SIDE, SIDE)


def _read_csv(path: Path, report: Report) -> list[tuple[Record, str, str, np.ndarray]]:
    """(record, label, usage, image) per row; every row checked before anything is used.
    Read as a stream (the CSV is about 300 MB); bytes that are not UTF-8 become U+FFFD and
    fail the row they are in."""
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.reader(handle)
        try:
            header = [h.strip().lower() for h in next(reader, [])]
            if "emotion" not in header or "pixels" not in header:
                raise DataError(path, f"needs columns emotion and pixels; header is {header}", 1)
            col = {n: header.index(n) for n in ("emotion", "pixels", "usage") if n in header}
            return _rows(reader, header, col, path, report)
        except csv.Error as err:
            raise DataError(path, f"not a readable CSV ({err})", reader.line_num) from None


def _rows(
    reader, header: list[str], col: dict[str, int], path: Path, report: Report
) -> list[tuple[Record, str, str, np.ndarray]]:
    """Each good data line as (record, label, usage, image); blank lines skipped, bad ones
    failed through ``report``."""
    rows = []
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue
        record = Record(path, reader.line_num, {})
        with report.guard():
            if len(cells) < len(header):
                raise record.error(f"{len(cells)} fields, expected {len(header)}")
            code = cells[col["emotion"]].strip()
            if not (code.isascii() and code.isdigit()) or int(code) >= len(LABELS):
                raise record.error(f"emotion {code!r} is not a code 0..{len(LABELS) - 1}")
            usage = cells[col["usage"]].strip() if "usage" in col else "Training"
            rows.append((record, LABELS[int(code)], usage, _pixels(cells[col["pixels"]], record)))
    return rows


def _from_csv(path: Path, images_dir: Path, report: Report) -> list[Sample]:
    rows = _read_csv(path, report)
    stat = path.stat()
    stamp = f"{path.name} {stat.st_size} {stat.st_mtime_ns}\n"
    marker = images_dir / ".written"
    fresh = not (marker.is_file() and marker.read_text(errors="replace") == stamp)
    if fresh:
        images_dir.mkdir(parents=True, exist_ok=True)
        report.note(images_dir, None, f"{len(rows)} images of {path.name} written as PNG here")
    samples = []
    for record, label, usage, image in rows:
        sample_id = f"fer{record.row - 2:05d}"
        png = images_dir / f"{sample_id}.png"
        if fresh or not png.is_file():  # a PNG deleted since is written again
            cv2.imwrite(str(png), image)
        samples.append(_sample(sample_id, label, png, usage, record))
    if fresh:
        marker.write_text(stamp)
    usages = sorted({s.meta["usage"] for s in samples})
    unknown = [u for u in usages if u not in ("Training", "PublicTest", "PrivateTest")]
    if unknown:
        report.note(path, None, f"unexpected Usage values {unknown}")
    return samples


def _sample(sample_id: str, label: str, image: Path, usage: str, record: Record) -> Sample:
    return Sample(
        id=sample_id,
        dataset="fer2013",
        subject=sample_id,
        label=label,
        frames=(image,),
        onset=0,
        apex=0,
        offset=0,
        meta={"usage": usage, "source": f"{record.file}:{record.row}"},
    )


def _from_folders(root: Path, report: Report, verify: VerifyImages) -> list[Sample]:
    """Kaggle's train/<emotion>/*.jpg folders; a folder that is not an emotion, or an image
    that does not decode whole, is a bad row (skipped or raised as ``on_error`` says)."""
    verify_option(verify)
    samples = []
    for split, usage in FOLDER_USAGE.items():
        for folder in subfolders(root / split):
            label = normalise_emotion(folder.name)
            record = Record(folder, None, {})
            if label not in LABELS:
                report.fail(record.error(f"folder {folder.name!r} is not one of the 7 emotions"))
                continue
            for image in sorted(folder.iterdir()):
                if image.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                with report.guard():
                    if verify != "none":
                        check_images([image], Record(image, None, {}))
                    sample_id = f"{split}/{folder.name}/{image.stem}"
                    samples.append(_sample(sample_id, label, image, usage, record))
    if not samples:
        raise DataError(root, "no images in train/<emotion>/ or test/<emotion>/")
    return samples


@register(
    "fer2013",
    "FER2013 fer2013.csv / icml_face_data.csv / train+test image folders",
    provides="images",
)
@reporting
def load_fer2013(
    root: Path,
    csv_file: str | Path | None = None,
    images_dir: str | Path | None = None,
    usage: str | None = None,
    verify_images: VerifyImages = "keyframes",
    report: Report | None = None,
) -> list[Sample]:
    """FER2013 faces (taxonomy fer-7); ``usage`` keeps one split (Training, PublicTest, ...)."""
    assert report is not None  # given by @reporting
    if (
        csv_file is None
        and (root / "train").is_dir()
        and not any((root / n).is_file() for n in CSV_NAMES)
    ):
        samples = _from_folders(root, report, verify_images)
    else:
        path = find_file(root, csv_file, CSV_NAMES, "FER2013 CSV", report, depth=2)
        if path.name == "train.csv" and (path.parent / "test.csv").is_file():
            report.note(path.parent / "test.csv", None, "test.csv has no labels; not read")
        folder = Path(images_dir) if images_dir else root / "fer2013_png" / path.stem
        samples = _from_csv(path, folder, report)
    if usage is not None:
        samples = [s for s in samples if s.meta["usage"].lower() == usage.lower()]
    return samples
