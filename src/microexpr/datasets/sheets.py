"""Annotation sheets read as text, whatever the version: xlsx, xls or csv.

Why not ``pandas.read_excel``: it turns the text ``006`` into the number 6, gives a cached
value or NaN for a formula without saying which, and needs the header row number in advance.
Here every cell is read as written (numbers without a trailing ``.0``), the header row is found
by its column names (so a 13-row preamble needs no setting), formulas without a saved value are
flagged, and each record keeps its Excel row number for messages.
"""

from __future__ import annotations

import csv
import fnmatch
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from microexpr.datasets.problems import Report
from microexpr.errors import DataError
from microexpr.labels import normalise_emotion

HEADER_SEARCH_ROWS = 30
# Cell texts that mean "not coded" in the distributed sheets ("/" CASME II, "\" CASME).
MISSING = frozenset({"", "/", "\\", "-", "--", "nan", "none", "n/a", "na", "null", "?"})


@dataclass(frozen=True)
class RawRow:
    """One sheet row: 1-based row number as a spreadsheet shows it, cells as text."""

    number: int
    cells: tuple[str, ...]
    formulas: Mapping[int, str] = field(default_factory=dict)  # column -> formula, no value
    computed: frozenset[int] = frozenset()  # columns holding a formula with a saved value


