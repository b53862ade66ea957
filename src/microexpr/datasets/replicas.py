"""Synthetic clips written in each database's own on-disk layout and annotation format.

``write_layout(name, clips, out, **quirks)`` writes ``clips`` (from
:func:`microexpr.datasets.synthetic.generate_clips`, or anything with the same fields) as
database ``name`` distributes it (FORMATS.md) and returns the ground truth: one dict per sample
the reader must return, with ``id, dataset, subject, clip, label, onset, apex, offset,
apex_source, aus, n_frames`` (+ ``usage`` for FER2013). onset/apex/offset are indices into the
frames written, after the documented repairs, so ``load(name, out)`` must match them exactly.

Quirks are keyword arguments. Count quirks (``missing_apex=2``) apply to that many clips, each
quirk to its own clips, in order; the rest are switches or versions. Each writer's docstring
lists those that apply to its database; :data:`COUNT_QUIRKS` holds every count quirk, and a
name outside it is a ValueError naming the known ones.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from microexpr.datasets import (
    casme,
    casme2,
    casme3,
    ckplus,
    composite,
    fer2013,
    mmew,
    samm,
    smic,
)
from microexpr.labels import get as get_taxonomy
from microexpr.labels import normalise_emotion


class ClipLike(Protocol):
    """What a writer reads of a clip (synthetic.SyntheticClip has these and more)."""

    subject: int
    emotion: str
    aus: tuple[str, ...]
    onset: int
    apex: int
    offset: int
    frames: list[np.ndarray]
    fps: float


@dataclass(eq=False)
class Entry:
    """One sample to write: identity as the database spells it, plus the clip behind it."""

    subject: str  # canonical id (sub01, 006, s01, spNO.1, S005, ...)
    clip: str
    emotion: str  # normalised emotion name of the database
    source: ClipLike
    quirks: set[str] = field(default_factory=set)
    extra: dict = field(default_factory=dict)


@dataclass
class Planned:
    """Frame files to write and the sheet cells / truth that go with them."""

    files: list[tuple[int, np.ndarray]]  # (frame number, image)
    onset: int  # sheet frame numbers; apex/offset None = "not coded" marker, 0 = offset 0
    apex: int | None
    offset: int
    truth: dict


def _plan_frames(entry: Entry, start: int) -> Planned:
    """Number the clip's frames from ``start`` and apply the entry's timing quirks."""
    clip, quirks = entry.source, entry.quirks
    numbers = list(range(start, start + len(clip.frames)))
    on, ap, off = clip.onset, clip.apex, clip.offset
    if "relative_folder" in quirks:
        # The folder holds onset..offset numbered from 1; the sheet keeps absolute numbers.
        files = [(i + 1, clip.frames[on + i]) for i in range(off - on + 1)]
        truth = {"onset": 0, "apex": ap - on, "offset": off - on, "apex_source": "sheet"}
        return Planned(files, numbers[on], numbers[ap], numbers[off], truth)
    if "apex_equals_onset" in quirks:
        ap = on
    if "apex_equals_offset" in quirks:
        ap = off
    keep = list(range(len(numbers)))
    if "missing_frame" in quirks:
        inner = [i for i in range(on + 1, off) if i != ap] or [
            i for i in keep if i not in (on, ap, off)
        ]
        if not inner:
            raise ValueError("missing_frame needs a clip with a frame besides onset/apex/offset")
        keep.remove(inner[0])
    if "missing_apex_frame" in quirks:
        if ap in (on, off):
            raise ValueError("missing_apex_frame needs an apex strictly inside onset..offset")
        keep.remove(ap)
    kept_numbers = [numbers[i] for i in keep]
    files = [(numbers[i], clip.frames[i]) for i in keep]

    def index(number: int) -> int:
        return min(range(len(kept_numbers)), key=lambda k: (abs(kept_numbers[k] - number), k))

    truth = {
        "onset": index(numbers[on]),
        "apex": index(numbers[ap]),
        "offset": index(numbers[off]),
        "apex_source": "sheet",
    }
    apex_cell: int | None = numbers[ap]
    offset_cell = numbers[off]
    if "missing_apex" in quirks:
        apex_cell = None
        truth["apex"] = (truth["onset"] + truth["offset"]) // 2
        truth["apex_source"] = "middle"
    if "offset_zero" in quirks:
        offset_cell = 0
        truth["offset"] = truth["apex"]
    return Planned(files, numbers[on], apex_cell, offset_cell, truth)


# Count quirks the writers understand (each writer's docstring says which apply to it).
COUNT_QUIRKS = frozenset(
    {
        "relative_folder",
        "apex_equals_onset",
        "apex_equals_offset",
        "missing_frame",
        "missing_apex_frame",
        "missing_apex",
        "offset_zero",
        "missing_offset",
        "multi_me",
        "upper_clip",
    }
)


def _assign(entries: list[Entry], counts: dict[str, int]) -> None:
    """Give each count quirk to its own entries, in order; a misspelt quirk is an error."""
    unknown = set(counts) - COUNT_QUIRKS
    if unknown:
        raise ValueError(f"unknown quirk(s) {sorted(unknown)}; known: {sorted(COUNT_QUIRKS)}")
    slots = iter(entries)
    for name, count in counts.items():
        for _ in range(count):
            entry = next(slots, None)
            if entry is None:
                raise ValueError(f"not enough clips for the quirks asked ({counts})")
            entry.quirks.add(name)


def _write_images(folder: Path, files: list[tuple[int, np.ndarray]], name: Callable, gray=False):
    folder.mkdir(parents=True, exist_ok=True)
    for number, image in files:
        if gray and image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if not cv2.imwrite(str(folder / name(number)), image):
            raise OSError(f"could not write {folder / name(number)}")


def _write_xlsx(
    path: Path, sheets: dict[str, list[list]], saved: dict[str, int] | None = None
) -> None:
    """Cells: str, int, None; a str starting with ``=`` becomes a formula. openpyxl cannot
    compute formulas, so ``saved`` (formula -> value) is written into the file as the value a
    spreadsheet program would have saved; other formulas have none."""
    import zipfile

    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    if saved:
        with zipfile.ZipFile(path) as archive:
            parts = {name: archive.read(name) for name in archive.namelist()}
        for name in parts:
            if name.startswith("xl/worksheets/sheet"):
                xml = parts[name].decode()
                for formula, value in saved.items():
                    xml = xml.replace(f"<f>{formula}</f><v />", f"<f>{formula}</f><v>{value}</v>")
                parts[name] = xml.encode()
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in parts.items():
                archive.writestr(name, data)


def _write_xls(path: Path, sheets: dict[str, list[list]]) -> None:
    """Excel 97-2003 file, for the sheet versions distributed as .xls (needs xlwt)."""
    try:
        import xlwt
    except ImportError as err:
        raise ImportError("writing .xls replicas needs xlwt (pip install xlwt)") from err
    book = xlwt.Workbook()
    for title, rows in sheets.items():
        sheet = book.add_sheet(title)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if value is not None:
                    sheet.write(r, c, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(str(path))


def _truth(dataset: str, entry: Entry, planned: Planned, label: str, **more) -> dict:
    return {
        "id": more.pop("id", f"{entry.subject}_{entry.clip}"),
        "dataset": dataset,
        "subject": entry.subject,
        "clip": entry.clip,
        "label": label,
        **planned.truth,
        "aus": tuple(entry.source.aus),
        "n_frames": len(planned.files),
        **more,
    }


def _check_emotion(clip: ClipLike, known: frozenset[str] | Sequence[str], dataset: str) -> str:
    emotion = normalise_emotion(clip.emotion)
    if emotion not in known:
        raise ValueError(
            f"{dataset} has no emotion {clip.emotion!r}; generate clips with emotions from "
            f"{sorted(known)}"
        )
    return emotion


def _per_subject(clips: Sequence[ClipLike]) -> list[tuple[ClipLike, int]]:
    """Each clip with its 0-based position among its subject's clips."""
    seen: dict[int, int] = {}
    out = []
    for clip in clips:
        out.append((clip, seen.get(clip.subject, 0)))
        seen[clip.subject] = seen.get(clip.subject, 0) + 1
    return out


