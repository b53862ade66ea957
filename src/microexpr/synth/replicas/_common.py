"""What every replica writer shares: the clip protocol, the sample to write, frame numbering
with the timing quirks, quirk assignment, image / xlsx / xls / csv writing and truth records.

Quirks are keyword arguments. Count quirks (``missing_apex=2``) apply to that many clips, each
quirk to its own clips, in order; the rest are switches or versions. Each writer's docstring
lists those that apply to its database; :data:`COUNT_QUIRKS` holds every count quirk, and a
name outside it is a ValueError naming the known ones.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from microexpr.labels import normalise_emotion
from microexpr.registry import Registry

Writer = Callable[..., list[dict]]
# Database name (as its reader is registered) -> writer(clips, out, **quirks) -> truth records.
WRITERS: Registry[Writer] = Registry("replica writer")


class ClipLike(Protocol):
    """What a writer reads of a clip (synth.SyntheticClip has these and more)."""

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


def plan_frames(entry: Entry, start: int) -> Planned:
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


def assign_quirks(entries: list[Entry], counts: dict[str, int]) -> None:
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


def write_images(
    folder: Path,
    files: list[tuple[int, np.ndarray]],
    name: Callable[[int], str],
    gray: bool = False,
) -> None:
    """Write ``(number, image)`` files as ``folder / name(number)``; a failed write is an error
    (cv2.imwrite only returns False)."""
    folder.mkdir(parents=True, exist_ok=True)
    for number, image in files:
        if gray and image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if not cv2.imwrite(str(folder / name(number)), image):
            raise OSError(f"could not write {folder / name(number)}")


def write_xlsx(
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


def write_xls(path: Path, sheets: dict[str, list[list]]) -> None:
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


def truth_record(dataset: str, entry: Entry, planned: Planned, label: str, **more) -> dict:
    """The truth the reader must return for ``entry``; ``more`` adds or overrides fields."""
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


def check_emotion(clip: ClipLike, known: frozenset[str] | Sequence[str], dataset: str) -> str:
    """The clip's emotion if ``dataset`` codes it, else an error naming the ones it does."""
    emotion = normalise_emotion(clip.emotion)
    if emotion not in known:
        raise ValueError(
            f"{dataset} has no emotion {clip.emotion!r}; generate clips with emotions from "
            f"{sorted(known)}"
        )
    return emotion


def per_subject(clips: Sequence[ClipLike]) -> list[tuple[ClipLike, int]]:
    """Each clip with its 0-based position among its subject's clips."""
    seen: dict[int, int] = {}
    out = []
    for clip in clips:
        out.append((clip, seen.get(clip.subject, 0)))
        seen[clip.subject] = seen.get(clip.subject, 0) + 1
    return out


def aus_cell(aus: Sequence[str]) -> int | str:
    """An action-unit cell as the sheets hold it: a number when it is one AU ("12"), else
    the text ("6+12")."""
    text = "+".join(aus)
    return int(text) if text.isdigit() else text


def sheet_cell(value: int | None, marker: str) -> int | str:
    """A frame-number cell, or the database's "not coded" marker (``/``, ``-``, ``\\``)."""
    return marker if value is None else value


def write_csv(path: Path, rows: list[list[str]], line_end: str = "\n") -> None:
    """CSV with the given line ending (the MEGC class lists use CRLF)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        csv.writer(handle, lineterminator=line_end).writerows(rows)
