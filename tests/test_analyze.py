"""`microexpr analyze` and the Analyzer end to end: spotted and labelled intervals, every output
file, a re-run that redoes nothing, a batch with bad videos that still does the good ones, a
bundle of the wrong kind, and a face lost mid-event."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import train_tiny_bundle
from test_analyze_video import (
    corrupt_avi_frame,
    numbered_frames,
    unknown_codec_avi,
    write_video,
    zero_rate_mp4,
)
from typer.testing import CliRunner

from microexpr.analyze import Analyzer
from microexpr.analyze.analyzer import EVENT_COLUMNS, _drop_lost
from microexpr.analyze.report import output_names
from microexpr.analyze.spotting import Interval
from microexpr.analyze.track import track_face
from microexpr.bundle import BundleError
from microexpr.cli import app, main
from microexpr.synth.long_videos import generate_long_videos, write_long_video

CLASSES = ("negative", "positive", "surprise")


@pytest.fixture(scope="module")
def long_video():
    """4 s at 30 fps, 160 x 160, two planted micro-expressions of the bundle's classes."""
    return generate_long_videos(
        1, 1, seconds=4.0, size=160, micro=2, macro=0, distractors=("noise",), seed=3,
        emotions=CLASSES,
    )[0]  # fmt: skip


@pytest.fixture(scope="module")
def video_file(long_video, tmp_path_factory) -> Path:
    return write_long_video(long_video, tmp_path_factory.mktemp("videos") / "talk.mp4")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A flow-image STSTNet trained for one epoch on random flow images (its Plan reads the
    reader's files, so analyze gives it the recipe's flow_image pipeline)."""
    return train_tiny_bundle(tmp_path_factory.mktemp("bundle") / "run")


def run_cli(capsys, monkeypatch, *args: str) -> tuple[int, str]:
    """(exit code, output) of the command as a user runs it: through ``main``, its error
    handling included."""
    monkeypatch.setattr(sys, "argv", ["microexpr", *args])
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code or 0, captured.out + captured.err


def test_the_analyzer_spots_and_labels_the_planted_expressions(long_video, bundle):
    analysis = Analyzer(model=bundle).analyze(long_video.frames, fps=30.0, name="talk")
    events = analysis.events
    assert list(events.columns) == [*EVENT_COLUMNS, *(f"p_{c}" for c in CLASSES)]
    assert len(events) == 2 and set(events["type"]) == {"micro"}
    for event, row in zip(long_video.events, events.itertuples(), strict=True):
        assert row.onset <= event.apex <= row.offset
        assert row.start_s == pytest.approx(row.onset / 30.0, abs=1e-3)
    probabilities = events[[f"p_{c}" for c in CLASSES]].to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert list(events["label"]) == [CLASSES[i] for i in probabilities.argmax(axis=1)]
    frames = analysis.frames
    assert len(frames) == len(long_video.frames) and frames["face_found"].all()
    assert {"time_s", "confidence", "lost", "motion", "motion_chin"} <= set(frames.columns)
    assert set(analysis.timings) == {"decode", "track", "flow", "spot", "classify"}
    assert sorted(analysis.pictures) == [0, 1]
    assert analysis.pictures[0].shape == (224, 448, 3)


def test_an_onnx_export_labels_the_events_as_its_bundle_does(long_video, bundle, tmp_path):
    """`analyze --model` takes an exported bundle too: the network then runs in ONNX Runtime."""
    pytest.importorskip("onnxruntime")
    from microexpr.export import export_onnx

    export_onnx(bundle, tmp_path / "onnx")
    torch_events = Analyzer(model=bundle).analyze(long_video.frames, fps=30.0).events
    onnx_analyzer = Analyzer(model=tmp_path / "onnx")  # as `analyze --model DIR` loads it
    assert onnx_analyzer.bundle.runtime == "onnx"
    onnx_events = onnx_analyzer.analyze(long_video.frames, fps=30.0).events
    columns = [f"p_{c}" for c in CLASSES]
    assert list(onnx_events["onset"]) == list(torch_events["onset"])
    assert list(onnx_events["label"]) == list(torch_events["label"])
    difference = np.abs(onnx_events[columns].to_numpy() - torch_events[columns].to_numpy())
    assert difference.max() <= 1e-4


def test_without_a_model_it_spots_only(long_video):
    analysis = Analyzer(threshold=4.0).analyze(long_video.frames, fps=30.0)
    assert len(analysis.events) == 2 and (analysis.events["label"] == "").all()
    assert not any(c.startswith("p_") for c in analysis.events.columns)


def test_analyze_writes_every_output_and_a_rerun_redoes_nothing(video_file, bundle, tmp_path):
    out = tmp_path / "out"
    args = ["analyze", str(video_file), "--model", str(bundle), "--out", str(out), "--video-out"]
    result = CliRunner().invoke(app, [*args, "--set", "analyze.threshold=4", "-q"])
    assert result.exit_code == 0, result.output
    folder = out / "talk"
    events = pd.read_csv(folder / "events.csv")
    assert len(events) == 2 and events["label"].isin(CLASSES).all()
    assert len(pd.read_csv(folder / "frames.csv")) == 120
    assert cv2.imread(str(folder / "timeline.png")) is not None
    assert cv2.imread(str(folder / "event_001.png")).shape == (224, 448, 3)
    capture = cv2.VideoCapture(str(folder / "annotated.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 120
    capture.release()
    summary = json.loads((folder / "analysis.json").read_text())
    assert summary["events"] == {"micro": 2, "macro": 0} and summary["fps"] == 30.0
    assert summary["settings"]["threshold"] == 4 and summary["classes"] == list(CLASSES)
    written = (folder / "events.csv").stat().st_mtime_ns

    again = CliRunner().invoke(app, [*args, "-q"])
    assert again.exit_code == 0 and "done before" in again.output
    assert (folder / "events.csv").stat().st_mtime_ns == written


def test_a_bad_batch_names_each_bad_video_and_still_does_the_good_one(
    video_file, tmp_path, capsys, monkeypatch
):
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video\n")
    empty = tmp_path / "empty.avi"
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48)).release()
    blank = write_video(tmp_path / "blank.avi", numbered_frames(10))
    frames = list(_frames_of(video_file))[:30]
    broken = corrupt_avi_frame(write_video(tmp_path / "broken.avi", frames), 13)
    norate = zero_rate_mp4(write_video(tmp_path / "norate.mp4", frames))
    odd = unknown_codec_avi(write_video(tmp_path / "odd.avi", frames))
    bad = [notes, empty, blank, broken, norate, odd]
    inputs = map(str, [*bad, video_file])
    code, output = run_cli(capsys, monkeypatch, "analyze", *inputs, "--out", str(tmp_path / "out"))
    assert code == 1, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == len(bad), output
    for path, line in zip(bad, errors, strict=True):
        assert str(path) in line
    assert "frame 13" in errors[3] and "--fps" in errors[4] and "no face found" in errors[2]
    assert (tmp_path / "out" / "talk" / "analysis.json").is_file()
    assert not (tmp_path / "out" / "notes").exists()


def _frames_of(path: Path):
    capture = cv2.VideoCapture(str(path))
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield frame


def test_a_bundle_of_the_wrong_kind_is_one_message(tmp_path, video_file, capsys, monkeypatch):
    fake = tmp_path / "notamodel"
    fake.mkdir()
    (fake / "bundle.json").write_text(json.dumps({"format": "something-else"}))
    (fake / "weights.safetensors").write_bytes(b"")
    with pytest.raises(BundleError, match="not a microexpr model bundle"):
        Analyzer(model=fake)
    args = ["analyze", str(video_file), "--model", str(fake), "--out", str(tmp_path / "out")]
    code, output = run_cli(capsys, monkeypatch, *args)
    assert code == 1 and "Traceback" not in output
    assert "bundle.json: not a microexpr model bundle" in output
    assert not (tmp_path / "out").exists()


def test_a_face_lost_mid_event_drops_that_event_with_a_note(long_video):
    first = long_video.events[0]
    frames = list(long_video.frames)
    frames[first.apex] = np.full_like(frames[first.apex], 127)  # no face at its apex
    analysis = Analyzer().analyze(frames, fps=30.0)
    assert not analysis.track.found[first.apex]
    for row in analysis.events.itertuples():
        assert analysis.track.found[row.onset : row.offset + 1].all()
    assert any("no face tracked in 1 of 120 frames" in n for n in analysis.notes)
    # the rule itself: an interval over a frame without a face goes, with a note
    track = track_face(long_video.frames[:20], 30.0)
    track.found[8] = False
    notes: list[str] = []
    spotted = [Interval(5, 7, 10, 9.0, "micro", 15), Interval(12, 13, 15, 9.0, "micro", 15)]
    kept = _drop_lost(spotted, track, notes)
    assert [i.onset for i in kept] == [12]
    assert notes == ["interval 5-10 dropped: face lost at frame 8"]


def test_output_names_stay_apart():
    names = output_names([Path("a/talk.mp4"), Path("b/talk.mp4"), Path("c/s15_0101")])
    assert names == ["a_talk", "b_talk", "s15_0101"]