def _cell(value: int | None, marker: str) -> int | str:
    return marker if value is None else value


# ------------------------------------------------------------------------------ CASME II

CASME2_SPELLING = {"others": "Others", "happiness": "happy", "sadness": "sad"}


def _casme2_entries(clips: Sequence[ClipLike]) -> list[Entry]:
    entries = []
    for clip, j in _per_subject(clips):
        name = f"EP{j // 5 + 1:02d}_{j % 5 + 1:02d}" + ("f" if j % 2 else "")
        emotion = _check_emotion(clip, casme2.EMOTIONS, "casme2")
        entries.append(Entry(f"sub{clip.subject:02d}", name, emotion, clip))
    return entries


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
    _assign(entries, counts)
    return _casme2(entries, out, version, frames_dir, subject_as_number, trailing_text, spelling)


def _casme2(entries, out, version, frames_dir, subject_as_number, trailing_text, spelling):
    prefix = "reg_img" if frames_dir == "Cropped" else "img"
    header = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame"]
    header += ["Action Units", "Estimated Emotion"]
    rows, truth = [], []
    for i, entry in enumerate(entries):
        planned = _plan_frames(entry, start=46 + 7 * i)
        folder = out / frames_dir / entry.subject / entry.clip
        _write_images(folder, planned.files, lambda n, p=prefix: f"{p}{n}.jpg")
        number = int(entry.subject[3:])
        aus = "+".join(entry.source.aus)
        emotion = CASME2_SPELLING.get(entry.emotion, entry.emotion) if spelling else entry.emotion
        rows.append(
            [
                number if subject_as_number else f"{number:02d}",
                entry.clip,
                planned.onset,
                _cell(planned.apex, "/"),
                planned.offset,
                int(aus) if aus.isdigit() else aus,  # the sheet mixes ints and text
                emotion,
            ]
        )
        truth.append(_truth("casme2", entry, planned, entry.emotion))
    if trailing_text:
        rows += [[], ["Note: frames are numbered from the start of the raw video."], ["end"]]
    if version == "updated":
        header = header[:2] + [None] + header[2:5] + [None] + header[5:]
        rows = [r[:2] + [None] + r[2:5] + [None] + r[5:] if len(r) > 2 else r for r in rows]
    if version == "ver2":
        _write_xls(out / "CASME2_label_Ver_2.xls", {"Sheet1": [header, *rows]})
    elif version in ("20140508", "updated"):
        name = f"CASME2-coding-{version}.xlsx"
        _write_xlsx(out / name, {"Sheet1": [header, *rows], "Sheet2": [], "Sheet3": []})
    else:
        raise ValueError(f"CASME II version {version!r}: 20140508, updated or ver2")
    return truth


