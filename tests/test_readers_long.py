"""Long-video readers (CAS(ME)^2, SAMM Long Videos, CAS(ME)^3 long clips) against their
replicas: every video and event exactly as written, quirks repaired and reported, bad rows
named by file and row, and `datasets check` on each layout."""

from __future__ import annotations

import functools
import shutil

import pytest
from readers_support import edit_xlsx, problems
from typer.testing import CliRunner

from microexpr.cli import app
from microexpr.datasets import VIDEO_READERS, DataError, load_videos
from microexpr.datasets.problems import Report
from microexpr.samples import truth_table
from microexpr.synth.layouts import LONG_LAYOUTS
from microexpr.synth.long_videos import LONG_WRITERS, LongVideo, generate_long_videos
from microexpr.synth.replicas import write_long_layout

EMOTIONS = {
    "casme_sq": ("negative", "positive", "surprise", "others"),
    "samm_lv": ("anger", "happiness", "surprise", "contempt"),
    "casme3_lv": ("happiness", "disgust", "surprise", "others", "sadness"),
}
FPS = {"casme_sq": 30.0, "samm_lv": 200.0, "casme3_lv": 30.0}


@functools.cache
def videos_for(name: str) -> tuple[LongVideo, ...]:
    """Two subjects x two small 3 s videos at 30 fps (90 frames: the readers see frame
    numbers, not durations) with emotions the database codes."""
    return tuple(
        generate_long_videos(
            2, 2, seconds=3.0, fps=30.0, size=24, micro=2, macro=1, seed=4,
            emotions=EMOTIONS[name],
        )
    )  # fmt: skip


def written(tmp_path, name: str, **quirks):
    return write_long_layout(name, videos_for(name), tmp_path, **quirks)


LAYOUTS = [
    ("casme_sq", {}),
    ("casme_sq", {"workbook": "CAS(ME)^2code_final(Updated).xlsx", "unpadded": True}),
    ("casme_sq", {"offset_zero": 2, "apex_zero": 1, "offset_before_apex": 1}),
    ("samm_lv", {"version": "V1"}),
    ("samm_lv", {"version": "V2", "five_digits": True, "repeated_name": True}),
    ("samm_lv", {"fractional": 2, "apex_minus_one": 1, "onset_zero": 1, "offset_past_end": 1}),
    ("casme3_lv", {"version": "v2"}),
    ("casme3_lv", {"version": "split"}),
    ("casme3_lv", {"offset_zero": 1, "missing_apex_frame": 1, "upper_clip": 1}),
]


@pytest.mark.parametrize(("name", "layout"), LAYOUTS, ids=str)
def test_round_trip_gives_every_video_and_event_exactly(tmp_path, name, layout):
    truth = written(tmp_path, name, **layout)
    report = Report()
    videos = load_videos(name, tmp_path, report=report)
    assert [v.id for v in videos] == [v.id for v in truth]
    for got, want in zip(videos, truth, strict=True):
        assert got.events == want.events, got.id  # onset, apex, offset, type, emotion, AUs
        assert got.frames == want.frames and got.subject == want.subject
        assert got.fps == FPS[name]
    assert sum(len(v.events) for v in videos) == 4 * 3
    assert {e.type for v in videos for e in v.events} == {"micro", "macro"}
    assert not report.errors


def test_truth_tables_are_equal(tmp_path):
    truth = written(tmp_path, "casme_sq")
    table = truth_table(load_videos("casme_sq", tmp_path))
    assert table.equals(truth_table(truth))
    assert set(table["video"]) == {"s15_0101", "s15_0102", "s16_0101", "s16_0102"}


QUIRK_FINDINGS = [
    ("casme_sq", {"offset_zero": 1}, "repair", "offset 0 (not coded): offset set to the apex"),
    ("casme_sq", {"apex_zero": 1}, "repair", "apex 0 (not annotated): left uncoded"),
    ("casme_sq", {"offset_before_apex": 1}, "repair", "outside onset..offset"),
    ("casme_sq", {"code_as_number": True}, "repair", "video code 101 read as 0101"),
    ("samm_lv", {"fractional": 1}, "repair", "is not a whole frame: read as"),
    ("samm_lv", {"apex_minus_one": 1}, "repair", "apex -1 (not annotated): left uncoded"),
    ("samm_lv", {"onset_zero": 1}, "repair", "onset 0 is before the first frame 1"),
    ("samm_lv", {"offset_past_end": 1}, "repair", "is after the last frame 90"),
    ("samm_lv", {"repeated_name": True}, "note", "also coded on row 11; both kept"),
    ("samm_lv", {}, "note", "header on row 10; the preamble above it skipped"),
    ("casme3_lv", {"missing_apex_frame": 1}, "repair", "missing in"),
    ("casme3_lv", {"upper_clip": 1}, "note", "clip 'A' read as 'a'"),
    ("casme3_lv", {}, "note", "emotion spellings folded"),
]


