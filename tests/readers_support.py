"""Shared by the tests/test_readers_*.py files: tiny synthetic clips and truth comparison."""

from __future__ import annotations

import functools
from pathlib import Path

from microexpr.samples import Sample
from microexpr.synth import generate_clips

# Emotions each database's writer accepts (its own emotion names).
EMOTIONS = {
    "casme2": ("happiness", "disgust", "surprise", "others", "repression"),
    "samm": ("anger", "contempt", "happiness", "surprise", "others"),
    "smic": ("happiness", "disgust", "surprise"),
    "casme": ("tense", "disgust", "surprise", "repression"),
    "casme3": ("happiness", "disgust", "surprise", "others", "sadness"),
    "mmew": ("happiness", "disgust", "surprise", "others", "anger"),
    "ckplus": ("happiness", "disgust", "surprise", "anger", "contempt"),
    "fer2013": ("happiness", "disgust", "surprise", "anger", "neutral"),
    "composite": ("happiness", "disgust", "surprise"),
}
CLIP_FIELDS = ("dataset", "subject", "label", "onset", "apex", "offset", "apex_source", "aus")


@functools.cache
def clips_for(name: str, subjects: int = 2, per_subject: int = 5, frames: int = 6) -> tuple:
    """Tiny clips (12x12, 6 frames) with emotions the database knows; cached per process."""
    return tuple(
        generate_clips(
            subjects, per_subject, size=12, n_frames=frames, seed=3, emotions=EMOTIONS[name]
        )
    )


def as_truth(sample: Sample) -> dict:
    """The fields of a Sample that the writers' truth records carry."""
    return {
        "dataset": sample.dataset,
        "subject": sample.subject,
        "label": sample.label,
        "onset": sample.onset,
        "apex": sample.apex,
        "offset": sample.offset,
        "apex_source": sample.meta.get("apex_source"),
        "aus": sample.aus,
        "n_frames": len(sample.frames),
    }


def assert_matches(samples: list[Sample], truth: list[dict], fields=CLIP_FIELDS) -> None:
    """Same ids, and every field of each sample equal to the truth record."""
    got = {s.id: as_truth(s) | {"usage": s.meta.get("usage")} for s in samples}
    want = {r["id"]: r for r in truth}
    assert sorted(got) == sorted(want)
    for sample_id, record in want.items():
        for name in fields:
            assert got[sample_id][name] == record[name], (sample_id, name)


def edit_xlsx(path: Path, edit) -> None:
    """Change a written workbook in place: ``edit(sheet)`` on its first sheet."""
    import openpyxl

    book = openpyxl.load_workbook(path)
    edit(book.worksheets[0])
    book.save(path)


def problems(report, kind: str) -> list[str]:
    return [str(p) for p in report.problems if p.kind == kind]
