"""Property-based fuzzing of the sheet layer and of every reader (issue 16 item 2).

Each generated input either loads, giving samples whose onset <= apex <= offset index frames
that exist, or raises the project's DataError naming its file (and row, for a row); nothing
else escapes, and nothing hangs (a per-input deadline). Inputs: random cells of every type
(text in any script, huge and non-finite numbers, formulas, dates, markers such as ``/``),
missing, renamed and duplicated columns, empty and extra worksheets, in xlsx, xls and csv;
and the readers' own replicas with random edits to their sheets, text files and folder trees
(files deleted, cut short, overwritten with noise, renamed, added; folders copied; a link
looping back to a parent).

The default run tries a modest number of inputs per test; ``-m slow`` runs the same
properties with many more. How many inputs were tried, per property and loaded / DataError,
is written at the end of the module to ``$MICROEXPR_FUZZ_COUNTS`` (or ``fuzz_counts.json`` in
pytest's base temporary folder) and printed (visible with ``-s``);
``--hypothesis-show-statistics`` gives hypothesis' own per-test figures.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from readers_support import clips_for

from microexpr import datasets
from microexpr.datasets.casme2 import ROLES as CASME2_ROLES
from microexpr.datasets.problems import Report
from microexpr.datasets.sheets import read_sheets, read_table
from microexpr.errors import DataError
from microexpr.synth import write_layout
from microexpr.synth.replicas.flow_images import write_flat

FEW, MANY = 25, 400  # inputs per property: default run, and -m slow
TRIED: Counter[str] = Counter()  # inputs run, per "<property>[<param>]/<outcome>"


def tried(kind: str, outcome: str) -> None:
    """Count one input, so the figures in docs/reliability.md are measured, not assumed."""
    TRIED[f"{kind}/{outcome}"] += 1


@pytest.fixture(scope="module", autouse=True)
def report_counts(tmp_path_factory):
    """After the module: how many inputs each property tried, as JSON and one printed line."""
    yield
    total = sum(TRIED.values())
    target = os.environ.get("MICROEXPR_FUZZ_COUNTS") or (
        tmp_path_factory.getbasetemp() / "fuzz_counts.json"
    )
    Path(target).write_text(json.dumps({"total": total, **dict(sorted(TRIED.items()))}, indent=1))
    print(f"\nfuzz: {total} inputs tried, 0 escaped (counts in {target})", file=sys.stderr)


def fuzz(examples: int):
    return settings(
        max_examples=examples,
        deadline=timedelta(seconds=30),  # "never a hang", with room for a loaded machine
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        derandomize=examples == FEW,  # the default run is the same every time
        database=None,
    )


MARKERS = [
    "/", "\\", "-", "", " ", "0", "-1", "1e400", "nan", "inf", "-0", "3.5", "007",
    "=SUM(A1:A2)", "=1/0", "spNO.1", "sub01", "s1", "006", "Others", "happy", "surprize",
    "4+L10", "(R6 or R12)+R15", "١٢", "²", "a\nb", "Subject", "Filename", "OnsetFrame",
    "ApexFrame", "OffsetFrame", "Estimated Emotion", "EP01_01", "Micro - 1/2",
]  # fmt: skip
CELLS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(MARKERS),
    st.datetimes(min_value=datetime(1900, 3, 1), max_value=datetime(2100, 1, 1)),
)
KNOWN = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Estimated Emotion"]
HEADERS = st.one_of(
    st.lists(
        st.one_of(
            st.sampled_from(MARKERS[-8:] + ["Action Units", "Onset Frame"]), st.text(max_size=8)
        ),
        max_size=9,
    ),  # known names in any order, missing, duplicated, or other text
    st.tuples(
        st.permutations(KNOWN),
        st.integers(0, 2),
        st.lists(st.one_of(st.sampled_from(KNOWN), st.text(max_size=8)), max_size=3),
    ).map(lambda t: list(t[0][t[1] :]) + t[2]),  # the real header, shuffled, cut, with extras
)
GRIDS = st.tuples(HEADERS, st.lists(st.lists(CELLS, max_size=9), max_size=10))
NAMES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
    min_size=1,
    max_size=10,
).filter(lambda name: name not in (".", ".."))


def loads_or_names_the_file(call, path: Path | None = None):
    """Run ``call``: a result, or a DataError whose message starts with the file it names."""
    try:
        result = call()
    except DataError as err:
        assert str(err).startswith(str(err.file)), err
        if path is not None:
            assert err.file == path or path in err.file.parents or err.file in path.parents
        event("DataError")
        return None
    event("loaded")
    return result


def outcome(result) -> str:
    return "DataError" if result is None else "loaded"


# ------------------------------------------------------------------------- the sheet layer


def _xlsx_cell(value):
    return ILLEGAL_CHARACTERS_RE.sub("", value) if isinstance(value, str) else value


def write_grid(path: Path, rows: list[list]) -> bool:
    """``rows`` as a workbook or CSV at ``path``; False when that format cannot hold them."""
    try:
        if path.suffix == ".xlsx":
            book = openpyxl.Workbook()
            for row in rows:  # control characters cannot be stored in a worksheet at all
                book.active.append([_xlsx_cell(v) for v in row])
            book.create_sheet("empty")
            book.save(path)
        elif path.suffix == ".xls":
            import xlwt

            book = xlwt.Workbook()
            sheet = book.add_sheet("Sheet1")
            for r, row in enumerate(rows):
                for c, value in enumerate(row):
                    if value is not None:
                        sheet.write(r, c, value)
            book.add_sheet("Sheet2")
            book.save(str(path))
        else:
            with path.open("w", newline="", encoding="utf-8") as handle:
                csv.writer(handle).writerows(["" if v is None else v for v in row] for row in rows)
    except Exception:  # noqa: BLE001 (xlwt and openpyxl raise many types for what they refuse)
        return False  # the writer refuses these values: not an input the reader can meet
    return True


def check_sheet(suffix: str, grid: tuple[list, list[list]]) -> None:
    header, rows = grid
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"sheet{suffix}"
        if not write_grid(path, [header, *rows]):
            event("not writable")
            tried(f"sheet[{suffix}]", "not writable")
            return
        sheets = loads_or_names_the_file(lambda: read_sheets(path), path)
        if sheets is not None:
            assert all(isinstance(c, str) for rs in sheets.values() for r in rs for c in r.cells)
        required, key = ("subject", "clip", "onset", "offset", "emotion"), ("subject", "clip")
        report = Report()
        table = loads_or_names_the_file(
            lambda: read_table(path, CASME2_ROLES, required, key, report), path
        )
        if table is not None:
            assert all(r.row > table.header_row for r in table.records)
        assert all(p.file == path and (p.row is None or p.row >= 1) for p in report.problems)
        tried(f"sheet[{suffix}]", outcome(table))


@pytest.mark.parametrize("suffix", [".xlsx", ".xls", ".csv"])
@fuzz(FEW)
@given(grid=GRIDS)
def test_sheets_load_or_name_the_file(suffix, grid):
    check_sheet(suffix, grid)


@pytest.mark.soak  # 400 inputs per case: minutes, a measurement rather than a CI step
@pytest.mark.parametrize("suffix", [".xlsx", ".xls", ".csv"])
@fuzz(MANY)
@given(grid=GRIDS)
def test_sheets_load_or_name_the_file_many(suffix, grid):
    check_sheet(suffix, grid)


@pytest.mark.parametrize("suffix", [".xlsx", ".xls", ".csv"])
@fuzz(FEW)
@given(data=st.binary(max_size=300))
def test_files_of_noise_are_a_data_error(suffix, data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"sheet{suffix}"
        path.write_bytes(data)
        tried(f"noise[{suffix}]", outcome(loads_or_names_the_file(lambda: read_sheets(path), path)))


# ------------------------------------------------------------------------- every reader


def _image_folder(root: Path) -> None:
    image = np.full((8, 8, 3), 90, np.uint8)
    for split in ("train", "test"):
        for cls in ("smile", "pout"):
            (root / split / cls).mkdir(parents=True)
            for k in range(2):
                cv2.imwrite(str(root / split / cls / f"{k}.jpg"), image)


def _flow_images(root: Path) -> None:
    rng = np.random.default_rng(0)
    records = [
        (s, f"c{k}", ("negative", "positive", "surprise")[k % 3], rng.integers(0, 256, (8, 8, 3)))
        for s in ("sub01", "s1", "006")
        for k in range(2)
    ]
    write_flat([(s, c, label, image.astype(np.uint8)) for s, c, label, image in records], root)


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[str, Path]:
    """One small replica per reader, copied for every input."""
    base = tmp_path_factory.mktemp("fuzz-templates")
    made = {}
    for name in datasets.READERS:
        root = base / name
        if name == "image_folder":
            _image_folder(root)
        elif name == "flow_images":
            _flow_images(root)
        else:
            write_layout(name, clips_for(name, 2, 2, 4), root)
        made[name] = root
    return made


def test_every_template_loads_clean(templates):
    """The inputs below start from these: each must load whole before it is damaged."""
    for name, root in templates.items():
        report = Report()
        assert datasets.load(name, root, report=report), name
        assert not report.errors, (name, report.errors[:2])


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("cell"), st.integers(0, 40), st.integers(1, 14), CELLS),
        st.tuples(st.just("delete row"), st.integers(1, 8)),
        st.tuples(st.just("duplicate column"), st.integers(1, 12)),
        st.tuples(st.just("delete column"), st.integers(1, 12)),
        st.tuples(st.just("clear sheet")),
        st.tuples(st.just("line"), st.integers(0, 40), st.integers(0, 60), st.binary(max_size=40)),
        st.tuples(st.just("truncate"), st.integers(0, 200), st.floats(0, 1)),
        st.tuples(st.just("noise"), st.integers(0, 200), st.binary(max_size=64)),
        st.tuples(st.just("flip"), st.integers(0, 200), st.floats(0, 1), st.integers(1, 255)),
        st.tuples(st.just("remove"), st.integers(0, 200)),
        st.tuples(st.just("rename"), st.integers(0, 200), NAMES),
        st.tuples(st.just("add file"), st.integers(0, 60), NAMES, st.binary(max_size=32)),
        st.tuples(st.just("copy folder"), st.integers(0, 60), NAMES),
        st.tuples(st.just("link to parent"), st.integers(0, 60)),
    ),
    max_size=5,
)


def _paths(root: Path, kind: str) -> list[Path]:
    everything = sorted(root.rglob("*"), key=str)
    if kind == "file":
        return [p for p in everything if p.is_file() and not p.is_symlink()]
    if kind == "dir":
        return [root] + [p for p in everything if p.is_dir() and not p.is_symlink()]
    if kind == "sheet":
        return [p for p in everything if p.suffix == ".xlsx"]
    return [p for p in everything if p.suffix in (".csv", ".txt")]


def _edit_sheet(path: Path, op: tuple) -> None:
    book = openpyxl.load_workbook(path)
    sheet = book.worksheets[0]
    kind = op[0]
    if kind == "cell":
        sheet.cell(op[1] % (sheet.max_row + 3) + 1, op[2], op[3])
    elif kind == "delete row":
        sheet.delete_rows(op[1])
    elif kind == "duplicate column":
        target = sheet.max_column + 1
        for row in range(1, sheet.max_row + 1):
            sheet.cell(row, target, sheet.cell(row, op[1]).value)
    elif kind == "delete column":
        sheet.delete_cols(op[1])
    else:
        sheet.delete_rows(1, sheet.max_row)
    book.save(path)


def mutate(root: Path, ops: list[tuple]) -> None:
    """Apply each edit to the copy at ``root`` (paths picked by index among those there)."""
    for op in ops:
        kind = op[0]
        try:
            if kind in ("cell", "delete row", "duplicate column", "delete column", "clear sheet"):
                sheets = _paths(root, "sheet")
                if sheets:
                    _edit_sheet(sheets[(op[1] if len(op) > 1 else 0) % len(sheets)], op)
            elif kind == "line":
                texts = _paths(root, "text")
                if texts:
                    path = texts[op[1] % len(texts)]
                    lines = path.read_bytes().split(b"\n")
                    lines[op[2] % len(lines)] = op[3]
                    path.write_bytes(b"\n".join(lines))
            elif kind in ("truncate", "noise", "flip", "remove", "rename"):
                files = _paths(root, "file") if kind != "remove" else sorted(root.rglob("*"))
                if not files:
                    continue
                path = files[op[1] % len(files)]
                if kind == "truncate":
                    data = path.read_bytes()
                    path.write_bytes(data[: int(len(data) * op[2])])
                elif kind == "noise":
                    path.write_bytes(op[2])
                elif kind == "flip":  # one byte inside the file, e.g. in a zipped worksheet
                    data = bytearray(path.read_bytes())
                    if data:
                        data[int(op[2] * (len(data) - 1))] ^= op[3]
                        path.write_bytes(bytes(data))
                elif kind == "remove" and path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif kind == "remove":
                    path.unlink()
                else:
                    path.rename(path.with_name(op[2]))
            else:
                folders = _paths(root, "dir")
                folder = folders[op[1] % len(folders)]
                if kind == "add file":
                    (folder / op[2]).write_bytes(op[3])
                elif kind == "copy folder" and folder != root:
                    shutil.copytree(folder, folder.with_name(op[2]), symlinks=True)
                elif kind == "link to parent":
                    os.symlink(folder.parent, folder / "loop")
        except Exception:  # noqa: BLE001 (openpyxl on a damaged workbook, the file system)
            event(f"edit refused: {kind}")  # not an input: the edit itself could not be made


def check_reader(name: str, template: Path, ops: list[tuple], on_error: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "db"
        shutil.copytree(template, root, symlinks=True)
        mutate(root, ops)
        report = Report()
        samples = loads_or_names_the_file(
            lambda: datasets.load(name, root, report=report, on_error=on_error)
        )
        for problem in report.problems:
            assert problem.row is None or problem.row >= 1
        for sample in samples or ():
            if sample.frames and sample.onset is not None:
                assert 0 <= sample.onset <= sample.apex <= sample.offset < len(sample.frames)
                assert all(Path(p).is_file() for p in sample.frames), sample.id
            if sample.path is not None:
                assert sample.path.is_file()
        event(f"{len(samples or ())} samples")
        tried(f"reader[{name}]", outcome(samples))


@pytest.mark.parametrize("name", sorted(datasets.READERS))
@fuzz(FEW)
@given(ops=OPS, on_error=st.sampled_from(["skip", "raise"]))
def test_every_reader_loads_or_names_the_file(templates, name, ops, on_error):
    check_reader(name, templates[name], ops, on_error)


@pytest.mark.soak  # 400 inputs per case: minutes, a measurement rather than a CI step
@pytest.mark.parametrize("name", sorted(datasets.READERS))
@fuzz(MANY)
@given(ops=OPS, on_error=st.sampled_from(["skip", "raise"]))
def test_every_reader_loads_or_names_the_file_many(templates, name, ops, on_error):
    check_reader(name, templates[name], ops, on_error)
