"""MEGC2019 composite: CASME II (145) + SAMM (133) + SMIC-HS (164) in 3 classes.

Layout: the three databases side by side, each as its own reader expects::

    <root>/CASME2/...   <root>/SAMM/...   <root>/SMIC/...   (or pass casme2_root= etc.)
    <root>/combined_3class_gt.csv        (optional; or combined_3class_gt-2.csv)

Membership comes from the official ``combined_3class_gt.csv`` when there is one (no header,
CRLF, ``db,subject,clip,label`` with 0 negative, 1 positive, 2 surprise; the ``-2`` variant has
an empty ``,,,`` line after each row and is one SAMM clip short). Without it, the documented
rule (docs/datasets.md, "MEGC2019 composite"): every SMIC-HS clip; SAMM rows whose emotion is not
``Other``; CASME II happiness/disgust/repression/surprise rows minus ``sub04/EP12_01f`` and
``sub05/EP09_05f`` (:data:`CASME2_EXCLUDED`). Emotions map to negative (repression, anger,
contempt, disgust, fear, sadness), positive (happiness) and surprise (taxonomy composite3);
``meta["emotion"]`` keeps the database's own label and ``dataset`` the database.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from microexpr.datasets.casme2 import Casme2Sheet, load_casme2
from microexpr.datasets.coded_sheet import VerifyImages
from microexpr.datasets.problems import Report, reporting
from microexpr.datasets.registry import register
from microexpr.datasets.samm import SammSheet, load_samm
from microexpr.datasets.sheets import find_dir, given_path
from microexpr.datasets.smic import clip_id as smic_clip_id
from microexpr.datasets.smic import load_smic
from microexpr.datasets.smic import subject_id as smic_subject_id
from microexpr.errors import DataError
from microexpr.labels import get as get_taxonomy
from microexpr.samples import Sample

CLASSES = ("negative", "positive", "surprise")
DATABASES = ("casme2", "smic", "samm")  # order of the official file
CASME2_EMOTIONS = frozenset({"happiness", "disgust", "repression", "surprise"})
CASME2_EXCLUDED = frozenset({("sub04", "ep12_01f"), ("sub05", "ep09_05f")})
DB_DIRS = {
    "casme2": ("CASME2", "CASME_II", "CASME II", "casme2"),
    "samm": ("SAMM", "samm"),
    "smic": ("SMIC", "smic", "SMIC-HS", "SMIC_HS"),
}
GT_NAMES = ("combined_3class_gt.csv", "combined_3class_gt-2.csv", "combined_3class_gt*.csv")
READERS = {"casme2": load_casme2, "samm": load_samm, "smic": load_smic}
SUBJECT_IDS = {
    "casme2": Casme2Sheet.subject_id,
    "samm": SammSheet.subject_id,
    "smic": smic_subject_id,
}


def key(db: str, subject: str, clip: str) -> tuple[str, str, str]:
    """Join key across spellings: ``samm,6,006_1_2`` meets SAMM's ``006``, ``s1_ne_01``
    meets ``s01_ne_01``; clip names compare case-insensitively."""
    if db == "smic":
        clip = smic_clip_id(clip)
    return db, SUBJECT_IDS[db](subject), clip.strip().lower()


def in_rule(db: str, sample: Sample) -> bool:
    """Documented membership rule (used when no combined_3class_gt.csv is given)."""
    if db == "smic":
        return True
    if db == "samm":
        return sample.label != "others"
    _, subject, clip = key(db, sample.subject, sample.meta["clip"])
    return sample.label in CASME2_EMOTIONS and (subject, clip) not in CASME2_EXCLUDED


def _read_gt(path: Path, report: Report) -> list[tuple[int, tuple[str, str, str], str]]:
    """(line, key, class) per row of combined_3class_gt.csv; ``,,,`` lines skipped."""
    rows, blank, seen = [], 0, {}
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        try:
            lines = list(csv.reader(handle))
        except csv.Error as err:
            raise DataError(path, f"not a readable CSV ({err})") from None
        for line, cells in enumerate(lines, start=1):
            cells = [c.strip() for c in cells]
            if not any(cells):
                blank += 1
                continue
            with report.guard():
                if len(cells) != 4:
                    raise DataError(path, f"expected db,subject,clip,label; got {cells}", line)
                db, subject, clip, label = cells
                if db.lower() not in READERS:
                    raise DataError(path, f"unknown database {db!r} (casme2, samm, smic)", line)
                if label not in ("0", "1", "2"):
                    raise DataError(path, f"label {label!r} is not 0, 1 or 2", line)
                k = key(db.lower(), subject, clip)
                if k in seen:
                    raise DataError(path, f"duplicate row {cells} (first on line {seen[k]})", line)
                seen[k] = line
                rows.append((line, k, CLASSES[int(label)]))
    if blank:
        report.note(path, None, f"{blank} empty lines skipped (the ',,,' lines of the -2 file)")
    return rows


def _db_root(root: Path, db: str, explicit: str | Path | None, report: Report) -> Path:
    """The database's folder beside the others, or the one so named at any depth below."""
    names = {name.lower() for name in DB_DIRS[db]}
    return find_dir(
        root, explicit, DB_DIRS[db], db, below=lambda f: f.name.lower() in names, report=report
    )


