"""The learned spotter and its LOSO protocol: no test subject reaches fitting or level
selection, a saved spotter round-trips bitwise, the recipe refuses unknown keys, and on a
tiny synthetic set (tracked for real) it beats chance, through ``microexpr spot`` and through
``Analyzer``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from microexpr.analyze import Analyzer, learned, spotting_loso
from microexpr.analyze.learned import (
    FrameFeatures,
    SpotterConfig,
    VideoFeatures,
    feature_names,
    fit_spotter,
    load_spotter,
    load_spotter_config,
    predict_table,
    pseudo_labels,
)
from microexpr.analyze.spotting_loso import read_synthetic, video_features
from microexpr.cli import app
from microexpr.config import ConfigError
from microexpr.evaluate.spotting import spotting_scores
from microexpr.samples import Event
from microexpr.synth.long_videos import iter_long_videos, long_video_truth, write_long_video

FAST = {
    "regressor": {"kind": "ridge", "alpha": 1.0},
    "selection": {"inner_folds": 2, "thresholds": [0.3, 0.5], "extend_ratios": [0.5]},
}


def fake_videos(subjects: int = 4, per_subject: int = 2, seed: int = 0) -> list[VideoFeatures]:
    """Features made by hand: noise, plus a bump in a few columns at every planted event."""
    rng = np.random.default_rng(seed)
    settings = SpotterConfig().analyze
    width, n = len(feature_names(settings)), 200
    out = []
    for s in range(subjects):
        for v in range(per_subject):
            events = []
            x = rng.normal(0, 0.3, (n, width))
            for onset, kind, length in ((30, "micro", 6), (90, "macro", 30), (150, "micro", 8)):
                apex = onset + length // 2
                events.append(Event(onset, apex, onset + length - 1, kind, "happiness"))
            for e in events:
                x[:, :10] += 3 * pseudo_labels(n, [e], e.type)[:, None]
            regions = {"chin": np.zeros(n)}
            features = FrameFeatures(x, (60, 15), regions)
            out.append(VideoFeatures(f"s{s}_v{v}", "fake", f"s{s}", 30.0, features, tuple(events)))
    return out


def test_no_test_subject_reaches_fitting_or_level_selection(monkeypatch):
    calls: list[tuple[str, set[str]]] = []
    original = {name: getattr(learned, name) for name in ("fit_heads", "select_levels")}
    original["fit_spotter"] = spotting_loso.fit_spotter

    def fit_spotter_spy(videos, config):
        calls.append(("fold", {v.subject for v in videos}))
        return original["fit_spotter"](videos, config)

    def fit_heads_spy(videos, config):
        calls.append(("fit", {v.subject for v in videos}))
        return original["fit_heads"](videos, config)

    def select_spy(inner, config):
        calls.append(("select", {v.subject for _, held in inner for v in held}))
        return original["select_levels"](inner, config)

    monkeypatch.setattr(spotting_loso, "fit_spotter", fit_spotter_spy)
    monkeypatch.setattr(learned, "fit_heads", fit_heads_spy)
    monkeypatch.setattr(learned, "select_levels", select_spy)
    videos = fake_videos()
    result = spotting_loso.spotting_loso(videos, SpotterConfig.model_validate(FAST))
    folds = [i for i, (phase, _) in enumerate(calls) if phase == "fold"]
    assert len(folds) == len(result.folds) == 4
    for n, start in enumerate(folds):
        end = folds[n + 1] if n + 1 < len(folds) else len(calls)
        (test,) = result.folds[n]["test_subjects"]
        seen = [subjects for _, subjects in calls[start:end]]
        assert all(test not in subjects for subjects in seen), (test, seen)
        assert any(phase == "select" for phase, _ in calls[start:end])
        assert test not in result.folds[n]["train_subjects"]
    # each fold's predictions are of its own test subject only
    for name, part in result.predictions.groupby("fold"):
        assert set(part.subject) <= {name.split("-")[-1]}


def test_a_signal_only_the_test_subject_has_is_never_learned():
    """One subject's events are marked by a column no other subject uses: if the test subject
    reached fitting, its fold would find them; fitted without it, the column means nothing."""
    videos = fake_videos(subjects=4, per_subject=1)
    planted = videos[0]
    for e in planted.events:  # move subject s0's signal into column 20 only
        planted.features.x[:, :10] -= 3 * pseudo_labels(len(planted), [e], e.type)[:, None]
        planted.features.x[:, 20] += 8 * pseudo_labels(len(planted), [e], e.type)
    result = spotting_loso.spotting_loso(videos, SpotterConfig.model_validate(FAST))
    s0 = result.predictions[result.predictions.subject == "s0"]
    truth = result.truth[result.truth.subject == "s0"]
    assert spotting_scores(s0, truth).table.loc["overall", "tp"] == 0
    others = result.predictions[result.predictions.subject != "s0"]
    rest = result.truth[result.truth.subject != "s0"]
    assert spotting_scores(others, rest).table.loc["overall", "f1"] > 0.4


@pytest.mark.parametrize("kind", ["ridge", "mlp"])
def test_a_saved_spotter_round_trips_bitwise(tmp_path, kind):
    config = SpotterConfig.model_validate(
        FAST | {"regressor": {"kind": kind, "hidden": [8], "max_iter": 30}}
    )
    videos = fake_videos(subjects=3, per_subject=1)
    spotter = fit_spotter(videos, config)
    path = spotter.save(tmp_path / "spotter.json")
    again = load_spotter(path)
    again.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == path.read_bytes()
    for head, other in zip(spotter.heads.values(), again.heads.values(), strict=True):
        for a, b in zip(head.regressor.weights, other.regressor.weights, strict=True):
            assert a.tobytes() == b.tobytes()
        assert (head.threshold, head.extend) == (other.threshold, other.extend)
    x = videos[0].features
    first = spotter.signal(x, 30.0, config.analyze).scores
    second = again.signal(x, 30.0, config.analyze).scores
    assert first.tobytes() == second.tobytes()
    assert b"pickle" not in path.read_bytes() and path.read_text().startswith("{")


def test_a_damaged_spotter_file_is_refused_by_name(tmp_path):
    bad = tmp_path / "spotter.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="spotter.json"):
        load_spotter(bad)
    with pytest.raises(ValueError, match="analyze.spotter"):
        Analyzer(method="learned", spotter=str(tmp_path / "absent.json"))
    with pytest.raises(ValueError, match="needs analyze.spotter"):
        Analyzer(method="learned")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("bogus: 1\n", "bogus"),
        ("regressor:\n  kind: mlp\n  depth: 3\n", "regressor.depth"),
        ("analyze:\n  treshold: 3\n", "analyze.treshold"),
        ("selection:\n  extend_ratios: [1.5]\n", "selection.extend_ratios"),
        ("regressor:\n  kind: forest\n", "regressor.kind"),
    ],
)
def test_the_recipe_refuses_unknown_keys_and_bad_values_by_name(tmp_path, text, key):
    path = tmp_path / "spotter.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_spotter_config(path)


def test_the_shipped_recipe_loads_and_takes_overrides():
    config = load_spotter_config("configs/spotter_softnet.yaml", ["regressor.kind=ridge"])
    assert config.regressor.kind == "ridge" and config.analyze.method == "region_flow"
    with pytest.raises(ConfigError, match="nonsense"):
        load_spotter_config("configs/spotter_softnet.yaml", ["nonsense=1"])


# --- the real pipeline on a tiny synthetic set -----------------------------------------------


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """4 subjects x 1 video of 5 s at 30 fps, 160 px, 2 micro + 1 macro each, noise and drift,
    written as MP4 files with truth.csv (the ``synthetic`` layout)."""
    root = tmp_path_factory.mktemp("tiny_long")
    videos = []
    for video in iter_long_videos(
        4, 1, seconds=5.0, fps=30.0, size=160, micro=2, macro=1,
        distractors=("noise", "drift"), seed=5,
    ):  # fmt: skip
        write_long_video(video, root / "videos" / f"{video.name}.mp4")
        video.frames = []
        videos.append(video)
    long_video_truth(videos).to_csv(root / "truth.csv", index=False)
    return root


def chance_f1(pred: pd.DataFrame, truth: pd.DataFrame, frames: int, seed: int = 0) -> float:
    """Mean overall F1 of the same intervals dropped at random places (20 draws)."""
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(20):
        moved = pred.copy()
        length = moved.offset - moved.onset
        moved["onset"] = rng.integers(0, frames - length.to_numpy() - 1)
        moved["offset"] = moved.onset + length
        scores.append(spotting_scores(moved, truth).table.loc["overall", "f1"])
    return float(np.mean(scores))


def test_spot_beats_chance_and_analyze_uses_the_saved_spotter(tiny_set, tmp_path):
    out = tmp_path / "spot"
    result = CliRunner().invoke(
        app,
        ["spot", "configs/spotter_softnet.yaml", "--data", str(tiny_set), "--out", str(out),
         "--layout", "synthetic", "--set", "regressor.kind=ridge", "--set", "regressor.alpha=1",
         "--set", "selection.inner_folds=2", "--set", "selection.thresholds=[0.2,0.4]",
         "--set", "selection.extend_ratios=[0.5]", "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "overall" in result.output and "spotter.json" in result.output
    for fold in ("synthetic_long-s01", "synthetic_long-s04"):
        assert (out / "folds" / fold / "predictions.csv").is_file()
    pred = pd.read_csv(out / "predictions.csv", dtype={"subject": str, "video": str})
    truth = pd.read_csv(out / "truth.csv", dtype={"subject": str, "video": str})
    f1 = spotting_scores(pred.drop(columns="fold"), truth).table.loc["overall", "f1"]
    assert f1 > max(0.4, chance_f1(pred.drop(columns="fold"), truth, 150) + 0.25)

    # the saved spotter, used by Analyzer, gives the intervals the protocol code gives
    spotter = load_spotter(out / "spotter.json")
    record = read_synthetic(tiny_set)[0]
    config = load_spotter_config("configs/spotter_softnet.yaml")
    features = video_features(record, config.analyze, out / "features")  # cached
    expected = predict_table(spotter, [features], config.analyze)
    analyzer = Analyzer(method="learned", spotter=str(out / "spotter.json"))
    events = analyzer.analyze(record).events
    assert list(events.onset) == list(expected.onset)
    assert list(events.offset) == list(expected.offset)
    assert len(events) and set(events.type) <= {"micro", "macro"}
