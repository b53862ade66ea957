"""The shared helpers: ids, AUs, cells as text, frame numbers, header finding."""

from __future__ import annotations

from pathlib import Path

import pytest

from microexpr.datasets.coded_sheet import frame_number
from microexpr.datasets.problems import Report
from microexpr.datasets.sheets import canonical_id, cell_text, parse_aus, read_table


@pytest.mark.parametrize(
    ("text", "prefix", "width", "expected"),
    [
        ("1", "sub", 2, "sub01"),
        ("01", "sub", 2, "sub01"),
        ("sub1", "sub", 2, "sub01"),
        ("SUB01", "sub", 2, "sub01"),
        ("6", "", 3, "006"),
        ("006", "", 3, "006"),
        ("6.0", "", 3, "006"),
        ("s1", "s", 2, "s01"),
        ("s01", "s", 2, "s01"),
        ("spNO.12", "spNO.", 1, "spNO.12"),
        ("12", "spNO.", 1, "spNO.12"),
        ("x7", "s", 2, "x7"),  # another prefix: left alone
        ("EP02_01f", "", 2, "EP02_01f"),
    ],
)
def test_canonical_id(text, prefix, width, expected):
    assert canonical_id(text, prefix, width) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4+L10", ("4", "L10")),
        ("AU4+AU7", ("4", "7")),
        ("(R6 or R12)+R15", ("R6 or R12", "R15")),
        ("R12 + R15", ("R12", "R15")),
        ("12", ("12",)),
        ("/", ()),
        ("", ()),
    ],
)
def test_parse_aus(text, expected):
    assert parse_aus(text) == expected


def test_cell_text():
    assert cell_text(46.0) == "46"
    assert cell_text(4.5) == "4.5"
    assert cell_text(" 006 ") == "006"
    assert cell_text(None) == ""


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("img46.jpg", 46),
        ("reg_img46.jpg", 46),
        ("006_05562.jpg", 5562),
        ("S005_001_00000011.png", 11),
        ("EP01_12-003.jpg", 3),
        ("image17581039.bmp", 17581039),
        ("face.jpg", None),
    ],
)
def test_frame_number(name, number):
    assert frame_number(Path(name)) == number


def test_csv_header_found_below_a_preamble_and_part_filled_rows(tmp_path):
    sheet = tmp_path / "codes.csv"
    sheet.write_text(
        "My database\n\nSubject,Filename,Onset\n01,EP1,5\n,,\n02,EP2,7\nprinted 2019,,\n"
    )
    report = Report()
    roles = {"subject": ("Subject",), "clip": ("Filename",), "onset": ("Onset",)}
    table = read_table(sheet, roles, roles, ("subject", "clip", "onset"), report)
    assert table.header_row == 3
    assert [(r.row, r.cells["clip"]) for r in table.records] == [(4, "EP1"), (6, "EP2")]
    reasons = " ".join(p.reason for p in report.problems)
    assert "header on row 3" in reasons and "1 text rows after the last coded row" in reasons
