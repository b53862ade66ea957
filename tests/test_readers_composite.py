"""MEGC2019 composite: 145/133/164 and the negative/positive/surprise mapping on a replica
that mirrors the real subject and clip lists; official gt file, its -2 variant, and the rule."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest
from readers_support import assert_matches, clips_for

from microexpr.datasets import DataError, load
from microexpr.datasets.problems import Report
from microexpr.synth import write_layout

REAL_LIST = (
    Path(__file__).resolve().parents[1]
    / "../shared/data/megc2019_composite/combined_3_class2_for_optical_flow.csv"
)
FIELDS = ("dataset", "subject", "label", "onset", "apex", "offset")


@pytest.fixture(scope="module")
def real_rows() -> list[tuple[str, str, str, int]]:
    if not REAL_LIST.is_file():
        pytest.skip(f"real composite list not found at {REAL_LIST}")
    with REAL_LIST.open(newline="") as handle:
        return [
            (r["dataset"], r["sub"], r["filename_o"], int(r["label"]))
            for r in csv.DictReader(handle)
        ]


@pytest.fixture(scope="module")
def mirror_clips():
    return clips_for("composite", subjects=1, per_subject=3, frames=3)


@pytest.mark.parametrize("gt", ["standard", None])
def test_mirror_of_real_lists_gives_145_133_164(tmp_path, real_rows, mirror_clips, gt):
    truth = write_layout("composite", mirror_clips, tmp_path, mirror=real_rows, gt=gt)
    report = Report()
    samples = load("composite", tmp_path, report=report)
    assert Counter(s.dataset for s in samples) == {"casme2": 145, "samm": 133, "smic": 164}
    per_class = Counter((s.dataset, s.label) for s in samples)
    want = Counter((db, ("negative", "positive", "surprise")[y]) for db, _, _, y in real_rows)
    assert per_class == want  # casme2 88/32/25, samm 92/26/15, smic 70/51/43
    assert len({(s.dataset, s.subject) for s in samples}) == 68
    assert_matches(samples, truth, FIELDS)
    assert not report.errors
    if gt is None:
        assert any("documented rule" in p.reason for p in report.problems)


def test_ids_match_the_flow_image_names(tmp_path, real_rows, mirror_clips):
    write_layout("composite", mirror_clips, tmp_path, mirror=real_rows)
    samples = load("composite", tmp_path)
    assert {s.id for s in samples} == {f"{sub}_{clip}" for _, sub, clip, _ in real_rows}


def test_variant2_gt_file_is_one_samm_clip_short_and_says_so(tmp_path, real_rows, mirror_clips):
    truth = write_layout("composite", mirror_clips, tmp_path, mirror=real_rows, gt="variant2")
    report = Report()
    samples = load("composite", tmp_path, report=report)
    assert len(samples) == len(truth) == 441
    assert "032_3_1" not in {s.meta["clip"] for s in samples}
    notes = " ".join(p.reason for p in report.problems)
    assert "empty lines skipped" in notes and "samm 032/032_3_1" in notes


def test_gt_file_is_headerless_crlf(tmp_path, mirror_clips):
    write_layout("composite", mirror_clips, tmp_path)
    raw = (tmp_path / "combined_3class_gt.csv").read_bytes()
    assert raw.count(b"\r\n") == len(mirror_clips)
    first = raw.split(b"\r\n")[0].decode().split(",")
    assert first[0] == "casme2" and first[3] in "012"


def test_mapping_of_database_emotions(tmp_path, mirror_clips):
    write_layout("composite", mirror_clips, tmp_path, gt=None)
    samples = load("composite", tmp_path)
    negative = {"repression", "anger", "contempt", "disgust", "fear", "sadness", "negative"}
    for sample in samples:
        emotion = sample.meta["emotion"]
        expected = (
            "negative"
            if emotion in negative
            else {
                "happiness": "positive",
                "positive": "positive",
                "surprise": "surprise",
            }[emotion]
        )
        assert sample.label == expected


def test_rule_leaves_out_others_sadness_fear_and_the_two_casme2_clips(tmp_path, mirror_clips):
    write_layout("composite", mirror_clips, tmp_path, gt=None, extras=True)
    every = {
        db: load(db, tmp_path / folder)
        for db, folder in (("casme2", "CASME2"), ("samm", "SAMM"), ("smic", "SMIC"))
    }
    chosen = {s.id for s in load("composite", tmp_path, gt=False)}
    left_out = {s.id for db in every for s in every[db]} - chosen
    reasons = {s.id: s.label for db in every for s in every[db] if s.id in left_out}
    assert "sub04_EP12_01f" in reasons and "sub05_EP09_05f" in reasons
    assert {"others", "sadness", "fear"} <= set(reasons.values())
    assert "025_025_9_9" in reasons  # SAMM subject 025 has only Other rows
    assert not any(
        s.label == "others" for db in ("casme2", "samm") for s in every[db] if s.id in chosen
    )


def test_gt_label_disagreeing_with_the_sheet_wins_and_is_reported(tmp_path, mirror_clips):
    write_layout("composite", mirror_clips, tmp_path)
    gt = tmp_path / "combined_3class_gt.csv"
    lines = gt.read_text().splitlines()
    db, sub, clip, label = lines[0].split(",")
    lines[0] = ",".join([db, sub, clip, str((int(label) + 1) % 3)])
    gt.write_text("\r\n".join(lines) + "\r\n")
    report = Report()
    samples = load("composite", tmp_path, report=report)
    changed = next(s for s in samples if s.meta["clip"] == clip and s.dataset == db)
    assert changed.label == ("negative", "positive", "surprise")[(int(label) + 1) % 3]
    repairs = [p for p in report.problems if p.kind == "repair" and "gt label is used" in p.reason]
    assert len(repairs) == 1 and repairs[0].file == gt and repairs[0].row == 1


def test_gt_row_without_a_clip_names_file_and_line(tmp_path, mirror_clips):
    write_layout("composite", mirror_clips, tmp_path)
    gt = tmp_path / "combined_3class_gt.csv"
    clean = len(load("composite", tmp_path))
    gt.write_text(gt.read_text() + "samm,99,099_1_1,0\r\n")
    pattern = r"combined_3class_gt\.csv, row \d+: samm clip 099/099_1_1"
    with pytest.raises(DataError, match=pattern):
        load("composite", tmp_path, on_error="raise")
    report = Report()  # the default, on_error="skip": that row alone is left out, named
    assert len(load("composite", tmp_path, report=report)) == clean
    assert [re.search(pattern, f"{p.where}: {p.reason}") is not None for p in report.errors] == [
        True
    ]


def test_gt_row_with_a_bad_label(tmp_path, mirror_clips):
    write_layout("composite", mirror_clips, tmp_path)
    gt = tmp_path / "combined_3class_gt.csv"
    clean = len(load("composite", tmp_path))
    gt.write_text("casme2,sub01,EP01_01,7\r\n" + gt.read_text())
    with pytest.raises(DataError, match=r"row 1: label '7' is not 0, 1 or 2"):
        load("composite", tmp_path, on_error="raise")
    report = Report()
    assert len(load("composite", tmp_path, report=report)) == clean
    assert [(p.file.name, p.row) for p in report.errors] == [("combined_3class_gt.csv", 1)]
