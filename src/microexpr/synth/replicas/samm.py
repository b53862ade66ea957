"""SAMM replica: FACS-code workbook (with or without preamble) and frame folders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from microexpr.datasets.samm import EMOTIONS
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
    write_xlsx,
)

SAMM_PREAMBLE = [
    ["SAMM - Spontaneous Actions and Micro-Movements"],
    ["Micro-movement FACS codes, version 2"],
    [],
    ["Coded by two certified FACS coders."],
    ["Frame numbers are absolute within each recording."],
    [],
    ["Inducement Code: stimulus video shown."],
    ["Duration: Offset - Onset + 1."],
    [],
    ["Estimated Emotion follows the AU combination."],
    [],
    ["Please cite the SAMM paper when using this data."],
    [],
]
SAMM_HEADER = [
    "Subject",
    "Filename",
    "Inducement Code",
    "Onset Frame",
    "Apex Frame",
    "Offset Frame",
    "Duration",
    "Micro",
    "Action Units",
    "Estimated Emotion",
    "Objective Classes",
    "Notes",
]


def _samm_entries(clips: Sequence[ClipLike]) -> list[Entry]:
    entries = []
    for clip, j in per_subject(clips):
        sid = f"{clip.subject + 5:03d}"
        emotion = check_emotion(clip, EMOTIONS, "samm")
        entries.append(Entry(sid, f"{sid}_{j // 3 + 1}_{j % 3 + 1}", emotion, clip))
    return entries


@WRITERS.register("samm")
def write_samm(
    clips: Sequence[ClipLike],
    out: Path,
    version: str = "preamble",
    subject_as_number: bool = False,
    duration: str = "formula",
    **counts: int,
) -> list[dict]:
    """SAMM: ``version`` ``preamble`` (SAMM_Micro_FACS_Codes_v2.xlsx, header on row 14),
    ``plain`` (SAMM_20181215_..., header on row 1) or ``micro_only`` (sheet MICRO_ONLY);
    ``duration`` ``formula`` (``=SUM(F2-D2)+1`` with its saved value, as Excel leaves it),
    ``unsaved`` (the formula without a value), ``value`` or ``wrong`` (a plain wrong number).
    Counts: missing_apex (``-``), apex_equals_onset, apex_equals_offset, missing_frame,
    missing_apex_frame, relative_folder (folder numbered 1..N, sheet absolute)."""
    entries = _samm_entries(clips)
    assign_quirks(entries, counts)
    return write_entries(entries, out, version, subject_as_number, duration)


def write_entries(
    entries: list[Entry], out: Path, version: str, subject_as_number: bool, duration: str
) -> list[dict]:
    """Write entries whose ids are already chosen (by :func:`write_samm`, or by the composite
    writer for its SAMM part) as a SAMM folder; options as :func:`write_samm`."""
    preamble = SAMM_PREAMBLE if version == "preamble" else []
    rows, truth, saved = [], [], {}
    for i, entry in enumerate(entries):
        planned = plan_frames(entry, start=1000 * (i + 1) + 62)
        folder = out / "SAMM" / entry.subject / entry.clip
        write_images(folder, planned.files, lambda n, s=entry.subject: f"{s}_{n:05d}.jpg", True)
        excel_row = len(preamble) + 2 + len(rows)
        frames = planned.offset - planned.onset + 1
        if duration in ("formula", "unsaved"):
            length: int | str = f"=SUM(F{excel_row}-D{excel_row})+1"
            if duration == "formula":
                saved[length[1:]] = frames
        else:
            length = frames + (duration == "wrong")
        emotion = "Other" if entry.emotion == "others" else entry.emotion.title()
        rows.append(
            [
                int(entry.subject) if subject_as_number else entry.subject,
                entry.clip,
                f"{entry.clip[4]}_{i % 9 + 1}",
                planned.onset,
                sheet_cell(planned.apex, "-"),
                planned.offset,
                length,
                "Micro - 1/2",
                "+".join(entry.source.aus),
                emotion,
                (i % 7) + 1,
                None,
            ]
        )
        truth.append(truth_record("samm", entry, planned, entry.emotion))
    if version == "preamble":
        book = {"FACS codes": [*preamble, SAMM_HEADER, *rows]}
        write_xlsx(out / "SAMM_Micro_FACS_Codes_v2.xlsx", book, saved)
    elif version == "plain":
        book = {"Sheet1": [SAMM_HEADER, *rows]}
        write_xlsx(out / "SAMM_20181215_Micro_FACS_Codes_v2.xlsx", book, saved)
    elif version == "micro_only":
        book = {"MICRO_ONLY": [SAMM_HEADER, *rows]}
        write_xlsx(out / "SAMM_Micro_FACS_Codes_v2.xlsx", book, saved)
    else:
        raise ValueError(f"SAMM version {version!r}: preamble, plain or micro_only")
    return truth
