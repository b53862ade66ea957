"""``microexpr datasets check NAME PATH``: counts, problems with file and row, exit codes."""

from __future__ import annotations

from readers_support import clips_for, edit_xlsx
from typer.testing import CliRunner

from microexpr.cli import _reader_options, app
from microexpr.synth import write_layout

runner = CliRunner()


def test_check_prints_counts_and_repairs(tmp_path):
    write_layout("casme2", clips_for("casme2"), tmp_path, missing_apex=1)
    result = runner.invoke(app, ["datasets", "check", "casme2", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "casme2: 10 samples, 2 subjects" in result.output
    assert "casme2-5: 10 samples" in result.output
    assert "casme2-3: 8 samples (negative 4, positive 2, surprise 2)" in result.output
    assert "casme2/sub01 5" in result.output
    assert "row 2: repair: apex not coded" in result.output
    assert "0 errors, 1 repairs" in result.output


def test_check_exits_1_and_names_file_and_row(tmp_path):
    write_layout("casme2", clips_for("casme2"), tmp_path)

    def break_rows(sheet) -> None:
        sheet.cell(4, 7).value = "joy"
        sheet.cell(9, 3).value = "?x"

    edit_xlsx(tmp_path / "CASME2-coding-20140508.xlsx", break_rows)
    result = runner.invoke(app, ["datasets", "check", "casme2", str(tmp_path)])
    assert result.exit_code == 1
    assert "casme2: 8 samples" in result.output
    assert "CASME2-coding-20140508.xlsx, row 4: error: unknown emotion 'joy'" in result.output
    assert "row 9: error: onset '?x' is not a frame number" in result.output


def test_check_passes_reader_options(tmp_path):
    write_layout("smic", clips_for("smic"), tmp_path, modality="NIR")
    result = runner.invoke(app, ["datasets", "check", "smic", str(tmp_path), "-o", "modality=NIR"])
    assert result.exit_code == 0, result.output
    assert "smic-3: 10 samples" in result.output


def test_check_of_a_missing_folder_fails(tmp_path):
    result = runner.invoke(app, ["datasets", "check", "samm", str(tmp_path / "nowhere")])
    assert result.exit_code != 0


def test_reader_options_nest_and_convert():
    options = _reader_options(["columns.emotion=Feeling", "columns.onset=3", "gt=false"])
    assert options == {"columns": {"emotion": "Feeling", "onset": 3}, "gt": False}


def test_check_composite_keeps_the_findings_of_its_databases(tmp_path):
    write_layout("composite", clips_for("composite", 1, 3, 3), tmp_path, gt="variant2")
    result = runner.invoke(app, ["datasets", "check", "composite", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "SMIC codes no apex" in result.output
    assert "empty lines skipped" in result.output


def test_check_unknown_reader_name():
    result = runner.invoke(app, ["datasets", "check", "casme9", "."])
    assert result.exit_code == 2 and "known: casme," in result.output
