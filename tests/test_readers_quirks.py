"""One test per known quirk (docs/datasets.md, "Cross-cutting quirks"): each is repaired as
documented AND reported (file, row, reason), and the result still equals the truth."""

from __future__ import annotations

import pytest
from readers_support import assert_matches, clips_for, edit_xlsx, problems

from microexpr.datasets import load
from microexpr.datasets.coded_sheet import FrameList
from microexpr.datasets.problems import Report
from microexpr.synth import write_layout


def read(name: str, root, **kwargs) -> tuple[list, Report]:
    report = Report()
    return load(name, root, report=report, **kwargs), report


def test_samm_preamble_is_skipped_and_reported(tmp_path):
    truth = write_layout("samm", clips_for("samm"), tmp_path, version="preamble")
    samples, report = read("samm", tmp_path)
    assert_matches(samples, truth)
    assert any("header on row 14" in n for n in problems(report, "note"))


def test_trailing_text_rows_are_skipped_and_reported(tmp_path):
    truth = write_layout("casme2", clips_for("casme2"), tmp_path, trailing_text=True)
    samples, report = read("casme2", tmp_path)
    assert_matches(samples, truth)
    (note,) = [n for n in problems(report, "note") if "text rows after" in n]
    assert f"row {len(truth) + 3}" in note  # header + rows + one blank line


@pytest.mark.parametrize(
    ("duration", "said"),
    [("formula", "whose saved values are read"), ("unsaved", "with no saved value")],
)
def test_formula_cells_are_reported(tmp_path, duration, said):
    truth = write_layout("samm", clips_for("samm"), tmp_path, duration=duration)
    samples, report = read("samm", tmp_path)
    assert_matches(samples, truth)
    assert any(f"'Duration' holds formulas {said}" in n for n in problems(report, "note"))
    # a saved value is checked against onset/offset (and agrees here)
    assert not any("disagrees" in n for n in problems(report, "note"))


def test_saved_duration_that_disagrees_is_noted(tmp_path):
    write_layout("samm", clips_for("samm"), tmp_path, version="plain", duration="wrong")
    _, report = read("samm", tmp_path)
    notes = [n for n in problems(report, "note") if "Duration" in n]
    assert len(notes) == 10 and "row 2:" in notes[0]


