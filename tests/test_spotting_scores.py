"""MEGC spotting and spot-then-recognise scores, on cases worked by hand.

Frames are inclusive: [a, b] covers b - a + 1 frames, IoU = overlap / (len1 + len2 - overlap).
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from microexpr.evaluate.spotting import format_scores, interval_iou, spotting_scores


def intervals(*rows: tuple, columns: str = "video onset offset type") -> pd.DataFrame:
    """One subject's intervals; each row gives the values of ``columns`` in order."""
    frame = pd.DataFrame(list(rows), columns=columns.split())
    frame.insert(0, "subject", "s1")
    return frame


def counts(scores, row: str = "overall") -> tuple[int, int, int]:
    line = scores.table.loc[row]
    return int(line.tp), int(line.fp), int(line.fn)


def test_frame_iou_counts_both_ends():
    # [1,10] vs [6,15]: overlap 6..10 = 5, union 10 + 10 - 5 = 15.
    assert interval_iou(1, 10, 6, 15) == pytest.approx(1 / 3)
    # Disjoint [1,3] vs [4,6]: 0 (the MEGC 2020 script's calc_iou would say 1/5).
    assert interval_iou(1, 3, 4, 6) == 0
    # A single frame on itself: 1 (that script gives 0 to any one-frame interval).
    assert interval_iou(5, 5, 5, 5) == 1


def test_iou_of_exactly_half_is_a_hit():
    # Truth [1,10] (10 frames), prediction [1,5]: overlap 5, union 10, IoU 0.5 -> hit.
    truth = intervals(("v1", 1, 10, "micro"))
    hit = spotting_scores(intervals(("v1", 1, 5, "micro")), truth)
    assert counts(hit) == (1, 0, 0)
    assert hit.matches.iou.iloc[0] == 0.5
    # [1,4]: overlap 4, union 10, IoU 0.4 -> one FP and one FN.
    assert counts(spotting_scores(intervals(("v1", 1, 4, "micro")), truth)) == (0, 1, 1)


def test_one_prediction_over_two_truths_takes_one():
    # Truths [1,10] and [11,20]; the prediction [1,20] has IoU 10/20 = 0.5 with each.
    # It takes one (equal IoU: the earlier onset), the other truth stays a FN:
    # TP 1, FP 0, FN 1 -> precision 1, recall 1/2, F1 2/3.
    truth = intervals(("v1", 1, 10, "micro"), ("v1", 11, 20, "micro"))
    scores = spotting_scores(intervals(("v1", 1, 20, "micro")), truth)
    assert counts(scores) == (1, 0, 1)
    assert scores.table.loc["overall", "f1"] == pytest.approx(2 / 3)
    assert scores.matches.truth_onset.iloc[0] == 1


def test_taken_truth_leaves_the_next_best_free_truth():
    # Truths A = [1,10], B = [4,13]. By onset, Q = [1,12] goes first:
    #   Q-A overlap 10, union 12 -> 0.833; Q-B overlap 4..12 = 9, union 1..13 = 13 -> 0.692.
    #   Q takes A (the higher IoU).
    # P = [2,11]: P-A 9/11 = 0.818 but A is taken; P-B overlap 4..11 = 8, union 2..13 = 12
    #   -> 0.667 >= 0.5, so P takes B. TP 2, FP 0, FN 0 (a VOC-greedy matcher, looking only
    #   at P's best truth A, would call P a FP).
    truth = intervals(("v1", 1, 10, "micro"), ("v1", 4, 13, "micro"))
    scores = spotting_scores(intervals(("v1", 2, 11, "micro"), ("v1", 1, 12, "micro")), truth)
    assert counts(scores) == (2, 0, 0)
    assert scores.matches.onset.tolist() == [1, 2]  # matching order: by onset
    assert scores.matches.truth_onset.tolist() == [1, 4]


def test_two_predictions_on_one_truth():
    # Truth [1,10]; predictions [1,10] (IoU 1) and [2,10] (IoU 9/10). Each truth is matched
    # once: TP 1, FP 1, FN 0 -> precision 1/2, recall 1, F1 2/3.
    truth = intervals(("v1", 1, 10, "micro", "happiness"), columns="video onset offset type label")
    preds = intervals(
        ("v1", 1, 10, "micro", "surprise", 0.2),
        ("v1", 2, 10, "micro", "happiness", 0.9),
        columns="video onset offset type emotion score",
    )
    by_onset = spotting_scores(preds.drop(columns="score"), truth)
    assert counts(by_onset) == (1, 1, 0)
    assert by_onset.table.loc["overall", "f1"] == pytest.approx(2 / 3)
    # Without scores [1,10] comes first (earlier onset) and its "surprise" is analysed: wrong.
    assert by_onset.table.loc["overall", "accuracy"] == 0
    # With scores, [2,10] (0.9) claims the truth first; its "happiness" is right.
    by_score = spotting_scores(preds, truth)
    assert counts(by_score) == (1, 1, 0)
    assert by_score.matches.onset.tolist() == [2, 1]
    assert by_score.table.loc["overall", "accuracy"] == 1


