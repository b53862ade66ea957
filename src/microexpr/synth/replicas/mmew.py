"""MMEW replica: micro-expression sheet and per-emotion frame folders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from microexpr.datasets.mmew import EMOTIONS
from microexpr.synth.replicas._common import (
    WRITERS,
    ClipLike,
    Entry,
    assign_quirks,
    check_emotion,
    per_subject,
    plan_frames,
    truth_record,
    write_images,
    write_xlsx,
)


@WRITERS.register("mmew")
def write_mmew(clips: Sequence[ClipLike], out: Path, **counts: int) -> list[dict]:
    """MMEW: ``MMEW_Micro_Exp.xlsx`` + ``Micro_Expression/<emotion>/<Filename>/<n>.jpg``
    (1-based, unpadded). Counts: missing_apex, apex_equals_onset, apex_equals_offset,
    missing_frame."""
    entries = []
    for clip, j in per_subject(clips):
        emotion = check_emotion(clip, EMOTIONS, "mmew")
        entries.append(
            Entry(f"S{clip.subject:02d}", f"S{clip.subject:02d}_{j + 1:03d}", emotion, clip)
        )
    assign_quirks(entries, counts)
    header = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame"]
    header += ["Action Units", "Estimated Emotion", "remarks"]
    rows, truth = [], []
    for entry in entries:
        planned = plan_frames(entry, start=1)
        folder = out / "Micro_Expression" / entry.emotion / entry.clip
        write_images(folder, planned.files, "{}.jpg".format)
        rows.append(
            [
                entry.subject,
                entry.clip,
                planned.onset,
                planned.apex,
                planned.offset,
                "+".join(entry.source.aus),
                entry.emotion,
                None,
            ]
        )
        truth.append(truth_record("mmew", entry, planned, entry.emotion))
    write_xlsx(out / "MMEW_Micro_Exp.xlsx", {"Sheet1": [header, *rows]})
    return truth
