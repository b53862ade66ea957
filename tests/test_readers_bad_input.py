"""Bad input: one DataError naming file, row and reason; nothing half-loaded. With
``Report(collect_errors=True)`` (``datasets check``) every bad row is listed, the rest read."""

from __future__ import annotations

import re
import shutil

import pytest
from readers_support import clips_for, edit_xlsx

from microexpr.datasets import DataError, load
from microexpr.datasets.problems import Report
from microexpr.synth import write_layout

SHEET = "CASME2-coding-20140508.xlsx"


@pytest.fixture
def casme2(tmp_path):
    """A clean CASME II replica: 10 clips, sheet rows 2..11."""
    write_layout("casme2", clips_for("casme2"), tmp_path)
    return tmp_path


def set_cell(root, row: int, column: int, value) -> None:
    def edit(sheet) -> None:
        sheet.cell(row, column).value = value

    edit_xlsx(root / SHEET, edit)


def fails(root, pattern: str, name: str = "casme2", **kwargs) -> DataError:
    """``on_error="raise"`` stops at the bad row with one DataError matching ``pattern``."""
    with pytest.raises(DataError, match=pattern) as info:
        load(name, root, on_error="raise", **kwargs)
    return info.value


def skips(root, pattern: str, loaded: int, name: str = "casme2", **kwargs) -> None:
    """The default, ``on_error="skip"``: the bad row is left out with a reason matching
    ``pattern`` (file and row named) and the other ``loaded`` samples are read."""
    report = Report()
    samples = load(name, root, report=report, **kwargs)
    errors = [f"{p.where}: {p.reason}" for p in report.errors]
    assert len(errors) == 1 and re.search(pattern, errors[0]), errors
    assert len(samples) == loaded


def test_unreadable_image_names_sheet_row_and_image(casme2):
    sample = load("casme2", casme2)[3]
    sample.frames[sample.apex].write_bytes(b"not a jpeg")
    error = fails(casme2, r"CASME2-coding-20140508\.xlsx, row 5: cannot read image .*\.jpg")
    assert error.row == 5
    skips(casme2, r"CASME2-coding-20140508\.xlsx, row 5: cannot read image .*\.jpg", 9)
    assert len(load("casme2", casme2, verify_images="none")) == 10


def test_unreadable_frame_between_key_frames_found_by_full_check(casme2):
    sample = load("casme2", casme2)[0]
    inner = next(
        i for i in range(len(sample.frames)) if i not in (sample.onset, sample.apex, sample.offset)
    )
    sample.frames[inner].write_bytes(b"")
    assert len(load("casme2", casme2)) == 10  # key frames only, by default
    # a middle frame is not a key frame: left out of the clip with a repair, under either choice
    for on_error in ("raise", "skip"):
        report = Report()
        loaded = load("casme2", casme2, verify_images="all", report=report, on_error=on_error)
        assert len(loaded) == 10 and not report.errors
        (repair,) = report.of_kind("repair")
        assert repair.row == 2 and "left out of the clip" in repair.reason
        assert sample.frames[inner] not in loaded[0].frames
        assert len(loaded[0].frames) == len(sample.frames) - 1


def test_wrong_columns_name_the_header_row(casme2):
    set_cell(casme2, 1, 2, "Clip name")
    error = fails(casme2, r"row 1: .*no column for \{'clip': 'Filename / Material'\}")
    assert error.file.name == SHEET


def test_no_header_at_all(casme2):
    edit_xlsx(casme2 / SHEET, lambda sheet: sheet.delete_rows(1))
    fails(casme2, r"no header row naming the columns")


def test_duplicate_ids_name_both_rows(casme2):
    def duplicate(sheet) -> None:
        sheet.append([c.value for c in sheet[4]])

    edit_xlsx(casme2 / SHEET, duplicate)
    error = fails(casme2, r"row 12: duplicate sample 'sub01_EP01_03' \(first at .*:4\)")
    assert error.row == 12
    skips(casme2, r"row 12: duplicate sample 'sub01_EP01_03'", 10)


@pytest.mark.parametrize(
    ("column", "value", "pattern"),
    [
        (7, "surprize", r"row 3: unknown emotion 'surprize'"),
        (3, "4a", r"row 3: onset '4a' is not a frame number"),
        (5, 1, r"row 3: offset 1 before onset"),
        (3, 1, r"row 3: onset frame 1 is outside the frames on disk"),
        (2, "EP77_77", r"row 3: no folder 'EP77_77' in .*sub01"),
        (3, "=C2+1", r"row 3: onset cell is the formula =C2\+1 with no saved value"),
        (3, None, r"row 3: row has no onset"),
    ],
)
def test_bad_row(casme2, column, value, pattern):
    set_cell(casme2, 3, column, value)
    fails(casme2, pattern)
    skips(casme2, pattern, 9)


