"""Every reader against the replica of every layout it accepts: counts, labels, subjects,
onset/apex/offset and AUs identical to the writer's ground truth."""

from __future__ import annotations

import pytest
from readers_support import CLIP_FIELDS, assert_matches, clips_for

from microexpr.datasets import load
from microexpr.datasets.problems import Report
from microexpr.synth import write_layout

FIELDS = (*CLIP_FIELDS, "n_frames")
LAYOUTS = [
    ("casme2", {"version": "20140508"}),
    ("casme2", {"version": "updated", "frames_dir": "Cropped"}),
    ("casme2", {"version": "ver2"}),
    ("samm", {"version": "preamble"}),
    ("samm", {"version": "plain", "duration": "value"}),
    ("samm", {"version": "micro_only"}),
    ("smic", {"modality": "HS"}),
    ("smic", {"modality": "VIS"}),
    ("smic", {"modality": "NIR", "cropped": True}),
    ("casme", {"version": "xlsx"}),
    ("casme", {"version": "xls", "cropped": True}),
    ("casme3", {"version": "jpgindex"}),
    ("casme3", {"version": "table", "me_a": True, "numbers_as_text": False}),
    ("casme3", {"version": "v2"}),
    ("mmew", {}),
    ("ckplus", {"label_dir": "Emotion"}),
    ("ckplus", {"label_dir": "Emotion_labels", "facs": False}),
    ("composite", {"gt": "standard"}),
    ("composite", {"gt": None}),
]


def _needs_xlwt(layout: dict) -> None:
    if layout.get("version") in ("ver2", "xls", "v2"):
        pytest.importorskip("xlwt", reason="writing .xls replicas needs xlwt")


@pytest.mark.parametrize(("name", "layout"), LAYOUTS, ids=lambda v: str(v))
def test_round_trip(tmp_path, name, layout):
    _needs_xlwt(layout)
    clips = clips_for(name)
    truth = write_layout(name, clips, tmp_path, **layout)
    report = Report()
    samples = load(name, tmp_path, report=report)
    assert len(samples) == len(truth) > 0
    assert_matches(samples, truth, FIELDS)
    assert not report.errors


def test_round_trip_counts_per_class_and_subject(tmp_path):
    truth = write_layout("casme2", clips_for("casme2", subjects=3, per_subject=4), tmp_path)
    samples = load("casme2", tmp_path)
    for key in ("label", "subject"):
        want = sorted(r[key] for r in truth)
        assert sorted(getattr(s, key) for s in samples) == want
    assert {s.fps for s in samples} == {200.0}


@pytest.mark.parametrize("variant", ["fer2013", "icml", "folders"])
def test_fer2013_round_trip_keeps_its_split(tmp_path, variant):
    truth = write_layout("fer2013", clips_for("fer2013"), tmp_path, variant=variant)
    samples = load("fer2013", tmp_path)
    assert_matches(samples, truth, ("label", "usage"))
    assert all(s.frames[0].is_file() for s in samples)
    if variant != "folders":
        assert {s.meta["usage"] for s in samples} == {"Training", "PublicTest", "PrivateTest"}
        training = load("fer2013", tmp_path, usage="Training")
        assert len(training) == sum(r["usage"] == "Training" for r in truth)


def test_fer2013_pixels_written_once_and_equal(tmp_path):
    import cv2
    import numpy as np

    write_layout("fer2013", clips_for("fer2013"), tmp_path)
    first = load("fer2013", tmp_path)
    image = cv2.imread(str(first[0].frames[0]), cv2.IMREAD_GRAYSCALE)
    row = (tmp_path / "fer2013.csv").read_text().splitlines()[1].split(",")
    assert image.shape == (48, 48)
    assert np.array_equal(image.ravel(), np.array(row[1].split(), dtype=np.uint8))
    report = Report()
    load("fer2013", tmp_path, report=report)  # PNGs already there: not written again
    assert not any("written as PNG" in p.reason for p in report.problems)


def test_ckplus_neutral_first_frames_for_eight_classes(tmp_path):
    write_layout("ckplus", clips_for("ckplus"), tmp_path)
    samples = load("ckplus", tmp_path, neutral=True)
    neutral = [s for s in samples if s.label == "neutral"]
    assert len(neutral) == len(samples) // 2
    assert all(len(s.frames) == 1 and s.frames[0].name.endswith("_00000001.png") for s in neutral)


def test_every_registered_clip_reader_has_a_writer():
    from microexpr.datasets import names
    from microexpr.synth import WRITERS

    # flow_images' writers (synth.replicas.flow_images) take flow images, not clips;
    # image_folder is a generic class-folder layout, not a database's own.
    assert set(names()) - {"flow_images", "image_folder"} == set(WRITERS)


def test_a_misspelt_quirk_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown quirk"):
        write_layout("samm", clips_for("samm"), tmp_path, bogus=1)