@register("composite", "MEGC2019 composite: CASME II + SAMM + SMIC-HS, 3 classes")
@reporting
def load_composite(
    root: Path,
    gt: str | Path | bool | None = None,
    casme2_root: str | Path | None = None,
    samm_root: str | Path | None = None,
    smic_root: str | Path | None = None,
    options: Mapping[str, Mapping] | None = None,
    verify_images: VerifyImages = "keyframes",
    report: Report | None = None,
) -> list[Sample]:
    """The 442-clip composite. ``gt``: path of combined_3class_gt.csv, None to look for it in
    ``root``, False to use the documented rule. ``options``: keyword arguments per database
    reader, e.g. ``{"casme2": {"sheet": "my.xlsx"}}``."""
    assert report is not None  # given by @reporting
    roots = {"casme2": casme2_root, "samm": samm_root, "smic": smic_root}
    samples: dict[str, list[Sample]] = {}
    for db in DATABASES:
        kwargs = {"verify_images": verify_images, **(options or {}).get(db, {})}
        if db == "smic":
            kwargs.setdefault("modality", "HS")
        samples[db] = READERS[db](_db_root(root, db, roots[db], report), report=report, **kwargs)
    by_key = {key(db, s.subject, s.meta["clip"]): s for db in DATABASES for s in samples[db]}
    taxonomy = get_taxonomy("composite3")

    def member(sample: Sample, cls: str, where: tuple[Path, int] | None = None) -> Sample:
        """The sample in its composite class; a gt label that disagrees with the database's
        own emotion wins, and the report says so."""
        mapped = taxonomy.class_of(sample.label)
        if where is not None and mapped != cls:
            report.repair(
                *where,
                f"{sample.id}: the gt file says {cls}, the {sample.dataset} label "
                f"{sample.label!r} maps to {mapped}; the gt label is used",
            )
        return replace(sample, label=cls, meta={**sample.meta, "emotion": sample.label})

    gt_path = _gt_path(root, gt, report)
    if gt_path is None:
        chosen = [
            member(s, taxonomy.class_of(s.label))
            for db in DATABASES
            for s in samples[db]
            if in_rule(db, s)
        ]
        counts = {db: sum(1 for s in chosen if s.dataset == db) for db in DATABASES}
        report.note(root, None, f"membership by the documented rule (no gt file): {counts}")
        return chosen
    chosen, listed = [], set()
    for line, k, cls in _read_gt(gt_path, report):
        with report.guard():
            sample = by_key.get(k)
            if sample is None:
                raise DataError(gt_path, f"{k[0]} clip {k[1]}/{k[2]} not found by its reader", line)
            chosen.append(member(sample, cls, (gt_path, line)))
            listed.add(k)
    outside = [
        f"{db} {s.subject}/{s.meta['clip']}"
        for db in DATABASES
        for s in samples[db]
        if in_rule(db, s) and key(db, s.subject, s.meta["clip"]) not in listed
    ]
    if outside:
        report.note(
            gt_path,
            None,
            f"{len(outside)} clips the documented rule includes are not in this gt file: "
            + ", ".join(outside[:10])
            + (" ..." if len(outside) > 10 else ""),
        )
    return chosen


def _gt_path(root: Path, gt: str | Path | bool | None, report: Report) -> Path | None:
    if gt is False:
        return None
    if gt is not None and gt is not True:
        path = given_path(root, gt)
        if not path.is_file():
            raise DataError(path, "gt file not found")
        return path
    for pattern in GT_NAMES:
        matches = sorted(root.glob(pattern))
        if matches:
            if len(matches) > 1:
                report.note(matches[0], None, f"{len(matches)} gt files; using this one (gt=)")
            return matches[0]
    if gt is True:
        raise DataError(root, "no combined_3class_gt.csv found")
    return None