@pytest.mark.parametrize(("name", "quirks", "kind", "text"), QUIRK_FINDINGS, ids=str)
def test_quirks_are_repaired_and_reported_with_their_row(tmp_path, name, quirks, kind, text):
    truth = written(tmp_path, name, **quirks)
    report = Report()
    assert load_videos(name, tmp_path, report=report) == truth
    found = [p for p in report.problems if p.kind == kind and text in p.reason]
    assert found, problems(report, kind)
    if kind == "repair":
        assert all(p.row for p in found)


@pytest.mark.parametrize("name", ["casme_sq", "samm_lv", "casme3_lv"])
def test_without_the_quirks_nothing_is_repaired(tmp_path, name):
    written(tmp_path, name)
    report = Report()
    load_videos(name, tmp_path, report=report)
    assert not report.of_kind("repair"), problems(report, "repair")


def test_samm_emotions_come_from_the_micro_sheet(tmp_path):
    truth = written(tmp_path, "samm_lv", micro_sheet=True)
    plain = load_videos("samm_lv", tmp_path)
    assert {e.emotion for v in plain for e in v.events} == {""}
    report = Report()
    joined = load_videos(
        "samm_lv", tmp_path, emotion_sheet="SAMM_Micro_FACS_Codes_v2.xlsx", report=report
    )
    for video, want in zip(joined, truth, strict=True):
        assert [(e.onset, e.type) for e in video.events] == [(e.onset, e.type) for e in want.events]
        for event in video.events:
            if event.type == "macro":
                assert event.emotion == ""
    micro = [e.emotion for v in joined for e in v.events if e.type == "micro"]
    assert all(micro) and set(micro) <= set(EMOTIONS["samm_lv"])
    assert any("emotions of 8 of 8 micro rows" in p for p in problems(report, "note"))


def test_a_video_folder_without_rows_is_a_video_without_events(tmp_path):
    written(tmp_path, "samm_lv")
    shutil.copytree(tmp_path / "SAMM_longvideos/006_1", tmp_path / "SAMM_longvideos/006_9")
    report = Report()
    videos = {v.id: v for v in load_videos("samm_lv", tmp_path, report=report)}
    assert videos["006_9"].events == () and len(videos["006_9"].frames) == 90
    assert any("1 videos have no coded event: 006_9" in p for p in problems(report, "note"))


# --------------------------------------------------------------------------- bad input


def _cell(path, cell: str, value) -> None:
    def edit(sheet):
        sheet[cell] = value

    edit_xlsx(path, edit)


SAMM_BOOK, CODE_BOOK = "SAMM_LongVideos_V3_Release.xlsx", "CAS(ME)^2code_final.xlsx"
BAD_ROWS = [
    # (database, workbook, cell, value, row in the message, reason)
    ("samm_lv", SAMM_BOOK, "D12", "soon", 12, "onset 'soon' is not a frame"),
    ("samm_lv", SAMM_BOOK, "H11", "Blink", 11, "neither micro nor macro"),
    ("samm_lv", SAMM_BOOK, "B13", "006_7_1", 13, "no folder 006_7"),
    ("samm_lv", SAMM_BOOK, "F11", 2, 11, "before onset"),
    ("casme_sq", CODE_BOOK, "B2", "angry9_1", 2, "'angry9' is not in 'naming rule2'"),
    ("casme_sq", CODE_BOOK, "A3", 23, 3, "subject index 23 is not in"),
    ("casme_sq", CODE_BOOK, "G4", "joy", 4, "unknown emotion 'joy'"),
    ("casme_sq", CODE_BOOK, "C2", 99999, 2, "before onset 99999"),
    ("casme_sq", CODE_BOOK, "H5", "blink", 5, "neither micro nor macro"),
]


@pytest.mark.parametrize(("name", "book", "cell", "value", "row", "reason"), BAD_ROWS, ids=str)
def test_a_bad_row_is_named_by_file_and_row(tmp_path, name, book, cell, value, row, reason):
    written(tmp_path, name)
    _cell(tmp_path / book, cell, value)
    with pytest.raises(DataError, match=reason) as info:
        load_videos(name, tmp_path, on_error="raise")
    assert info.value.file.name == book and info.value.row == row
    assert f"{book}, row {row}: " in str(info.value)
    report = Report()  # by default the row is skipped with its reason, the others read
    videos = load_videos(name, tmp_path, report=report)
    assert [(p.file.name, p.row) for p in report.errors] == [(book, row)]
    assert sum(len(v.events) for v in videos) == 4 * 3 - 1


