"""MEGC2019 composite replica: CASME II, SAMM and SMIC side by side plus the class list."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

from microexpr.datasets.composite import CLASSES, SUBJECT_IDS
from microexpr.synth.replicas import casme2, samm, smic
from microexpr.synth.replicas._common import (
    WRITERS,
    ClipLike,
    Entry,
    write_csv,
)

# Emotions given to the database rows of each composite class, in turn.
COMPOSITE_EMOTIONS = {
    "casme2": {"negative": ("disgust", "repression"), "positive": ("happiness",)},
    "samm": {
        "negative": ("anger", "contempt", "disgust", "fear", "sadness"),
        "positive": ("happiness",),
    },
}


def megc_ids(db: str, subject: str, clip: str) -> tuple[str, str]:
    """(subject, clip) spelled as combined_3class_gt.csv does: ``sub01``, ``s01``/``s01_ne_01``,
    SAMM subject unpadded (``6``)."""
    return (str(int(subject)) if db == "samm" else subject), clip


@WRITERS.register("composite")
def write_composite(
    clips: Sequence[ClipLike],
    out: Path,
    mirror: Sequence[tuple[str, str, str, int]] | None = None,
    gt: str | None = "standard",
    extras: bool = True,
) -> list[dict]:
    """MEGC2019 composite: ``CASME2/``, ``SAMM/`` and ``SMIC/`` replicas side by side plus
    ``combined_3class_gt.csv`` (``gt="standard"``: no header, CRLF; ``"variant2"``: the
    ``-2`` file with ``,,,`` lines and without ``samm,32,032_3_1``; None: no file).

    ``mirror``: (db, subject, clip, label 0/1/2) rows to copy, e.g. the real list in
    ``combined_3_class2_for_optical_flow.csv``; the clips only lend frames (cycled). Without
    it, clip i goes to casme2/samm/smic in turn. ``extras`` adds the rows the composite leaves
    out (CASME II others/sadness/fear and its two excluded clips, SAMM Other rows and subject
    025), so the reader's membership rule is exercised.
    """
    if not clips:
        raise ValueError("composite needs at least one clip for frames")
    rows = list(mirror) if mirror is not None else _composite_rows(clips)
    source = itertools.cycle(clips)
    per_db: dict[str, list[Entry]] = {"casme2": [], "samm": [], "smic": []}
    turn: dict[tuple[str, str], int] = {}
    members = []
    for db, subject, clip, label in rows:
        cls = CLASSES[int(label)]
        if db == "smic":
            emotion = cls
        else:
            choices = COMPOSITE_EMOTIONS[db].get(cls, (cls,))
            k = turn[(db, cls)] = turn.get((db, cls), -1) + 1
            emotion = choices[k % len(choices)]
        subject = SUBJECT_IDS[db](subject)
        entry = Entry(subject, clip, emotion, next(source), extra={"class": cls})
        per_db[db].append(entry)
        members.append(entry)
    if extras:
        _composite_extras(per_db, source)
    truth_by_entry = {}
    for db, entries in per_db.items():
        root = out / {"casme2": "CASME2", "samm": "SAMM", "smic": "SMIC"}[db]
        if db == "casme2":
            records = casme2.write_entries(
                entries, root, "20140508", "CASME2_RAW_selected", False, False, False
            )
        elif db == "samm":
            records = samm.write_entries(entries, root, "preamble", False, "formula")
        else:
            records = smic.write_entries(entries, root, "HS", False)
        truth_by_entry.update({id(e): r for e, r in zip(entries, records, strict=True)})
    dropped = {("samm", "032_3_1")} if gt == "variant2" else set()
    truth, gt_rows = [], []
    for db in ("casme2", "smic", "samm"):  # the order of the official file
        for entry in (e for e in members if e in per_db[db]):
            if (db, entry.clip) in dropped:
                continue
            record = truth_by_entry[id(entry)]
            truth.append({**record, "label": entry.extra["class"], "emotion": record["label"]})
            subject, clip = megc_ids(db, entry.subject, entry.clip)
            gt_rows.append([db, subject, clip, str(CLASSES.index(entry.extra["class"]))])
    if gt == "standard":
        write_csv(out / "combined_3class_gt.csv", gt_rows, "\r\n")
    elif gt == "variant2":
        spaced = [line for row in gt_rows for line in (row, ["", "", "", ""])]
        write_csv(out / "combined_3class_gt-2.csv", spaced[:-1], "\r\n")
    elif gt is not None:
        raise ValueError(f"gt {gt!r}: standard, variant2 or None")
    return truth


def _composite_rows(clips: Sequence[ClipLike]) -> list[tuple[str, str, str, int]]:
    rows, counts = [], {}
    for i, clip in enumerate(clips):
        db = ("casme2", "samm", "smic")[i % 3]
        cls = smic.smic_class(clip.emotion)
        k = counts[(db, clip.subject)] = counts.get((db, clip.subject), 0) + 1
        if db == "casme2":
            subject, name = f"sub{clip.subject:02d}", f"EP{k:02d}_01"
        elif db == "samm":
            subject, name = f"{clip.subject + 5:03d}", f"{clip.subject + 5:03d}_1_{k}"
        else:
            subject = f"s{clip.subject:02d}"
            name = f"{subject}_{smic.SMIC_CODES[cls]}_{k:02d}"
        rows.append((db, subject, name, CLASSES.index(cls)))
    return rows


def _composite_extras(per_db: dict[str, list[Entry]], source) -> None:
    """Rows of the databases that the composite leaves out."""
    casme2_subjects = sorted({e.subject for e in per_db["casme2"]})
    for k, subject in enumerate(casme2_subjects):
        for j, emotion in enumerate(("others", "sadness", "fear") if k == 0 else ("others",)):
            clip = f"EP99_{j + 1:02d}"
            per_db["casme2"].append(Entry(subject, clip, emotion, next(source)))
    for subject, clip, emotion in (
        ("sub04", "EP12_01f", "disgust"),
        ("sub05", "EP09_05f", "happiness"),
    ):
        per_db["casme2"].append(Entry(subject, clip, emotion, next(source)))
    samm_subjects = sorted({e.subject for e in per_db["samm"]}) + ["025"]
    for subject in samm_subjects:
        per_db["samm"].append(Entry(subject, f"{subject}_9_9", "others", next(source)))
