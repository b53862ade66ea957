"""Pipelines and the per-sample cache behind ``microexpr prepare``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from microexpr.cli import app
from microexpr.config import PreprocessConfig
from microexpr.datasets import load
from microexpr.preprocess.cache import FeatureCache, config_key, file_stem, prepare
from microexpr.preprocess.frames import read_image
from microexpr.preprocess.pipelines import resolve_preprocess, run_pipeline
from microexpr.samples import Sample
from microexpr.synth import write_synthetic


@pytest.fixture(scope="module")
def replica(tmp_path_factory) -> Path:
    """A 2-subject CASME II replica (4 clips of 96 px faces)."""
    root = tmp_path_factory.mktemp("casme2")
    write_synthetic("casme2", root, 2, 2, size=96, seed=1, n_frames=24)
    return root


@pytest.fixture(scope="module")
def samples(replica) -> list[Sample]:
    return load("casme2", replica)


def blank_sample(folder: Path) -> Sample:
    """A clip without a face, so its pipeline fails."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for i in range(4):
        path = folder / f"img{i}.jpg"
        cv2.imwrite(str(path), np.full((96, 96, 3), 120, np.uint8))
        frames.append(path)
    return Sample("blank", "casme2", "sub99", "others", tuple(frames), onset=0, apex=2, offset=3)


def test_each_pipeline_gives_its_arrays(samples):
    sample = samples[0]
    image = run_pipeline(sample, PreprocessConfig(pipeline="flow_image"))["image"]
    assert image.shape == (28, 28, 3) and image.dtype == np.uint8
    face = run_pipeline(sample, PreprocessConfig(pipeline="apex_face", size=64))
    assert face["image"].shape == (64, 64, 3) and face["landmarks"].shape == (68, 2)
    assert int(face["apex"]) == sample.apex
    mouth = run_pipeline(sample, PreprocessConfig(pipeline="apex_face", region="mouth", size=32))
    assert mouth["image"].shape == (32, 32, 3)
    config = PreprocessConfig(pipeline="face_clip", size=48, num_frames=8, gray=True)
    assert run_pipeline(sample, config)["frames"].shape == (8, 48, 48)
    config = PreprocessConfig(pipeline="flow_clip", size=24, num_frames=3, flow_method="farneback")
    maps = run_pipeline(sample, config)["flow"]
    assert maps.shape == (3, 24, 24, 3) and maps.dtype == np.float16


def test_uncoded_apex_is_spotted_inside_the_expression(samples):
    sample = replace(samples[0], apex=None)
    out = run_pipeline(sample, PreprocessConfig(pipeline="flow_image"))
    assert sample.onset < int(out["apex"]) <= sample.offset
    assert abs(int(out["apex"]) - samples[0].apex) <= 3


def test_prepare_caches_reuses_and_reports_failures(samples, tmp_path):
    bad = blank_sample(tmp_path / "blank")
    config = PreprocessConfig(pipeline="flow_image")
    first = prepare([*samples, bad], config, tmp_path / "cache", workers=1, progress=False)
    assert (first.computed, first.reused) == (len(samples), 0)
    assert list(first.failed) == ["blank"] and "no face found" in first.failed["blank"]
    folder = tmp_path / "cache" / config_key(config)
    assert first.directory == folder
    assert json.loads((folder / "config.json").read_text())["config"]["size"] == 28
    cache = FeatureCache(tmp_path / "cache", config)
    assert cache.load(samples[0])["image"].shape == (28, 28, 3)

    second = prepare([*samples, bad], config, tmp_path / "cache", workers=1, progress=False)
    assert (second.computed, second.reused, list(second.failed)) == (0, len(samples), ["blank"])
    retried = prepare([bad], config, tmp_path / "cache", retry_failed=True, progress=False)
    assert retried.computed == 0 and list(retried.failed) == ["blank"]


def test_an_interrupted_run_resumes_with_what_is_missing(samples, tmp_path):
    config = PreprocessConfig(pipeline="apex_face", size=48)
    prepare(samples, config, tmp_path, workers=2, progress=False)
    cache = FeatureCache(tmp_path, config)
    cache.path(samples[1]).unlink()  # as if killed before this one finished
    (cache.directory / f".{cache.stem(samples[1])}.npz.123.tmp").write_bytes(b"partial")
    again = prepare(samples, config, tmp_path, workers=1, progress=False)
    assert (again.computed, again.reused) == (1, len(samples) - 1)
    other = prepare(samples[:1], config.model_copy(update={"size": 40}), tmp_path, progress=False)
    assert other.directory != cache.directory and other.computed == 1


def test_cached_images_stand_in_for_the_sample_files(samples, tmp_path):
    config = PreprocessConfig(pipeline="flow_image")
    prepare(samples[:2], config, tmp_path, workers=1, progress=False)
    ready = FeatureCache(tmp_path, config).as_samples(samples)
    assert [s.id for s in ready] == [s.id for s in samples[:2]]
    assert read_image(ready[0].path).shape == (28, 28, 3)
    with pytest.raises(ValueError, match="not images"):
        FeatureCache(tmp_path, PreprocessConfig(pipeline="flow_clip")).as_samples(samples)


def test_file_names_are_safe_and_distinct():
    assert file_stem("sub01_EP02_01f") == "sub01_EP02_01f"
    odd = [file_stem("a/b"), file_stem("a b"), file_stem("a_b")]
    assert len(set(odd)) == 3 and all("/" not in s and " " not in s for s in odd)


def test_duplicate_ids_and_unknown_pipelines_are_rejected(samples, tmp_path):
    with pytest.raises(ValueError, match="occurs twice"):
        prepare([samples[0], samples[0]], PreprocessConfig(), tmp_path, progress=False)
    with pytest.raises(ValueError, match="pipeline"):
        PreprocessConfig(pipeline="hog_features")
    with pytest.raises(ValueError, match="decided by the recipe"):
        resolve_preprocess(PreprocessConfig())


def test_prepare_command_runs_then_reuses(replica, samples, tmp_path):
    out = tmp_path / "cache"
    args = ["prepare", "casme2", str(replica), "--out", str(out), "--set", "pipeline=apex_face"]
    args += ["--set", "size=32", "--workers", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"{len(samples)} computed, 0 reused, 0 failed" in result.output
    result = CliRunner().invoke(app, args)
    assert f"0 computed, {len(samples)} reused" in result.output


def test_a_changed_frame_or_coding_is_prepared_again(samples, tmp_path):
    config = PreprocessConfig(pipeline="flow_image")
    first = prepare(samples[:1], config, tmp_path, workers=1, progress=False)
    assert first.computed == 1
    recoded = replace(samples[0], apex=samples[0].apex - 1)
    assert prepare([recoded], config, tmp_path, workers=1, progress=False).computed == 1
    assert prepare(samples[:1], config, tmp_path, workers=1, progress=False).reused == 1
