"""SMIC replica: class folders of onset..offset frames, no sheet."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from microexpr.datasets.smic import CODES, EMOTIONS
from microexpr.labels import get as get_taxonomy
from microexpr.labels import normalise_emotion
from microexpr.synth.replicas._common import (
    WRITERS,
    ClipLike,
    Entry,
    Planned,
    truth_record,
    write_images,
)

SMIC_CODES = {v: k for k, v in CODES.items()}


def smic_class(emotion: str) -> str:
    """SMIC's class of an emotion: itself if SMIC codes it, else its composite-3 class."""
    emotion = normalise_emotion(emotion)
    cls = emotion if emotion in EMOTIONS else get_taxonomy("composite3").class_of(emotion)
    if cls is None:
        raise ValueError(f"SMIC has no class for emotion {emotion!r} (negative/positive/surprise)")
    return cls


def _smic_entries(clips: Sequence[ClipLike]) -> list[Entry]:
    entries, seen = [], {}
    for clip in clips:
        cls = smic_class(clip.emotion)
        key = (clip.subject, cls)
        seen[key] = seen.get(key, 0) + 1
        name = f"s{clip.subject:02d}_{SMIC_CODES[cls]}_{seen[key]:02d}"
        entries.append(Entry(f"s{clip.subject:02d}", name, cls, clip))
    return entries


@WRITERS.register("smic")
def write_smic(
    clips: Sequence[ClipLike], out: Path, modality: str = "HS", cropped: bool = False
) -> list[dict]:
    """SMIC: ``<modality>/s1/micro/<class>/s1_ne_01/image<7 digits>.bmp`` (unpadded folders,
    absolute frame numbers, onset..offset only, no sheet); ``cropped``: under
    ``SMIC_all_cropped/`` with ``reg_image`` names. Emotions map to the 3 SMIC classes."""
    return write_entries(_smic_entries(clips), out, modality, cropped)


def write_entries(entries: list[Entry], out: Path, modality: str, cropped: bool) -> list[dict]:
    """Write entries whose ids are already chosen (by :func:`write_smic`, or by the composite
    writer for its SMIC part) as a SMIC folder; options as :func:`write_smic`."""
    base = out / ("SMIC_all_cropped" if cropped else "") / modality
    prefix = "reg_image" if cropped else "image"
    truth = []
    for i, entry in enumerate(entries):
        clip = entry.source
        n = int(entry.subject[1:])
        folder_clip = f"s{n}_" + entry.clip.split("_", 1)[1]
        start = 1234500 + 1000 * i
        frames = clip.frames[clip.onset : clip.offset + 1]
        files = [(start + k, f) for k, f in enumerate(frames)]
        folder = base / f"s{n}" / "micro" / entry.emotion / folder_clip
        write_images(folder, files, lambda k, p=prefix: f"{p}{k:07d}.bmp")
        last = len(files) - 1
        timing = {"onset": 0, "apex": last // 2, "offset": last, "apex_source": "middle"}
        planned = Planned(files, start, None, start + last, timing)
        truth.append(truth_record("smic", entry, planned, entry.emotion, aus=()))
    return truth
