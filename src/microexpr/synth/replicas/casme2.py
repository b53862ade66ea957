"""CASME II replica: coding sheet (xlsx or .xls versions) and frame folders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from microexpr.datasets.casme2 import EMOTIONS
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

CASME2_SPELLING = {"others": "Others", "happiness": "happy", "sadness": "sad"}


def _casme2_entries(clips: Sequence[ClipLike]) -> list[Entry]:
    entries = []
    for clip, j in per_subject(clips):
        name = f"EP{j // 5 + 1:02d}_{j % 5 + 1:02d}" + ("f" if j % 2 else "")
        emotion = check_emotion(clip, EMOTIONS, "casme2")
        entries.append(Entry(f"sub{clip.subject:02d}", name, emotion, clip))
    return entries


@WRITERS.register("casme2")
def write_casme2(
    clips: Sequence[ClipLike],
    out: Path,
    version: str = "20140508",
    frames_dir: str = "CASME2_RAW_selected",
    subject_as_number: bool = False,
    trailing_text: bool = False,
    spelling: bool = False,
    **counts: int,
) -> list[dict]:
    """CASME II: ``version`` 20140508 (xlsx, Sheet1 + empty Sheet2/3), ``updated`` (blank
    ``Unnamed`` columns 3 and 7) or ``ver2`` (``CASME2_label_Ver_2.xls``); frames_dir
    ``CASME2_RAW_selected`` (``img46.jpg``) or ``Cropped`` (``reg_img46.jpg``). Counts:
    missing_apex (``/``), apex_equals_onset, apex_equals_offset, missing_frame,
    missing_apex_frame."""
    entries = _casme2_entries(clips)
    assign_quirks(entries, counts)
    return write_entries(
        entries, out, version, frames_dir, subject_as_number, trailing_text, spelling
    )


def write_entries(
    entries: list[Entry],
    out: Path,
    version: str,
    frames_dir: str,
    subject_as_number: bool,
    trailing_text: bool,
    spelling: bool,
) -> list[dict]:
    """Write entries whose ids are already chosen (by :func:`write_casme2`, or by the composite
    writer for its CASME II part) as a CASME II folder; options as :func:`write_casme2`."""
    prefix = "reg_img" if frames_dir == "Cropped" else "img"
    header = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame"]
    header += ["Action Units", "Estimated Emotion"]
    rows, truth = [], []
    for i, entry in enumerate(entries):
        planned = plan_frames(entry, start=46 + 7 * i)
        folder = out / frames_dir / entry.subject / entry.clip
        write_images(folder, planned.files, lambda n, p=prefix: f"{p}{n}.jpg")
        number = int(entry.subject[3:])
        aus = "+".join(entry.source.aus)
        emotion = CASME2_SPELLING.get(entry.emotion, entry.emotion) if spelling else entry.emotion
        rows.append(
            [
                number if subject_as_number else f"{number:02d}",
                entry.clip,
                planned.onset,
                sheet_cell(planned.apex, "/"),
                planned.offset,
                int(aus) if aus.isdigit() else aus,  # the sheet mixes ints and text
                emotion,
            ]
        )
        truth.append(truth_record("casme2", entry, planned, entry.emotion))
    if trailing_text:
        rows += [[], ["Note: frames are numbered from the start of the raw video."], ["end"]]
    if version == "updated":
        header = header[:2] + [None] + header[2:5] + [None] + header[5:]
        rows = [r[:2] + [None] + r[2:5] + [None] + r[5:] if len(r) > 2 else r for r in rows]
    if version == "ver2":
        write_xls(out / "CASME2_label_Ver_2.xls", {"Sheet1": [header, *rows]})
    elif version in ("20140508", "updated"):
        name = f"CASME2-coding-{version}.xlsx"
        write_xlsx(out / name, {"Sheet1": [header, *rows], "Sheet2": [], "Sheet3": []})
    else:
        raise ValueError(f"CASME II version {version!r}: 20140508, updated or ver2")
    return truth