@pytest.mark.parametrize(("name", "marker"), [("casme2", "/"), ("casme", "\\"), ("samm", "-")])
def test_missing_apex_becomes_the_middle(tmp_path, name, marker):
    truth = write_layout(name, clips_for(name), tmp_path, missing_apex=2)
    samples, report = read(name, tmp_path)
    assert_matches(samples, truth)
    middle = [s for s in samples if s.meta["apex_source"] == "middle"]
    assert len(middle) == 2
    assert all(s.apex == (s.onset + s.offset) // 2 for s in middle)
    assert len([r for r in problems(report, "repair") if "apex not coded" in r]) == 2


def test_empty_apex_cell_is_not_coded_too(tmp_path):
    truth = write_layout("casme2", clips_for("casme2"), tmp_path)

    def clear_apex(sheet) -> None:
        sheet.cell(3, 4).value = None

    edit_xlsx(tmp_path / "CASME2-coding-20140508.xlsx", clear_apex)
    samples, report = read("casme2", tmp_path)
    second = next(s for s in samples if s.meta["source"].endswith(":3"))
    assert second.meta["apex_source"] == "middle"
    assert any("row 3: repair: apex not coded" in r for r in problems(report, "repair"))
    assert len(samples) == len(truth)


def test_smic_has_no_apex_and_says_so(tmp_path):
    write_layout("smic", clips_for("smic"), tmp_path)
    samples, report = read("smic", tmp_path)
    assert {s.meta["apex_source"] for s in samples} == {"middle"}
    assert all(s.onset == 0 and s.offset == len(s.frames) - 1 for s in samples)
    (note,) = [n for n in problems(report, "note") if "SMIC codes no apex" in n]
    assert f"all {len(samples)} clips" in note


@pytest.mark.parametrize("which", ["onset", "offset"])
def test_apex_equal_to_onset_or_offset_is_kept_and_noted(tmp_path, which):
    truth = write_layout("casme2", clips_for("casme2"), tmp_path, **{f"apex_equals_{which}": 1})
    samples, report = read("casme2", tmp_path)
    assert_matches(samples, truth)
    assert sum(getattr(s, which) == s.apex for s in samples) >= 1
    assert any(f"apex equals the {which}" in n for n in problems(report, "note"))


def test_offset_zero_becomes_the_apex(tmp_path):
    truth = write_layout("casme3", clips_for("casme3"), tmp_path, offset_zero=1)
    samples, report = read("casme3", tmp_path)
    assert_matches(samples, truth)
    assert any("offset 0 (not coded)" in r for r in problems(report, "repair"))


def test_several_expressions_in_one_casme3_clip(tmp_path):
    truth = write_layout("casme3", clips_for("casme3"), tmp_path, multi_me=2)
    samples, report = read("casme3", tmp_path)
    assert_matches(samples, truth)
    assert {"spNO.1_a2", "spNO.1_b2"} <= {s.id for s in samples}
    assert samples[0].frames == next(s for s in samples if s.id == "spNO.1_a2").frames
    assert any("holds 2 expressions" in n for n in problems(report, "note"))


def test_missing_frame_inside_the_clip_is_noted(tmp_path):
    truth = write_layout("casme2", clips_for("casme2"), tmp_path, missing_frame=1)
    samples, report = read("casme2", tmp_path)
    assert_matches(samples, truth)
    assert len(samples[0].frames) == 5
    assert any("frames missing in onset..offset" in n for n in problems(report, "note"))


def test_missing_apex_frame_uses_the_nearest(tmp_path):
    truth = write_layout("samm", clips_for("samm"), tmp_path, missing_apex_frame=1)
    samples, report = read("samm", tmp_path)
    assert_matches(samples, truth)
    (repair,) = problems(report, "repair")
    assert "apex frame" in repair and "missing" in repair and "used frame" in repair


def test_uneven_padding_sorts_numerically(tmp_path):
    write_layout("casme", clips_for("casme", frames=12), tmp_path, uneven_padding=True)
    samples = load("casme", tmp_path)
    names = {p.name for s in samples for p in s.frames}
    assert "EP01_11-1.jpg" in names and "EP01_11-001.jpg" in names  # both paddings on disk
    for sample in samples:
        numbers = [int(p.stem.rsplit("-", 1)[1]) for p in sample.frames]
        assert numbers == sorted(numbers) == list(range(1, 13))


def test_frames_sort_by_number_not_name(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    for n in (10, 2, 1, 33):
        (folder / f"img{n}.jpg").write_bytes(b"")
    frames = FrameList.scan(folder)
    assert [p.name for p in frames.paths] == ["img1.jpg", "img2.jpg", "img10.jpg", "img33.jpg"]
    assert frames.gaps() == [n for n in range(1, 34) if n not in (1, 2, 10, 33)]


def test_absolute_sheet_numbers_over_a_relative_folder(tmp_path):
    truth = write_layout("samm", clips_for("samm"), tmp_path, relative_folder=1)
    samples, report = read("samm", tmp_path)
    assert_matches(samples, truth)
    assert any("taken as onset..offset" in r for r in problems(report, "repair"))


def test_ids_stored_as_numbers_read_as_padded_text(tmp_path):
    truth = write_layout("samm", clips_for("samm"), tmp_path / "n", subject_as_number=True)
    assert_matches(load("samm", tmp_path / "n"), truth)
    assert {r["subject"] for r in truth} == {"006", "007"}
    truth = write_layout("casme2", clips_for("casme2"), tmp_path / "c", subject_as_number=True)
    assert {s.subject for s in load("casme2", tmp_path / "c")} == {"sub01", "sub02"}


def test_smic_unpadded_folders_get_megc_ids(tmp_path):
    write_layout("smic", clips_for("smic"), tmp_path)
    samples = load("smic", tmp_path)
    assert all((tmp_path / "HS" / "s1").is_dir() for _ in [0])
    assert {s.subject for s in samples} == {"s01", "s02"}
    assert all(s.meta["clip"].startswith(s.subject + "_") for s in samples)
    assert all("/s1/" in s.meta["folder"] or "/s2/" in s.meta["folder"] for s in samples)


def test_label_spellings_are_folded_and_reported(tmp_path):
    truth = write_layout("casme2", clips_for("casme2"), tmp_path, spelling=True)
    samples, report = read("casme2", tmp_path)
    assert_matches(samples, truth)
    (note,) = [n for n in problems(report, "note") if "spellings folded" in n]
    assert "'happy'->'happiness' (2)" in note
    assert "Others" not in note  # lower-casing alone is the rule, not a fold
    assert {s.label for s in samples} >= {"others", "happiness"}


def test_casme3_spellings_and_upper_case_clip(tmp_path):
    truth = write_layout("casme3", clips_for("casme3"), tmp_path, upper_clip=1)
    samples, report = read("casme3", tmp_path)
    assert_matches(samples, truth)
    notes = " ".join(problems(report, "note"))
    assert "'sad'->'sadness'" in notes and "clip 'A' read as 'a'" in notes


def test_casme_offset_derived_from_total(tmp_path):
    truth = write_layout("casme", clips_for("casme"), tmp_path, missing_offset=1)
    samples, report = read("casme", tmp_path)
    assert_matches(samples, truth)
    assert any("derived from Total" in r for r in problems(report, "repair"))


def test_casme3_other_expression_types_left_out(tmp_path):
    pytest.importorskip("xlwt")
    truth = write_layout("casme3", clips_for("casme3"), tmp_path, version="v2")
    samples, report = read("casme3", tmp_path)
    assert_matches(samples, truth)
    assert any("'Macro-expression' (1)" in n for n in problems(report, "note"))
    assert len(load("casme3", tmp_path, expression_type=None)) == len(truth) + 1


def test_ckplus_unlabelled_sequences_are_counted(tmp_path):
    truth = write_layout("ckplus", clips_for("ckplus"), tmp_path, unlabelled=3)
    samples, report = read("ckplus", tmp_path)
    assert_matches(samples, truth)
    assert any("3 of 10 sequences have no emotion file" in n for n in problems(report, "note"))


def test_columns_can_be_renamed_by_the_user(tmp_path):
    truth = write_layout("casme2", clips_for("casme2"), tmp_path)
    edit_xlsx(tmp_path / "CASME2-coding-20140508.xlsx", lambda ws: ws.cell(1, 7, "Feeling"))
    assert_matches(load("casme2", tmp_path, columns={"emotion": "Feeling"}), truth)
    assert_matches(load("casme2", tmp_path, columns={"emotion": 6}), truth)


def test_paths_can_be_given(tmp_path):
    truth = write_layout("casme2", clips_for("casme2"), tmp_path)
    (tmp_path / "CASME2-coding-20140508.xlsx").rename(tmp_path / "my sheet.xlsx")
    (tmp_path / "CASME2_RAW_selected").rename(tmp_path / "frames")
    samples = load("casme2", tmp_path, sheet="my sheet.xlsx", frames_dir=tmp_path / "frames")
    assert_matches(samples, truth)


def test_repairs_are_logged_when_nobody_asks_for_the_report(tmp_path, caplog):
    write_layout("casme2", clips_for("casme2"), tmp_path, missing_apex=1)
    with caplog.at_level("INFO", logger="microexpr.datasets"):
        samples = load("casme2", tmp_path)
    assert "1 documented repairs" in caplog.text and "apex not coded" in caplog.text
    assert "apex not coded" in samples[0].meta["findings"]
