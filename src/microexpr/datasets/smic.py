"""SMIC (HS 100 fps, VIS and NIR 25 fps): short clips in emotion folders, with no sheet.

Layout (docs/datasets.md, "SMIC")::

    <root>/HS/s1/micro/negative/s1_ne_01/image0123456.bmp     (raw)
    <root>/SMIC_all_cropped/HS/s1/micro/negative/s1_ne_01/reg_image0123456.bmp   (cropped)

Folders and clip names are not zero-padded (``s1``, ``s1_ne_01``); the MEGC2019 composite
pads them (``s01``, ``s01_ne_01``), which is the id used here (``meta["folder"]`` keeps the
folder). A clip folder holds onset..offset, so onset and offset are its first and last frames.
SMIC codes no apex: it is set to the middle of onset..offset (``meta["apex_source"] =
"middle"``) and the report says so once; spot it from the frames to do better.
"""

from __future__ import annotations

import re
from pathlib import Path

from microexpr.datasets.coded_sheet import (
    FrameList,
    VerifyImages,
    checked_frames,
    locate,
    make_sample,
    unique,
)
from microexpr.datasets.problems import Report, reporting
from microexpr.datasets.registry import register
from microexpr.datasets.sheets import Record, canonical_id, find_dir, subfolders
from microexpr.errors import DataError
from microexpr.samples import Sample

EMOTIONS = ("negative", "positive", "surprise")
CODES = {"ne": "negative", "po": "positive", "sur": "surprise"}
FPS = {"HS": 100.0, "VIS": 25.0, "NIR": 25.0}
MODALITY_DIRS = ("{m}", "SMIC_all_raw/{m}", "SMIC_all_cropped/{m}", "SMIC/{m}", "{m}_cropped")


def subject_id(text: str) -> str:
    """``s1``, ``s01``, ``1`` -> ``s01`` (the MEGC spelling)."""
    return canonical_id(text, "s", 2)


def clip_id(text: str) -> str:
    """``s1_ne_01`` -> ``s01_ne_01``; other names unchanged."""
    match = re.fullmatch(r"[sS]0*(\d+)_(.+)", text.strip())
    return f"s{int(match.group(1)):02d}_{match.group(2)}" if match else text.strip()


def _has_modality(root: Path, modality: str) -> bool:
    return any((root / p.format(m=modality)).is_dir() for p in MODALITY_DIRS)


def _holds_subjects(folder: Path) -> bool:
    return any(re.fullmatch(r"[sS]\d+", p.name) for p in subfolders(folder))


def _modality_root(
    root: Path, modality: str, frames_dir: str | Path | None, report: Report
) -> Path:
    """``frames_dir``, a documented modality folder, the root itself when it holds ``s1/``...,
    else the one ``<modality>/`` folder with subject folders at any depth below the root."""
    if frames_dir is None and _holds_subjects(root) and not _has_modality(root, modality):
        return root
    return find_dir(
        root,
        frames_dir,
        [p.format(m=modality) for p in MODALITY_DIRS],
        f"SMIC {modality}",
        below=lambda folder: folder.name.upper() == modality and _holds_subjects(folder),
        report=report,
    )


@register("smic", "SMIC HS/VIS/NIR: s*/micro/<emotion>/<clip> folders, no sheet")
@reporting
def load_smic(
    root: Path,
    modality: str | None = None,
    frames_dir: str | Path | None = None,
    verify_images: VerifyImages = "keyframes",
    fps: float | None = None,
    report: Report | None = None,
) -> list[Sample]:
    """SMIC clips of one modality, HS unless ``modality`` says (or only VIS/NIR is there)."""
    assert report is not None  # given by @reporting
    if modality is None:
        present = [m for m in FPS if _has_modality(root, m)]
        modality = present[0] if present else "HS"
        if len(present) > 1:
            report.note(root, None, f"modalities {present} present; read {modality} (modality=)")
    modality = modality.upper()
    if modality not in FPS:
        raise ValueError(f"modality {modality!r}: one of {', '.join(FPS)}")
    base = _modality_root(root, modality, frames_dir, report)
    rate = fps or FPS[modality]
    meta = {"modality": modality}
    subjects = sorted(
        (p for p in base.iterdir() if p.is_dir() and re.fullmatch(r"[sS]\d+", p.name)),
        key=lambda p: subject_id(p.name),
    )
    if not subjects:
        raise DataError(base, "no subject folders (s1, s2, ...)")
    samples = []
    for subject_dir in subjects:
        subject = subject_id(subject_dir.name)
        micro = subject_dir / "micro" if (subject_dir / "micro").is_dir() else subject_dir
        for emotion_dir in sorted(p for p in micro.iterdir() if p.is_dir()):
            label = emotion_dir.name.lower()
            for clip_dir in sorted(p for p in emotion_dir.iterdir() if p.is_dir()):
                record = Record(clip_dir, None, {})
                with report.guard():
                    samples.append(
                        _clip(clip_dir, subject, label, record, report, verify_images, rate, meta)
                    )
    if samples:
        report.note(
            base,
            None,
            f"SMIC codes no apex: apex set to the middle of onset..offset for all "
            f"{len(samples)} clips (meta apex_source='middle')",
        )
    return unique(samples, report)


def _clip(
    clip_dir: Path,
    subject: str,
    label: str,
    record: Record,
    report: Report,
    verify: VerifyImages,
    fps: float,
    meta: dict[str, str],
) -> Sample:
    if label not in EMOTIONS:
        raise record.error(f"emotion folder {clip_dir.parent.name!r} is not one of {EMOTIONS}")
    clip = clip_id(clip_dir.name)
    match = re.fullmatch(r"s\d+_([a-z]+)_\d+", clip, flags=re.IGNORECASE)
    if match and CODES.get(match.group(1).lower(), label) != label:
        raise record.error(
            f"clip code {match.group(1)!r} says {CODES[match.group(1).lower()]}, "
            f"folder says {label}"
        )
    frames = FrameList.scan(clip_dir, record)
    timing = locate(frames, frames.numbers[0], None, frames.numbers[-1], record, report, None)
    frames, timing = checked_frames(frames, timing, verify, record, report)
    return make_sample(
        "smic", subject, clip, label, frames, timing, record, report, fps=fps, meta=meta
    )
