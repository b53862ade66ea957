"""CASME replica: coded sheet (xlsx or .xls) and unevenly padded frame names."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from microexpr.datasets.casme import EMOTIONS
from microexpr.synth.replicas._common import (
    WRITERS,
    ClipLike,
    Entry,
    assign_quirks,
    check_emotion,
    per_subject,
    plan_frames,
    sheet_cell,
    truth_record,
    write_images,
    write_xls,
    write_xlsx,
)

CASME_HEADER = ["Subject", "Filename", None, "OnsetF", "ApexF1", "ApexF2", "OffsetF", None]
CASME_HEADER += ["Onset", "Total", "AU", "Emotion"]


@WRITERS.register("casme")
def write_casme(
    clips: Sequence[ClipLike],
    out: Path,
    version: str = "xlsx",
    cropped: bool = False,
    uneven_padding: bool = True,
    **counts: int,
) -> list[dict]:
    """CASME: ``casme.xlsx`` (``version="xlsx"``) or ``CASME-coded-20190721.xls``; columns as
    the coded sheet, empty cells ``\\``; frames ``CASME_raw_selected/sub01/EP01_12/
    EP01_12-<n>.jpg`` (cropped: ``reg_`` prefix) with ``<n>`` 3-digit padded in the second
    half of the rows only (``uneven_padding``). Counts: missing_apex, missing_offset (``\\``,
    derived from Total), apex_equals_onset, apex_equals_offset, missing_frame."""
    entries = []
    for clip, j in per_subject(clips):
        emotion = check_emotion(clip, EMOTIONS, "casme")
        entries.append(Entry(f"sub{clip.subject:02d}", f"EP{j + 1:02d}_{j + 11}", emotion, clip))
    assign_quirks(entries, counts)
    rows, truth = [], []
    frames_dir = "Cropped" if cropped else "CASME_raw_selected"
    for i, entry in enumerate(entries):
        planned = plan_frames(entry, start=1)
        pad = 3 if uneven_padding and i >= len(entries) // 2 else 0
        prefix = f"reg_{entry.clip}" if cropped else entry.clip
        folder = out / frames_dir / entry.subject / entry.clip
        write_images(folder, planned.files, lambda n, p=prefix, w=pad: f"{p}-{n:0{w}d}.jpg")
        total_frames = planned.offset - planned.onset + 1
        offset_cell = "\\" if "missing_offset" in entry.quirks else planned.offset
        apex_frames = (planned.apex or planned.onset) - planned.onset + 1
        rows.append(
            [
                int(entry.subject[3:]),
                entry.clip,
                None,
                planned.onset,
                sheet_cell(planned.apex, "\\"),
                "\\",
                offset_cell,
                None,
                round(apex_frames * 1000 / 60),
                round(total_frames * 1000 / 60),
                "+".join(entry.source.aus),
                entry.emotion,
            ]
        )
        truth.append(truth_record("casme", entry, planned, entry.emotion))
    if version == "xlsx":
        write_xlsx(out / "casme.xlsx", {"Sheet1": [CASME_HEADER, *rows]})
    elif version == "xls":
        write_xls(out / "CASME-coded-20190721.xls", {"Sheet1": [CASME_HEADER, *rows]})
    else:
        raise ValueError(f"CASME version {version!r}: xlsx or xls")
    return truth