def test_empty_predictions():
    # Two truths, no prediction: TP 0, FP 0, FN 2; every 0/0 is 0. The truths name emotions,
    # so the analysis is 0 (nothing recognised), not undefined, and STRS is 0.
    truth = intervals(
        ("v1", 1, 10, "micro", "negative"),
        ("v2", 5, 9, "micro", "positive"),
        columns="video onset offset type emotion",
    )
    empty = truth.iloc[:0]
    scores = spotting_scores(empty, truth)
    assert counts(scores) == (0, 0, 2)
    overall = scores.table.loc["overall"]
    assert (overall.precision, overall.recall, overall.f1) == (0, 0, 0)
    assert (overall.analysed, overall.analysis_f1, overall.strs) == (0, 0, 0)
    assert scores.matches.empty


def test_video_without_truth_gives_false_positives_pooled_over_videos():
    # v1 holds truth [10,19], hit exactly; v2 has no truth, so its two predictions are FPs.
    # Pooled: TP 1, FP 2, FN 0 -> precision 1/3, recall 1, F1 = 2*1/(2*1 + 2 + 0) = 1/2.
    truth = intervals(("v1", 10, 19, "micro"))
    preds = intervals(("v1", 10, 19, "micro"), ("v2", 1, 10, "micro"), ("v2", 30, 40, "micro"))
    scores = spotting_scores(preds, truth)
    assert counts(scores) == (1, 2, 0)
    assert scores.table.loc["overall", "precision"] == pytest.approx(1 / 3)
    assert scores.table.loc["overall", "f1"] == pytest.approx(1 / 2)


def test_per_type_counts_and_a_micro_prediction_on_a_macro_truth():
    # Truths: micro [10,19], macro [100,159].
    # Predictions: micro [10,19] hits the micro truth; micro [100,159] lies exactly on the
    # macro truth but only competes for micro truths, so it is a micro FP and the macro
    # truth a macro FN; macro [300,359] hits nothing.
    #   micro: TP 1, FP 1, FN 0 -> P 1/2, R 1, F1 2/3
    #   macro: TP 0, FP 1, FN 1 -> 0, 0, 0
    #   overall (pooled): TP 1, FP 2, FN 1 -> P 1/3, R 1/2, F1 2/(2 + 2 + 1) = 0.4
    truth = intervals(("v1", 10, 19, "micro"), ("v1", 100, 159, "Macro-expression"))
    preds = intervals(("v1", 10, 19, "micro"), ("v1", 100, 159, "micro"), ("v1", 300, 359, "macro"))
    scores = spotting_scores(preds, truth)
    assert list(scores.table.index) == ["micro", "macro", "overall"]
    assert counts(scores, "micro") == (1, 1, 0)
    assert counts(scores, "macro") == (0, 1, 1)
    assert counts(scores) == (1, 2, 1)
    assert scores.table.loc["micro", "f1"] == pytest.approx(2 / 3)
    assert scores.table.loc["macro", "f1"] == 0
    assert scores.table.loc["overall", "f1"] == pytest.approx(0.4)
    assert "strs" not in scores.table.columns  # no emotions, no analysis


STR_TRUTH = (
    ("v1", 10, 19, "micro", "negative"),
    ("v1", 40, 49, "micro", "positive"),
    ("v1", 70, 79, "micro", "surprise"),
    ("v1", 100, 109, "micro", "negative"),
)
STR_PRED = (
    ("v1", 10, 19, "micro", "Negative"),  # IoU 1 with [10,19]: right
    ("v1", 42, 51, "micro", "negative"),  # 8/12 = 0.667 with [40,49]: wrong (positive)
    ("v1", 70, 79, "micro", "surprise"),  # IoU 1 with [70,79]: right
    ("v1", 200, 209, "micro", "negative"),  # FP; [100,109] is a FN
)