def test_a_missing_clip_folder_names_the_row(tmp_path):
    written(tmp_path, "casme3_lv")
    shutil.rmtree(tmp_path / "part_A/data/part_A_split/part_A/spNO.2/b")
    with pytest.raises(DataError, match=r"row \d+: no folder 'b' in .*spNO.2"):
        load_videos("casme3_lv", tmp_path, on_error="raise")


def test_a_missing_naming_sheet_is_an_error_naming_the_file(tmp_path):
    import openpyxl

    written(tmp_path, "casme_sq")
    path = tmp_path / "CAS(ME)^2code_final.xlsx"
    book = openpyxl.load_workbook(path)
    del book["naming rule2"]
    book.save(path)
    with pytest.raises(DataError, match="naming rule2.*maps the code rows to folders"):
        load_videos("casme_sq", tmp_path)


def test_column_names_can_be_overridden(tmp_path):
    truth = written(tmp_path, "samm_lv")
    _cell(tmp_path / SAMM_BOOK, "H10", "Kind")
    with pytest.raises(DataError, match="no column for"):
        load_videos("samm_lv", tmp_path)
    assert load_videos("samm_lv", tmp_path, columns={"type": "Kind"}) == truth
    # CAS(ME)^2's code sheet has no header: its columns are moved by number.
    written(tmp_path / "c2", "casme_sq")
    with pytest.raises(ValueError, match="no header row: give column numbers"):
        load_videos("casme_sq", tmp_path / "c2", columns={"emotion": "Emotion"})
    with pytest.raises(DataError, match="unknown emotion 'happyiness'"):  # self-report column
        load_videos("casme_sq", tmp_path / "c2", columns={"emotion": 8}, on_error="raise")


# --------------------------------------------------------------------------- registry, CLI


def test_every_long_video_reader_has_a_writer_and_a_layout():
    assert VIDEO_READERS.names() == LONG_WRITERS.names() == LONG_LAYOUTS.names()


@pytest.mark.parametrize("name", ["casme_sq", "samm_lv", "casme3_lv"])
def test_synth_then_check_each_layout(tmp_path, name):
    runner = CliRunner()
    out, truth = tmp_path / "replica", tmp_path / "truth.csv"
    args = ["synth", "--layout", name, "--out", str(out), "--subjects", "2", "--size", "24"]
    args += ["--seconds", "3", "--fps", "30", "--micro", "2", "--macro", "1", "--truth", str(truth)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    import pandas as pd

    table = pd.read_csv(truth, dtype={"subject": str, "video": str}, keep_default_na=False)
    got = truth_table(load_videos(name, out))
    assert len(table) == len(got) == 6
    assert table[["video", "onset", "offset", "type"]].equals(
        got[["video", "onset", "offset", "type"]]
    )
    result = runner.invoke(app, ["datasets", "check", name, str(out)])
    assert result.exit_code == 0, result.output
    assert f"{name}: 2 videos, 2 subjects, 6 events" in result.output
    assert "micro" in result.output and "0 errors" in result.output


def test_check_exits_1_and_lists_the_bad_row(tmp_path):
    written(tmp_path, "samm_lv")
    _cell(tmp_path / SAMM_BOOK, "D12", "soon")
    result = CliRunner().invoke(app, ["datasets", "check", "samm_lv", str(tmp_path)])
    assert result.exit_code == 1
    assert "row 12: error: onset 'soon' is not a frame number" in result.output
    assert "1 errors" in result.output


def test_an_unreadable_frame_is_an_error(tmp_path):
    truth = written(tmp_path, "casme3_lv")
    first = truth[0]
    key = first.frames[first.events[0].onset]
    key.write_bytes(key.read_bytes()[:40])  # a JPEG cut short
    report = Report()
    videos = load_videos("casme3_lv", tmp_path, report=report)
    assert [p.reason.split(":")[0] for p in report.errors] == [f"cannot read image {key}"]
    assert sum(len(v.events) for v in videos) == 4 * 3 - 1
    other = truth[1].frames[0]  # not a key frame: only `check` (every frame decoded) finds it
    other.write_bytes(b"")
    result = CliRunner().invoke(app, ["datasets", "check", "casme3_lv", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{other}: error: cannot read image: empty file" in result.output.replace("\n", "")


def test_datasets_list_names_the_long_video_readers():
    result = CliRunner().invoke(app, ["datasets", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    rows = [line for line in result.output.splitlines() if "long videos" in line]
    assert sorted(line.split()[1] for line in rows) == sorted(VIDEO_READERS.names())