# ------------------------------------------------------------------------------ SAMM

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
    for clip, j in _per_subject(clips):
        sid = f"{clip.subject + 5:03d}"
        emotion = _check_emotion(clip, samm.EMOTIONS, "samm")
        entries.append(Entry(sid, f"{sid}_{j // 3 + 1}_{j % 3 + 1}", emotion, clip))
    return entries


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
    _assign(entries, counts)
    return _samm(entries, out, version, subject_as_number, duration)


def _samm(entries, out, version, subject_as_number, duration):
    preamble = SAMM_PREAMBLE if version == "preamble" else []
    rows, truth, saved = [], [], {}
    for i, entry in enumerate(entries):
        planned = _plan_frames(entry, start=1000 * (i + 1) + 62)
        folder = out / "SAMM" / entry.subject / entry.clip
        _write_images(folder, planned.files, lambda n, s=entry.subject: f"{s}_{n:05d}.jpg", True)
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
                _cell(planned.apex, "-"),
                planned.offset,
                length,
                "Micro - 1/2",
                "+".join(entry.source.aus),
                emotion,
                (i % 7) + 1,
                None,
            ]
        )
        truth.append(_truth("samm", entry, planned, entry.emotion))
    if version == "preamble":
        book = {"FACS codes": [*preamble, SAMM_HEADER, *rows]}
        _write_xlsx(out / "SAMM_Micro_FACS_Codes_v2.xlsx", book, saved)
    elif version == "plain":
        book = {"Sheet1": [SAMM_HEADER, *rows]}
        _write_xlsx(out / "SAMM_20181215_Micro_FACS_Codes_v2.xlsx", book, saved)
    elif version == "micro_only":
        book = {"MICRO_ONLY": [SAMM_HEADER, *rows]}
        _write_xlsx(out / "SAMM_Micro_FACS_Codes_v2.xlsx", book, saved)
    else:
        raise ValueError(f"SAMM version {version!r}: preamble, plain or micro_only")
    return truth


