"""CK+ (extended Cohn-Kanade): 593 sequences neutral -> peak, 327 with an emotion label.

Layout (docs/datasets.md, "CK+")::

    <root>/cohn-kanade-images/S005/001/S005_001_00000001.png     (8-digit, 1-based)
    <root>/Emotion/S005/001/S005_001_00000011_emotion.txt        (one float code, peak frame)
    <root>/FACS/S005/001/S005_001_00000011_facs.txt              (AU, intensity per line)

The label folder may be ``Emotion_labels/`` instead. Sequences without an emotion file are
skipped (and counted in the report). Onset is the first frame, apex the labelled peak frame,
offset the last frame. ``neutral=True`` adds each labelled sequence's first frame as a
``neutral`` sample, for the 8-class protocol (taxonomy ck-8).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from microexpr.datasets.coded_sheet import (
    FrameList,
    Timing,
    VerifyImages,
    checked_frames,
    frame_number,
    make_sample,
    unique,
)
from microexpr.datasets.problems import Report, reporting
from microexpr.datasets.registry import register
from microexpr.datasets.sheets import Record, find_dir
from microexpr.errors import DataError
from microexpr.samples import Sample

CODES = ("neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise")
IMAGE_DIRS = (
    "cohn-kanade-images",
    "CK+/cohn-kanade-images",
    "extended-cohn-kanade-images/cohn-kanade-images",
)
LABEL_DIRS = ("Emotion", "Emotion_labels/Emotion", "Emotion_labels", "CK+/Emotion")
FACS_DIRS = ("FACS", "FACS_labels/FACS", "FACS_labels", "CK+/FACS")


def _code(path: Path) -> str:
    """Emotion name of an ``*_emotion.txt`` file (one float, e.g. ``3.0000000e+00``)."""
    text = path.read_text(errors="replace").split()
    try:
        value = float(text[0]) if len(text) == 1 else None
    except ValueError:
        value = None
    if value is None or not value.is_integer() or not 0 <= value < len(CODES):
        raise DataError(path, f"expected one emotion code 0..7, found {' '.join(text)!r}", 1)
    return CODES[int(value)]


def _aus(path: Path) -> tuple[str, ...]:
    aus = []
    for line, text in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            au = float(text.split()[0])
        except ValueError:
            au = math.nan
        if not math.isfinite(au) or not au.is_integer():
            raise DataError(path, f"not an AU code: {text.strip()!r}", line)
        aus.append(str(int(au)))
    return tuple(aus)


def _named(candidates: tuple[str, ...]):
    """Accepts a folder named as the last part of one of ``candidates`` (any case)."""
    names = {c.rsplit("/", 1)[-1].lower() for c in candidates}
    return lambda folder: folder.name.lower() in names


@register("ckplus", "CK+ cohn-kanade-images + Emotion/ (and FACS/) label files")
@reporting
def load_ckplus(
    root: Path,
    images_dir: str | Path | None = None,
    labels_dir: str | Path | None = None,
    facs_dir: str | Path | None = None,
    neutral: bool = False,
    verify_images: VerifyImages = "keyframes",
    report: Report | None = None,
) -> list[Sample]:
    """Labelled CK+ sequences (taxonomies ck-7, ck-8 with ``neutral=True``)."""
    assert report is not None  # given by @reporting
    images_root = find_dir(
        root, images_dir, IMAGE_DIRS, "CK+ images", below=_named(IMAGE_DIRS), report=report
    )
    labels_root = find_dir(
        root, labels_dir, LABEL_DIRS, "CK+ emotion labels", below=_named(LABEL_DIRS), report=report
    )
    facs_root = None
    if facs_dir is not None or any((root / d).is_dir() for d in FACS_DIRS):
        facs_root = find_dir(root, facs_dir, FACS_DIRS, "CK+ FACS")
    samples, unlabelled, total = [], 0, 0
    for subject_dir in sorted(p for p in images_root.iterdir() if p.is_dir()):
        for seq_dir in sorted(p for p in subject_dir.iterdir() if p.is_dir()):
            total += 1
            relative = seq_dir.relative_to(images_root)
            label_files = sorted((labels_root / relative).glob("*_emotion.txt"))
            if not label_files:
                unlabelled += 1
                continue
            record = Record(label_files[0], 1, {})
            with report.guard():
                if len(label_files) > 1:
                    raise record.error(f"{len(label_files)} emotion files for {relative}")
                facs = sorted((facs_root / relative).glob("*_facs.txt")) if facs_root else []
                samples += _sequence(seq_dir, record, facs, neutral, verify_images, report)
    if unlabelled:
        report.note(
            labels_root, None, f"{unlabelled} of {total} sequences have no emotion file; skipped"
        )
    return unique(samples, report)


def _sequence(
    seq_dir: Path,
    record: Record,
    facs: list[Path],
    neutral: bool,
    verify: VerifyImages,
    report: Report,
) -> list[Sample]:
    label = _code(record.file)
    frames = FrameList.scan(seq_dir, record)
    peak = frame_number(Path(re.sub(r"_emotion$", "", record.file.stem)))
    if peak not in frames.numbers:
        raise record.error(f"labelled frame {peak} is not in {seq_dir}")
    apex = frames.numbers.index(peak)
    last = len(frames.numbers) - 1
    if apex != last:
        report.note(record.file, 1, f"labelled frame {peak} is not the last ({frames.numbers[-1]})")
    timing = Timing(0, apex, last, "sheet")
    frames, timing = checked_frames(frames, timing, verify, record, report)
    subject, sequence = seq_dir.parent.name, seq_dir.name
    aus = _aus(facs[0]) if facs else ()
    out = [make_sample("ckplus", subject, sequence, label, frames, timing, record, report, aus=aus)]
    if neutral:
        first = FrameList(frames.folder, frames.paths[:1], frames.numbers[:1])
        out.append(
            make_sample(
                "ckplus",
                subject,
                sequence,
                "neutral",
                first,
                Timing(0, 0, 0, "first frame"),
                record,
                report,
                sample_id=f"{subject}_{sequence}_neutral",
            )
        )
    return out