def cell_text(value: object) -> str:
    """Text of a cell value: ints without ``.0``, dates in ISO form, stripped strings."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value).strip()


def _xlsx_rows(path: Path) -> dict[str, list[RawRow]]:
    import openpyxl

    try:  # openpyxl raises many types for a damaged file, on opening or while reading a sheet
        value_book = openpyxl.load_workbook(path, data_only=True, read_only=True)
        formula_book = openpyxl.load_workbook(path, data_only=False, read_only=True)
        try:
            return {
                name: _xlsx_sheet(value_book[name], formula_book[name])
                for name in value_book.sheetnames
            }
        finally:
            value_book.close()
            formula_book.close()
    except Exception as err:
        raise DataError(path, f"cannot open as an Excel workbook ({err})") from err


def _xlsx_sheet(values, written) -> list[RawRow]:
    """One worksheet read twice, as saved values and as written (formulas)."""
    rows = []
    pairs = zip(
        values.iter_rows(values_only=True), written.iter_rows(values_only=True), strict=False
    )
    for number, (cached, source) in enumerate(pairs, start=1):
        texts = tuple(cell_text(v) for v in cached)
        formulas = {
            col: (str(w), v)
            for col, (v, w) in enumerate(zip(cached, source, strict=False))
            if isinstance(w, str) and w.startswith("=")
        }
        unsaved = {col: f for col, (f, v) in formulas.items() if v is None}
        saved = frozenset(col for col, (_, v) in formulas.items() if v is not None)
        rows.append(RawRow(number, texts, unsaved, saved))
    return rows


def _xls_rows(path: Path) -> dict[str, list[RawRow]]:
    import xlrd

    try:
        book = xlrd.open_workbook(str(path))
    except Exception as err:  # xlrd raises XLRDError, struct.error, ... for damaged files
        raise DataError(path, f"cannot open as an Excel 97-2003 workbook ({err})") from err
    sheets = {}
    for sheet in book.sheets():
        rows = []
        for r in range(sheet.nrows):
            cells = []
            for c in range(sheet.ncols):
                cells.append(_xls_cell_text(sheet.cell(r, c), book.datemode))
            rows.append(RawRow(r + 1, tuple(cells)))
        sheets[sheet.name] = rows
    return sheets


def _xls_cell_text(cell, datemode: int) -> str:
    """Text of an .xls cell: dates in ISO form (the number when it is no date), an error
    cell as Excel shows it (``#DIV/0!``), never its internal code."""
    import xlrd

    if cell.ctype == xlrd.XL_CELL_ERROR:
        return xlrd.error_text_from_code.get(cell.value, "#ERROR")
    if cell.ctype == xlrd.XL_CELL_DATE:
        try:
            return cell_text(xlrd.xldate_as_datetime(cell.value, datemode))
        except (ValueError, OverflowError, xlrd.xldate.XLDateError):
            return cell_text(cell.value)
    return cell_text(cell.value)


def _csv_rows(path: Path) -> dict[str, list[RawRow]]:
    """A CSV as one sheet: UTF-8 (with or without BOM), else Latin-1, as Excel writes either;
    a NUL byte or a broken quote is a DataError naming the line."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(path, f"cannot read ({err.strerror or err})") from err
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    reader = csv.reader(text.splitlines())
    try:
        rows = [RawRow(i, tuple(c.strip() for c in cells)) for i, cells in enumerate(reader, 1)]
    except csv.Error as err:
        raise DataError(path, f"not a readable CSV ({err})", reader.line_num + 1) from None
    return {path.stem: rows}


def read_sheets(path: Path) -> dict[str, list[RawRow]]:
    """Every sheet of a workbook (a CSV is one sheet) as rows of text."""
    if not path.is_file():
        raise DataError(path, "annotation file not found")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return _xlsx_rows(path)
    if suffix == ".xls":
        return _xls_rows(path)
    if suffix in (".csv", ".txt"):
        return _csv_rows(path)
    raise DataError(path, f"unsupported annotation file type {suffix!r} (xlsx, xls or csv)")


def _key(name: str) -> str:
    """Header matching ignores case, spaces and punctuation: ``Onset Frame`` = ``OnsetFrame``."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


@dataclass(frozen=True)
class Record:
    """One data row: cells by role (``subject``, ``onset``, ...) plus where it came from."""

    file: Path
    row: int
    cells: Mapping[str, str]
    formulas: Mapping[str, str] = field(default_factory=dict)

    def error(self, reason: str) -> DataError:
        return DataError(self.file, reason, self.row)

    def text(self, role: str) -> str:
        """Cell text; a formula whose value was never saved is an error, not an empty cell."""
        if role in self.formulas:
            raise self.error(
                f"{role} cell is the formula {self.formulas[role]} with no saved value; "
                "open and save the sheet in a spreadsheet program"
            )
        return self.cells.get(role, "")

    def frame(self, role: str) -> int | None:
        """Frame number, or None when the cell says "not coded" (``/``, ``\\``, empty)."""
        text = self.text(role)
        if text.lower() in MISSING:
            return None
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or not value.is_integer():
            raise self.error(f"{role} {text!r} is not a frame number")
        return int(value)


@dataclass(frozen=True)
class Table:
    file: Path
    sheet: str
    header_row: int
    columns: Mapping[str, int]  # role -> 0-based column
    records: list[Record]


def _resolve_columns(
    header: Sequence[str],
    roles: Mapping[str, Sequence[str]],
    overrides: Mapping[str, str | int],
) -> dict[str, int]:
    keys = [_key(h) for h in header]
    found = {}
    for role, candidates in roles.items():
        wanted = overrides.get(role, None)
        if isinstance(wanted, int):
            if wanted < len(header):
                found[role] = wanted
            continue
        names = [wanted] if wanted is not None else list(candidates)
        for name in names:
            if _key(name) in keys:
                found[role] = keys.index(_key(name))
                break
    return found


def read_table(
    path: Path,
    roles: Mapping[str, Sequence[str]],
    required: Collection[str],
    key: Collection[str],
    report: Report,
    columns: Mapping[str, str | int] | None = None,
    sheet: str | None = None,
) -> Table:
    """The coded rows of an annotation file.

    ``roles`` maps each role to the header names the known sheet versions use; ``columns``
    (user) overrides a role with another header name or a 0-based column number. The header
    is the first row, within the first 30 of a sheet, naming every ``required`` role; rows
    above it are a preamble (reported). A record has every ``key`` role filled; blank rows are
    skipped, text rows after the last record are reported and skipped, and a part-filled row
    before it is an error.
    """
    overrides = dict(columns or {})
    unknown = set(overrides) - set(roles)
    if unknown:
        raise ValueError(f"unknown column roles {sorted(unknown)}; roles are {sorted(roles)}")
    sheets = read_sheets(path)
    if sheet is not None and sheet not in sheets:
        raise DataError(path, f"no sheet {sheet!r}; sheets are {list(sheets)}")
    best: tuple[int, str, RawRow] | None = None  # most roles matched by a would-be header
    for name in [sheet] if sheet is not None else list(sheets):
        rows = sheets[name]
        for i, raw in enumerate(rows[:HEADER_SEARCH_ROWS]):
            found = _resolve_columns(raw.cells, roles, overrides)
            if set(required) <= set(found):
                if sheet is None:
                    _note_other_headers(path, sheets, name, roles, required, overrides, report)
                return _table(path, name, rows, i, found, key, report)
            matched = len(set(required) & set(found))
            if best is None or matched > best[0]:
                best = (matched, name, raw)
    wanted = {r: overrides.get(r, " / ".join(map(str, roles[r][:3]))) for r in sorted(required)}
    if best is not None and best[0] >= 2:
        _, name, raw = best
        found = _resolve_columns(raw.cells, roles, overrides)
        lacking = {r: w for r, w in wanted.items() if r not in found}
        raise DataError(
            path,
            f"sheet {name!r}: this looks like the header but has no column for {lacking}; "
            f"its cells are {[c for c in raw.cells if c]}; pass columns={{role: header}}",
            raw.number,
        )
    raise DataError(
        path,
        f"no header row naming the columns {wanted} in the first {HEADER_SEARCH_ROWS} rows of "
        f"{'sheet ' + repr(sheet) if sheet else 'any sheet'}; pass columns={{role: header}}",
    )


def _note_other_headers(
    path: Path,
    sheets: Mapping[str, list[RawRow]],
    used: str,
    roles: Mapping[str, Sequence[str]],
    required: Collection[str],
    overrides: Mapping[str, str | int],
    report: Report,
) -> None:
    """Say so when another sheet of the workbook has a header too (the first one is used)."""
    others = [
        name
        for name, rows in sheets.items()
        if name != used
        and any(
            set(required) <= set(_resolve_columns(r.cells, roles, overrides))
            for r in rows[:HEADER_SEARCH_ROWS]
        )
    ]
    if others:
        report.note(path, None, f"sheets {others} also look coded; read {used!r} (sheet_name=)")


def _table(
    path: Path,
    sheet: str,
    rows: list[RawRow],
    header_index: int,
    columns: dict[str, int],
    key: Collection[str],
    report: Report,
) -> Table:
    header = rows[header_index]
    keys = [_key(cell) for cell in header.cells]
    for role, col in sorted(columns.items()):
        twins = [i + 1 for i, k in enumerate(keys) if k and k == keys[col] and i != col]
        if twins:
            report.note(
                path,
                header.number,
                f"{role}: columns {col + 1} and {', '.join(map(str, twins))} are both "
                f"{header.cells[col]!r}; column {col + 1} is read",
            )
    if any(any(r.cells) for r in rows[:header_index]):
        report.note(
            path,
            header.number,
            f"sheet {sheet!r}: header on row {header.number}; the preamble above it skipped",
        )
    for columns_of, what in (
        (lambda r: r.formulas, "with no saved value (an error where the reader needs them)"),
        (lambda r: r.computed, "whose saved values are read"),
    ):
        for col in sorted({c for r in rows[header_index + 1 :] for c in columns_of(r)}):
            name = header.cells[col] if col < len(header.cells) else f"column {col + 1}"
            report.note(path, None, f"column {name!r} holds formulas {what}")

    records = []
    for raw in rows[header_index + 1 :]:
        cells = {r: raw.cells[c] if c < len(raw.cells) else "" for r, c in columns.items()}
        formulas = {r: raw.formulas[c] for r, c in columns.items() if c in raw.formulas}
        records.append(Record(path, raw.number, cells, formulas))

    def filled(rec: Record, role: str) -> bool:
        return bool(rec.cells.get(role)) or role in rec.formulas  # a formula errs when read

    complete = [i for i, rec in enumerate(records) if all(filled(rec, k) for k in key)]
    last = complete[-1] if complete else -1
    trailing = [rows[header_index + 1 + i] for i in range(last + 1, len(records))]
    trailing = [r for r in trailing if any(r.cells)]
    if trailing:
        first_text = next(c for c in trailing[0].cells if c)
        report.note(
            path,
            trailing[0].number,
            f"{len(trailing)} text rows after the last coded row skipped "
            f"(rows {trailing[0].number}-{trailing[-1].number}, first: {first_text[:60]!r})",
        )
    kept = []
    for rec in records[: last + 1]:
        if not any(rec.cells.values()):
            continue
        missing = [k for k in key if not filled(rec, k)]
        if missing:
            with report.guard():
                raise rec.error(f"row has no {', '.join(missing)}")
            continue
        kept.append(rec)
    return Table(path, sheet, header.number, columns, kept)


# ----------------------------------------------------------------------------- ids


def canonical_id(text: str, prefix: str = "", width: int = 2) -> str:
    """One spelling per id: ``1``, ``01``, ``s1``, ``S01`` -> ``s01`` (prefix ``s``, width 2).

    Text that is not an optional prefix plus digits is returned stripped, unchanged.
    """
    text = re.sub(r"^(\d+)\.0+$", r"\1", cell_text(text))  # 6.0 written by a float cell
    match = re.fullmatch(r"([A-Za-z._]*?)0*(\d+)", text)
    if not match or (match.group(1) and match.group(1).lower() != prefix.lower()):
        return text
    return f"{prefix}{match.group(2).zfill(width)}"


# ----------------------------------------------------------------------------- labels


class Emotions:
    """Emotion cells -> normalised names of one database; folded spellings are reported."""

    def __init__(self, known: Collection[str], file: Path):
        self.known = frozenset(known)
        self.file = file
        self.folded: Counter[tuple[str, str]] = Counter()

    def __call__(self, raw: str, record: Record | None = None) -> str:
        name = normalise_emotion(raw)
        where = (record.file, record.row) if record else (self.file, None)
        if not name:
            raise DataError(where[0], "no emotion", where[1])
        if name not in self.known:
            raise DataError(
                where[0],
                f"unknown emotion {raw!r} (known: {', '.join(sorted(self.known))})",
                where[1],
            )
        if raw.strip().lower() != name:  # lower-casing alone is the rule, not a fold
            self.folded[(raw.strip(), name)] += 1
        return name

    def flush(self, report: Report) -> None:
        """One note per file listing each spelling folded and how often."""
        if self.folded:
            listing = ", ".join(f"{r!r}->{n!r} ({k})" for (r, n), k in sorted(self.folded.items()))
            report.note(self.file, None, f"emotion spellings folded: {listing}")
            self.folded.clear()


def parse_aus(text: str) -> tuple[str, ...]:
    """``4+L10`` -> ("4", "L10"); ``AU4+AU7`` -> ("4", "7"); ``(R6 or R12)+R15`` keeps the
    alternative as one token ("R6 or R12", "R15"), since the coder could not decide."""
    text = cell_text(text)
    if text.lower() in MISSING:
        return ()
    tokens, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char in "+,;" and depth == 0:
            tokens.append("".join(current))
            current = []
            continue
        current.append(char)
    tokens.append("".join(current))
    cleaned = []
    for token in tokens:
        token = " ".join(token.replace("(", " ").replace(")", " ").split())
        token = re.sub(r"^au\s*", "", token, flags=re.IGNORECASE)
        if token:
            cleaned.append(token)
    return tuple(cleaned)


# ----------------------------------------------------------------------------- finding files


def given_path(root: Path, path: str | Path) -> Path:
    """A path the user gave: absolute, or relative to the database root."""
    path = Path(path)
    return path if path.is_absolute() else root / path


def find_file(
    root: Path,
    explicit: str | Path | None,
    patterns: Sequence[str],
    what: str,
    report: Report,
    depth: int = 3,
) -> Path:
    """The annotation file: ``explicit`` (absolute or relative to root), else the first match of
    ``patterns`` (in order of preference, case-insensitive) within ``depth`` folder levels."""
    if explicit is not None:
        path = given_path(root, explicit)
        if not path.is_file():
            raise DataError(path, f"{what} not found")
        return path
    candidates = [p for p in _walk(root, depth) if p.is_file()]
    for pattern in patterns:
        matches = sorted(p for p in candidates if fnmatch.fnmatch(p.name.lower(), pattern.lower()))
        matches = [p for p in matches if not p.name.startswith("~$")]  # Excel lock files
        if matches:
            if len(matches) > 1:
                report.note(
                    matches[0],
                    None,
                    f"{len(matches)} files could be the {what} "
                    f"({', '.join(p.name for p in matches)}); using this one (pass sheet=)",
                )
            return matches[0]
    raise DataError(root, f"no {what} found (looked for {', '.join(patterns)}); pass sheet=PATH")


def _walk(root: Path, depth: int) -> Iterable[Path]:
    level = [root]
    for _ in range(depth):
        children = []
        for folder in level:
            try:
                entries = sorted(folder.iterdir())
            except OSError:
                continue
            yield from entries
            children += [e for e in entries if e.is_dir()]
        level = children


def find_below(
    root: Path, accept: Callable[[Path], bool], what: str, max_depth: int = 8
) -> Path | None:
    """The one folder below ``root`` (breadth first, to ``max_depth`` levels, hidden folders
    and folders already accepted not entered) that ``accept`` takes, for a database unpacked
    one or more folders deeper than documented; None when none does. Several are a DataError
    naming them: which one is meant is the user's choice."""
    found: list[Path] = []
    seen: set[Path] = set()
    level = [root]
    for _ in range(max_depth):
        children = []
        for folder in level:
            for entry in subfolders(folder):
                real = entry.resolve()
                if entry.name.startswith(".") or real in seen:
                    continue  # hidden, or a link back to a folder already walked
                seen.add(real)
                if accept(entry):
                    found.append(entry)
                else:
                    children.append(entry)
        level = children
    if len(found) > 1:
        listing = ", ".join(str(p.relative_to(root)) for p in found[:5])
        raise DataError(root, f"{len(found)} folders could hold the {what} ({listing}); pass it")
    return found[0] if found else None


def find_dir(
    root: Path,
    explicit: str | Path | None,
    candidates: Sequence[str],
    what: str,
    accept: Callable[[Path], bool] = Path.is_dir,
    below: Callable[[Path], bool] | None = None,
    report: Report | None = None,
) -> Path:
    """A data folder: ``explicit`` (absolute or relative to root), else the first candidate
    path under ``root`` that ``accept`` takes (``"."`` stands for root itself), else, with
    ``below``, the one folder at any depth below ``root`` that ``below`` takes (a note says
    where it was found)."""
    if explicit is not None:
        path = given_path(root, explicit)
        if not path.is_dir():
            raise DataError(path, f"{what} folder not found")
        return path
    for name in candidates:
        path = root / name
        if accept(path):
            return path
    found = find_below(root, below, what) if below is not None else None
    if found is None:
        where = ", ".join(candidates) + (" and every folder below" if below else "")
        raise DataError(root, f"no {what} folder (looked for {where}); pass it")
    if report is not None:
        report.note(found, None, f"{what} found here, below the documented places")
    return found


def subfolders(folder: Path) -> list[Path]:
    """Child folders of ``folder``, sorted (none when it is missing or unreadable)."""
    try:
        return sorted(child for child in folder.iterdir() if child.is_dir())
    except OSError:
        return []