# ------------------------------------------------------------------------------ SMIC

SMIC_CODES = {v: k for k, v in smic.CODES.items()}


def _smic_class(emotion: str) -> str:
    emotion = normalise_emotion(emotion)
    cls = emotion if emotion in smic.EMOTIONS else get_taxonomy("composite3").class_of(emotion)
    if cls is None:
        raise ValueError(f"SMIC has no class for emotion {emotion!r} (negative/positive/surprise)")
    return cls


def _smic_entries(clips: Sequence[ClipLike]) -> list[Entry]:
    entries, seen = [], {}
    for clip in clips:
        cls = _smic_class(clip.emotion)
        key = (clip.subject, cls)
        seen[key] = seen.get(key, 0) + 1
        name = f"s{clip.subject:02d}_{SMIC_CODES[cls]}_{seen[key]:02d}"
        entries.append(Entry(f"s{clip.subject:02d}", name, cls, clip))
    return entries


def write_smic(
    clips: Sequence[ClipLike], out: Path, modality: str = "HS", cropped: bool = False
) -> list[dict]:
    """SMIC: ``<modality>/s1/micro/<class>/s1_ne_01/image<7 digits>.bmp`` (unpadded folders,
    absolute frame numbers, onset..offset only, no sheet); ``cropped``: under
    ``SMIC_all_cropped/`` with ``reg_image`` names. Emotions map to the 3 SMIC classes."""
    return _smic(_smic_entries(clips), out, modality, cropped)