def test_apex_outside_onset_offset_is_a_repair(casme2):
    """CAS(ME)^3 spNO.149/d: an apex outside onset..offset is not used, under either choice."""
    set_cell(casme2, 3, 4, 5000)
    for on_error in ("raise", "skip"):
        report = Report()
        samples = load("casme2", casme2, report=report, on_error=on_error)
        assert len(samples) == 10 and not report.errors
        (repair,) = report.of_kind("repair")
        assert repair.row == 3 and "apex 5000 outside onset..offset" in repair.reason
        sample = samples[1]
        assert sample.onset <= sample.apex <= sample.offset


def test_collect_mode_lists_every_bad_row_and_reads_the_rest(casme2):
    set_cell(casme2, 3, 7, "surprize")
    set_cell(casme2, 6, 3, "x")
    report = Report(collect_errors=True)
    samples = load("casme2", casme2, report=report)
    assert len(samples) == 8
    assert [(e.file.name, e.row) for e in report.errors] == [(SHEET, 3), (SHEET, 6)]


def test_missing_sheet(tmp_path):
    write_layout("casme2", clips_for("casme2"), tmp_path)
    (tmp_path / SHEET).unlink()
    fails(tmp_path, r"no casme2 sheet found")


def test_unsupported_sheet_type(casme2):
    (casme2 / "sheet.ods").write_bytes(b"")
    fails(casme2, r"unsupported annotation file type '.ods'", sheet="sheet.ods")


def test_damaged_workbook(casme2):
    (casme2 / SHEET).write_bytes(b"PK\x03\x04 not really a zip")
    fails(casme2, r"cannot open as an Excel workbook")


def test_unknown_column_role_is_a_usage_error(casme2):
    with pytest.raises(ValueError, match="unknown column roles"):
        load("casme2", casme2, columns={"mood": "Emotion"})


def test_two_frames_with_one_number(casme2):
    sample = load("casme2", casme2)[0]
    first = sample.frames[0]
    shutil.copy(first, first.with_name(first.name.replace("img", "img0")))
    fails(casme2, r"row 2: .* have the same frame number")


def test_fer2013_bad_pixels_name_the_line(tmp_path):
    write_layout("fer2013", clips_for("fer2013"), tmp_path, bad_pixels=1)
    error = fails(tmp_path, r"fer2013\.csv, row 2: pixels: 2299 values, expected 48x48", "fer2013")
    assert error.row == 2
    assert not (tmp_path / "fer2013_png" / "fer2013" / ".written").exists()


def test_fer2013_bad_code_and_columns(tmp_path):
    write_layout("fer2013", clips_for("fer2013"), tmp_path)
    csv_file = tmp_path / "fer2013.csv"
    lines = csv_file.read_text().splitlines()
    csv_file.write_text("\n".join([lines[0], "9," + lines[1].split(",", 1)[1], *lines[2:]]))
    fails(tmp_path, r"row 2: emotion '9' is not a code 0..6", "fer2013")
    skips(tmp_path, r"fer2013\.csv, row 2: emotion '9' is not a code 0..6", 9, "fer2013")
    csv_file.write_text("\n".join(["label,image,Usage", *lines[1:]]))
    fails(tmp_path, r"fer2013\.csv, row 1: needs columns emotion and pixels", "fer2013")


def test_ckplus_bad_emotion_file(tmp_path):
    write_layout("ckplus", clips_for("ckplus"), tmp_path)
    label = sorted((tmp_path / "Emotion").rglob("*_emotion.txt"))[0]
    label.write_text("   9.0000000e+00\n")
    fails(tmp_path, r"_emotion\.txt, row 1: expected one emotion code 0..7", "ckplus")
    skips(tmp_path, r"_emotion\.txt, row 1: expected one emotion code 0..7", 9, "ckplus")


def test_smic_clip_code_disagrees_with_folder(tmp_path):
    write_layout("smic", clips_for("smic"), tmp_path)
    clip = next((tmp_path / "HS" / "s1" / "micro" / "negative").iterdir())
    clip.rename(clip.parent.parent / "positive" / clip.name)
    fails(tmp_path, r"s1_ne_01: clip code 'ne' says negative, folder says positive", "smic")
    skips(tmp_path, r"s1_ne_01: clip code 'ne' says negative, folder says positive", 9, "smic")


def test_mmew_clip_in_two_emotion_folders(tmp_path):
    write_layout("mmew", clips_for("mmew"), tmp_path)
    clip = next((tmp_path / "Micro_Expression" / "happiness").iterdir())
    shutil.copytree(clip, tmp_path / "Micro_Expression" / "anger" / clip.name)
    fails(tmp_path, r"is in two emotion folders", "mmew")


def test_subject_folders_that_are_the_same_id(casme2):
    frames = casme2 / "CASME2_RAW_selected"
    (frames / "sub02").rename(frames / "sub2")
    shutil.copytree(frames / "sub2", frames / "02")
    fails(casme2, r"folders '02' and 'sub2' are the same id")