def test_strs_is_spotting_f1_times_analysis_f1():
    # Spotting: TP 3, FP 1, FN 1 -> P = R = F1 = 3/4.
    # Analysis over the 3 hits, true [neg, pos, sur] vs predicted [neg, neg, sur]:
    #   accuracy 2/3
    #   negative: TP 1, FP 1, FN 0 -> P 1/2, R 1, F1 2/3
    #   positive: TP 0, FP 0, FN 1 -> P 0,   R 0, F1 0
    #   surprise: TP 1              -> P 1,   R 1, F1 1
    #   macro precision 1/2, UAR 2/3, analysis F1 = 2 (1/2)(2/3) / (1/2 + 2/3) = 4/7,
    #   UF1 = (2/3 + 0 + 1)/3 = 5/9.   STRS = 3/4 * 4/7 = 3/7.
    columns = "video onset offset type emotion"
    truth = intervals(*STR_TRUTH, columns=columns)
    pred = intervals(*STR_PRED, columns="video onset offset type label")  # 'label' alias
    row = spotting_scores(pred, truth).table.loc["micro"]
    assert row.f1 == pytest.approx(3 / 4)
    assert row.analysed == 3
    assert row.accuracy == pytest.approx(2 / 3)
    assert row.emotion_precision == pytest.approx(1 / 2)
    assert row.uar == pytest.approx(2 / 3)
    assert row.analysis_f1 == pytest.approx(4 / 7)
    assert row.uf1 == pytest.approx(5 / 9)
    assert row.strs == pytest.approx(3 / 7)


def test_fixed_classes_count_an_absent_class_as_zero():
    # Same hits over 4 protocol classes; "others" occurs on neither side and scores 0:
    #   macro precision 1.5/4 = 3/8, UAR 2/4 = 1/2, analysis F1 = 2 (3/8)(1/2) / (7/8) = 3/7,
    #   UF1 = (5/3)/4 = 5/12, STRS = 3/4 * 3/7 = 9/28.
    columns = "video onset offset type emotion"
    truth, pred = intervals(*STR_TRUTH, columns=columns), intervals(*STR_PRED, columns=columns)
    classes = ["negative", "positive", "surprise", "others"]
    row = spotting_scores(pred, truth, classes=classes).table.loc["micro"]
    assert row.emotion_precision == pytest.approx(3 / 8)
    assert row.uar == pytest.approx(1 / 2)
    assert row.analysis_f1 == pytest.approx(3 / 7)
    assert row.uf1 == pytest.approx(5 / 12)
    assert row.strs == pytest.approx(9 / 28)


def test_truths_without_emotions_leave_the_analysis_undefined():
    # Only the macro truth lacks an emotion: its row has nothing to recognise (NaN), while
    # the micro row and the overall row score the one micro hit (right: all 1).
    truth = intervals(
        ("v1", 10, 19, "micro", "positive"),
        ("v1", 100, 159, "macro", None),
        columns="video onset offset type emotion",
    )
    scores = spotting_scores(truth, truth)
    assert math.isnan(scores.table.loc["macro", "strs"])
    assert scores.table.loc["macro", "analysed"] == 0
    assert scores.table.loc["micro", "strs"] == 1
    assert scores.table.loc["overall", "analysed"] == 1
    as_dict = scores.to_dict()
    assert as_dict["rows"]["macro"]["strs"] is None
    assert as_dict["rows"]["overall"]["tp"] == 2
    json.dumps(as_dict)
    text = format_scores(scores)
    assert "strs" in text and "overall" in text


def test_missing_column_is_named():
    truth = intervals(("v1", 1, 10, "micro"))
    with pytest.raises(ValueError, match=r"pred is missing column 'offset'"):
        spotting_scores(truth.drop(columns="offset"), truth)


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda f: f.assign(offset=[0]), r"row 0 \(from 0\): offset 0 is before onset 1"),
        (lambda f: f.assign(onset=[1.5]), "'onset' must hold whole frame numbers"),
        (lambda f: f.assign(type=["mega"]), "'type' must be micro or macro, not mega"),
        (lambda f: f.drop(columns="type"), "truth has a 'type' column and pred has not"),
        (lambda f: f.assign(emotion=["x"], label=["y"]), "both 'emotion' and 'label'"),
    ],
)
def test_bad_values_are_refused(edit, pattern):
    truth = intervals(("v1", 1, 10, "micro"))
    with pytest.raises(ValueError, match=pattern):
        spotting_scores(edit(truth), truth)