def _smic(entries, out, modality, cropped):
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
        _write_images(folder, files, lambda k, p=prefix: f"{p}{k:07d}.bmp")
        last = len(files) - 1
        timing = {"onset": 0, "apex": last // 2, "offset": last, "apex_source": "middle"}
        planned = Planned(files, start, None, start + last, timing)
        truth.append(_truth("smic", entry, planned, entry.emotion, aus=()))
    return truth


# ------------------------------------------------------------------------------ CASME

CASME_HEADER = ["Subject", "Filename", None, "OnsetF", "ApexF1", "ApexF2", "OffsetF", None]
CASME_HEADER += ["Onset", "Total", "AU", "Emotion"]


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
    for clip, j in _per_subject(clips):
        emotion = _check_emotion(clip, casme.EMOTIONS, "casme")
        entries.append(Entry(f"sub{clip.subject:02d}", f"EP{j + 1:02d}_{j + 11}", emotion, clip))
    _assign(entries, counts)
    rows, truth = [], []
    frames_dir = "Cropped" if cropped else "CASME_raw_selected"
    for i, entry in enumerate(entries):
        planned = _plan_frames(entry, start=1)
        pad = 3 if uneven_padding and i >= len(entries) // 2 else 0
        prefix = f"reg_{entry.clip}" if cropped else entry.clip
        folder = out / frames_dir / entry.subject / entry.clip
        _write_images(folder, planned.files, lambda n, p=prefix, w=pad: f"{p}-{n:0{w}d}.jpg")
        total_frames = planned.offset - planned.onset + 1
        offset_cell = "\\" if "missing_offset" in entry.quirks else planned.offset
        apex_frames = (planned.apex or planned.onset) - planned.onset + 1
        rows.append(
            [
                int(entry.subject[3:]),
                entry.clip,
                None,
                planned.onset,
                _cell(planned.apex, "\\"),
                "\\",
                offset_cell,
                None,
                round(apex_frames * 1000 / 60),
                round(total_frames * 1000 / 60),
                "+".join(entry.source.aus),
                entry.emotion,
            ]
        )
        truth.append(_truth("casme", entry, planned, entry.emotion))
    if version == "xlsx":
        _write_xlsx(out / "casme.xlsx", {"Sheet1": [CASME_HEADER, *rows]})
    elif version == "xls":
        _write_xls(out / "CASME-coded-20190721.xls", {"Sheet1": [CASME_HEADER, *rows]})
    else:
        raise ValueError(f"CASME version {version!r}: xlsx or xls")
    return truth


# ------------------------------------------------------------------------------ CAS(ME)^3

CASME3_SPELLING = {"happiness": "happy", "sadness": "sad"}


def write_casme3(
    clips: Sequence[ClipLike],
    out: Path,
    version: str = "jpgindex",
    me_a: bool = False,
    numbers_as_text: bool = True,
    **counts: int,
) -> list[dict]:
    """CAS(ME)^3 part A: ``version`` ``jpgindex`` (cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx),
    ``table`` (casme3_table.xlsx, sheet ``label``) or ``v2`` (CAS(ME)3_part_A_v2.xls with
    ``Expression type``); frames ``part_A/data/part_A_split/part_A/spNO.1/a/color/<n>.jpg``
    (``me_a``: MEB's ``ME_A/spNO.1/a/color/``). Emotions spelled as the sheet does (``happy``,
    ``sad``, one ``Others``). Counts: multi_me (a second expression in the same clip, id
    ``<clip>2``), offset_zero, missing_apex, apex_equals_onset, apex_equals_offset,
    missing_frame, upper_clip (clip letter in upper case)."""
    entries = []
    for clip, j in _per_subject(clips):
        if j >= 13:
            raise ValueError("CAS(ME)^3 has 13 clips (a-m) per subject")
        emotion = _check_emotion(clip, casme3.EMOTIONS, "casme3")
        entries.append(Entry(f"spNO.{clip.subject}", "abcdefghijklm"[j], emotion, clip))
    _assign(entries, counts)
    base = out / ("ME_A" if me_a else "part_A/data/part_A_split/part_A")
    header = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class"]
    header += ["emotion"] + (["Expression type"] if version == "v2" else [])
    rows, truth = [], []

    def cell(value: int | None) -> int | str | None:
        if value is None:
            return None
        return str(value) if numbers_as_text else value

    for i, entry in enumerate(entries):
        planned = _plan_frames(entry, start=200 + 50 * i)
        _write_images(base / entry.subject / entry.clip / "color", planned.files, "{}.jpg".format)
        emotion = CASME3_SPELLING.get(entry.emotion, entry.emotion)
        if entry.emotion == "others" and i == 0:
            emotion = "Others"
        expressions = [(planned.onset, planned.apex, planned.offset, planned.truth, "")]
        if "multi_me" in entry.quirks:
            # A second expression in the same clip, starting one frame later.
            second = dict(planned.truth)
            second["onset"] = min(planned.truth["onset"] + 1, planned.truth["apex"])
            numbers = [n for n, _ in planned.files]
            expressions.append(
                (numbers[second["onset"]], planned.apex, planned.offset, second, "2")
            )
        for onset, apex, offset, timing, suffix in expressions:
            letter = entry.clip.upper() if "upper_clip" in entry.quirks else entry.clip
            row = [entry.subject, letter, cell(onset), cell(apex), cell(offset)]
            row += ["+".join(entry.source.aus), "1", emotion]
            row += ["Micro-expression"] if version == "v2" else []
            rows.append(row)
            planned_one = Planned(planned.files, onset, apex, offset, timing)
            truth.append(
                _truth(
                    "casme3",
                    entry,
                    planned_one,
                    entry.emotion,
                    id=f"{entry.subject}_{entry.clip}{suffix}",
                )
            )
    if version == "v2":
        # A macro-expression in clip a, which the reader leaves out by default.
        rows.append([*rows[0][:5], "", "1", "happy", "Macro-expression"])
        _write_xls(out / "CAS(ME)3_part_A_v2.xls", {"Sheet1": [header, *rows]})
    elif version == "jpgindex":
        _write_xlsx(out / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", {"Sheet1": [header, *rows]})
    elif version == "table":
        _write_xlsx(out / "casme3_table.xlsx", {"label": [header, *rows]})
    else:
        raise ValueError(f"CAS(ME)^3 version {version!r}: jpgindex, table or v2")
    return truth


# ------------------------------------------------------------------------------ MMEW


def write_mmew(clips: Sequence[ClipLike], out: Path, **counts: int) -> list[dict]:
    """MMEW: ``MMEW_Micro_Exp.xlsx`` + ``Micro_Expression/<emotion>/<Filename>/<n>.jpg``
    (1-based, unpadded). Counts: missing_apex, apex_equals_onset, apex_equals_offset,
    missing_frame."""
    entries = []
    for clip, j in _per_subject(clips):
        emotion = _check_emotion(clip, mmew.EMOTIONS, "mmew")
        entries.append(
            Entry(f"S{clip.subject:02d}", f"S{clip.subject:02d}_{j + 1:03d}", emotion, clip)
        )
    _assign(entries, counts)
    header = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame"]
    header += ["Action Units", "Estimated Emotion", "remarks"]
    rows, truth = [], []
    for entry in entries:
        planned = _plan_frames(entry, start=1)
        folder = out / "Micro_Expression" / entry.emotion / entry.clip
        _write_images(folder, planned.files, "{}.jpg".format)
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
        truth.append(_truth("mmew", entry, planned, entry.emotion))
    _write_xlsx(out / "MMEW_Micro_Exp.xlsx", {"Sheet1": [header, *rows]})
    return truth


# ------------------------------------------------------------------------------ FER2013

FER_FOLDERS = {
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happiness": "happy",
    "sadness": "sad",
    "surprise": "surprise",
    "neutral": "neutral",
}


def _fer_image(clip: ClipLike) -> np.ndarray:
    frame = clip.frames[clip.apex]
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    return cv2.resize(gray, (48, 48), interpolation=cv2.INTER_AREA)


def write_fer2013(
    clips: Sequence[ClipLike], out: Path, variant: str = "fer2013", bad_pixels: int = 0
) -> list[dict]:
    """FER2013: each clip's apex frame as a 48x48 grey image. ``variant`` ``fer2013``
    (fer2013.csv: emotion, pixels, Usage), ``icml`` (icml_face_data.csv, headers with a
    leading space) or ``folders`` (Kaggle train/ and test/ folders of jpgs). Usage cycles
    Training, Training, PublicTest, PrivateTest (folders: train, train, test, test)."""
    usages = ("Training", "Training", "PublicTest", "PrivateTest")
    truth = []
    lines = []
    for i, clip in enumerate(clips):
        emotion = _check_emotion(clip, fer2013.LABELS, "fer2013")
        code = fer2013.LABELS.index(emotion)
        image = _fer_image(clip)
        usage = usages[i % len(usages)]
        if variant == "folders":
            split = "train" if usage == "Training" else "test"
            name = f"{split}_{i:05d}.jpg"
            folder = out / split / FER_FOLDERS[emotion]
            _write_images(folder, [(0, image)], lambda _n, nm=name: nm)
            truth.append(
                {
                    "id": f"{split}/{FER_FOLDERS[emotion]}/{Path(name).stem}",
                    "dataset": "fer2013",
                    "label": emotion,
                    "usage": "Training" if split == "train" else "Test",
                }
            )
            continue
        pixels = " ".join(str(v) for v in image.ravel())
        if i < bad_pixels:
            pixels = pixels.rsplit(" ", 5)[0]
        lines.append(
            [str(code), usage, pixels] if variant == "icml" else [str(code), pixels, usage]
        )
        truth.append({"id": f"fer{i:05d}", "dataset": "fer2013", "label": emotion, "usage": usage})
    if variant == "fer2013":
        _write_csv(out / "fer2013.csv", [["emotion", "pixels", "Usage"], *lines])
    elif variant == "icml":
        _write_csv(out / "icml_face_data.csv", [["emotion", " Usage", " pixels"], *lines])
    elif variant != "folders":
        raise ValueError(f"FER2013 variant {variant!r}: fer2013, icml or folders")
    return truth


def _write_csv(path: Path, rows: list[list[str]], line_end: str = "\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        csv.writer(handle, lineterminator=line_end).writerows(rows)


# ------------------------------------------------------------------------------ CK+


def write_ckplus(
    clips: Sequence[ClipLike],
    out: Path,
    label_dir: str = "Emotion",
    unlabelled: int = 0,
    facs: bool = True,
) -> list[dict]:
    """CK+: ``cohn-kanade-images/S005/001/S005_001_00000001.png`` (8-digit, 1-based), frames
    neutral -> peak (the clip's frames up to its apex), ``<label_dir>/S005/001/
    S005_001_<peak>_emotion.txt`` with one float code; ``FACS/`` AU files when ``facs``.
    The first ``unlabelled`` sequences get no emotion file (the reader skips them)."""
    truth = []
    for i, (clip, j) in enumerate(_per_subject(clips)):
        emotion = _check_emotion(clip, ckplus.CODES, "ckplus")
        subject, seq = f"S{clip.subject + 4:03d}", f"{j + 1:03d}"
        frames = clip.frames[: clip.apex + 1]
        files = [(k + 1, f) for k, f in enumerate(frames)]
        stem = f"{subject}_{seq}"
        _write_images(
            out / "cohn-kanade-images" / subject / seq,
            files,
            lambda n, s=stem: f"{s}_{n:08d}.png",
            True,
        )
        if i < unlabelled:
            continue
        peak = len(files)
        label_folder = out / label_dir / subject / seq
        label_folder.mkdir(parents=True, exist_ok=True)
        code = ckplus.CODES.index(emotion)
        (label_folder / f"{stem}_{peak:08d}_emotion.txt").write_text(f"   {code:.7e}\n")
        if facs:
            facs_folder = out / "FACS" / subject / seq
            facs_folder.mkdir(parents=True, exist_ok=True)
            lines = "".join(f"   {float(au.lstrip('RL')):.7e}   {0.0:.7e}\n" for au in clip.aus)
            (facs_folder / f"{stem}_{peak:08d}_facs.txt").write_text(lines)
        truth.append(
            {
                "id": stem,
                "dataset": "ckplus",
                "subject": subject,
                "clip": seq,
                "label": emotion,
                "onset": 0,
                "apex": peak - 1,
                "offset": peak - 1,
                "apex_source": "sheet",
                "aus": tuple(au.lstrip("RL") for au in clip.aus) if facs else (),
                "n_frames": peak,
            }
        )
    return truth


# ------------------------------------------------------------------------------ composite

# Emotions given to the database rows of each composite class, in turn.
COMPOSITE_EMOTIONS = {
    "casme2": {"negative": ("disgust", "repression"), "positive": ("happiness",)},
    "samm": {
        "negative": ("anger", "contempt", "disgust", "fear", "sadness"),
        "positive": ("happiness",),
    },
}
COMPOSITE_CLASSES = ("negative", "positive", "surprise")


def megc_ids(db: str, subject: str, clip: str) -> tuple[str, str]:
    """(subject, clip) spelled as combined_3class_gt.csv does: ``sub01``, ``s01``/``s01_ne_01``,
    SAMM subject unpadded (``6``)."""
    return (str(int(subject)) if db == "samm" else subject), clip


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
        cls = COMPOSITE_CLASSES[int(label)]
        if db == "smic":
            emotion = cls
        else:
            choices = COMPOSITE_EMOTIONS[db].get(cls, (cls,))
            k = turn[(db, cls)] = turn.get((db, cls), -1) + 1
            emotion = choices[k % len(choices)]
        subject = composite.SUBJECT_IDS[db](subject)
        entry = Entry(subject, clip, emotion, next(source), extra={"class": cls})
        per_db[db].append(entry)
        members.append(entry)
    if extras:
        _composite_extras(per_db, source)
    truth_by_entry = {}
    for db, entries in per_db.items():
        root = out / {"casme2": "CASME2", "samm": "SAMM", "smic": "SMIC"}[db]
        if db == "casme2":
            records = _casme2(entries, root, "20140508", "CASME2_RAW_selected", False, False, False)
        elif db == "samm":
            records = _samm(entries, root, "preamble", False, "formula")
        else:
            records = _smic(entries, root, "HS", False)
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
            gt_rows.append([db, subject, clip, str(COMPOSITE_CLASSES.index(entry.extra["class"]))])
    if gt == "standard":
        _write_csv(out / "combined_3class_gt.csv", gt_rows, "\r\n")
    elif gt == "variant2":
        spaced = [line for row in gt_rows for line in (row, ["", "", "", ""])]
        _write_csv(out / "combined_3class_gt-2.csv", spaced[:-1], "\r\n")
    elif gt is not None:
        raise ValueError(f"gt {gt!r}: standard, variant2 or None")
    return truth


def _composite_rows(clips: Sequence[ClipLike]) -> list[tuple[str, str, str, int]]:
    rows, counts = [], {}
    for i, clip in enumerate(clips):
        db = ("casme2", "samm", "smic")[i % 3]
        cls = _smic_class(clip.emotion)
        k = counts[(db, clip.subject)] = counts.get((db, clip.subject), 0) + 1
        if db == "casme2":
            subject, name = f"sub{clip.subject:02d}", f"EP{k:02d}_01"
        elif db == "samm":
            subject, name = f"{clip.subject + 5:03d}", f"{clip.subject + 5:03d}_1_{k}"
        else:
            subject = f"s{clip.subject:02d}"
            name = f"{subject}_{SMIC_CODES[cls]}_{k:02d}"
        rows.append((db, subject, name, COMPOSITE_CLASSES.index(cls)))
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


# ------------------------------------------------------------------------------ registry

WRITERS: dict[str, Callable[..., list[dict]]] = {
    "casme": write_casme,
    "casme2": write_casme2,
    "samm": write_samm,
    "smic": write_smic,
    "casme3": write_casme3,
    "mmew": write_mmew,
    "fer2013": write_fer2013,
    "ckplus": write_ckplus,
    "composite": write_composite,
}


def write_layout(name: str, clips: Sequence[ClipLike], out: str | Path, **quirks) -> list[dict]:
    """Write ``clips`` as database ``name`` lays them out; return the ground-truth records."""
    if name not in WRITERS:
        raise KeyError(f"no replica writer for {name!r}; known: {', '.join(sorted(WRITERS))}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return WRITERS[name](list(clips), out, **quirks)
