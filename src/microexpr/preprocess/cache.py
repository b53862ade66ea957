"""Run a preprocessing pipeline over a dataset once, in parallel, and keep the results.

Layout: ``<root>/<config-hash>/`` holds ``config.json`` (the resolved config, so a folder
says what made it), one ``<sample-id>-<source-hash>.npz`` per sample (plus a ``.png`` of the
same name for image pipelines, so a Sample can point at it like any face or flow image), and
``failures.json`` (sample id -> reason). Any change to the config changes the hash, hence the
folder, and any change to a sample's frames (files, sizes, times) or coded onset, apex and
offset changes its source hash: results made from other settings or other data never mix.

Each file is written atomically with a SHA-256 sidecar (``microexpr.atomicio``): an
interrupted run leaves no half-written result that looks finished, and the next run does only
what is missing. An entry whose checksum is missing or wrong (truncated, corrupted on disk) is
recomputed with a note. Arrays are read with ``allow_pickle=False``: a cache file can hold
numbers only, never code. Samples that failed (no face, unreadable frame) are recorded and
skipped on later runs unless ``retry_failed``; a failure never stops the run.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
import os
import re
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from microexpr import atomicio
from microexpr.config import PreprocessConfig
from microexpr.preprocess.pipelines import resolve_preprocess, run_pipeline
from microexpr.processes import exit_with_parent
from microexpr.samples import Sample

log = logging.getLogger("microexpr.preprocess")

# Bump when a pipeline's output changes for the same config (3: checksummed entries).
FORMAT_VERSION = 3
IMAGE_PIPELINES = ("flow_image", "apex_face")


def config_key(config: PreprocessConfig) -> str:
    """12 hex digits of SHA-256 over the resolved config and the cache format version."""
    settings = resolve_preprocess(config).model_dump(mode="json")
    text = json.dumps({"format": FORMAT_VERSION, **settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def source_key(sample: Sample) -> str:
    """8 hex digits over what a pipeline reads of a sample: its frame files (path, size,
    modification time), its own file when it has one (a flow image) and its coded onset,
    apex and offset."""
    files = []
    for path in (*sample.frames, *([sample.path] if sample.path is not None else [])):
        try:
            stat = os.stat(path)
            files.append((str(path), stat.st_size, stat.st_mtime_ns))
        except OSError:
            files.append((str(path), None, None))
    record = [sample.id, files, sample.onset, sample.apex, sample.offset, sample.fps]
    return hashlib.sha1(json.dumps(record).encode()).hexdigest()[:8]


def file_stem(sample_id: str) -> str:
    """Sample id as a file name; ids with other characters get a hash suffix (no clashes)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", sample_id)
    if safe == sample_id:
        return safe
    return f"{safe}-{hashlib.sha1(sample_id.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class FeatureCache:
    """One config's folder of results under a cache root."""

    root: Path
    config: PreprocessConfig  # resolved

    @property
    def directory(self) -> Path:
        return Path(self.root) / config_key(self.config)

    def stem(self, sample: Sample) -> str:
        return f"{file_stem(sample.id)}-{source_key(sample)}"

    def path(self, sample: Sample) -> Path:
        return self.directory / f"{self.stem(sample)}.npz"

    def image_path(self, sample: Sample) -> Path:
        return self.directory / f"{self.stem(sample)}.png"

    def has(self, sample: Sample) -> bool:
        return self.problem(sample) is None

    def problem(self, sample: Sample) -> str | None:
        """Why the sample's entry is not a finished one (missing, no checksum, checksum
        mismatch; its image too for image pipelines), or None."""
        paths = [self.path(sample)]
        if self.config.pipeline in IMAGE_PIPELINES:
            paths.append(self.image_path(sample))
        for path in paths:
            reason = atomicio.problem(path)
            if reason is not None:
                return f"{path.name}: {reason}"
        return None

    def load(self, sample: Sample) -> dict[str, np.ndarray]:
        """The arrays a pipeline produced for one sample (checksum verified)."""
        path = self.path(sample)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: sample {sample.id!r} not prepared with this config")
        data = atomicio.read_bytes(path)
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}

    def failures(self) -> dict[str, str]:
        """Sample id -> reason, for samples that failed (none when the record is unfinished:
        those samples are simply tried again)."""
        path = self.directory / "failures.json"
        if not path.exists() or atomicio.problem(path) is not None:
            return {}
        return json.loads(atomicio.read_text(path))

    def as_samples(self, samples: Sequence[Sample]) -> list[Sample]:
        """Samples whose ``path`` is their cached image (image pipelines), so the readers of
        flow images or faces take them unchanged; samples without a result are left out."""
        if self.config.pipeline not in IMAGE_PIPELINES:
            raise ValueError(f"{self.config.pipeline} results are arrays, not images")
        return [replace(s, path=self.image_path(s)) for s in samples if self.has(s)]

    def write_config(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        record = {"key": config_key(self.config), "format": FORMAT_VERSION}
        text = json.dumps({**record, "config": self.config.model_dump(mode="json")}, indent=2)
        atomicio.write_text(self.directory / "config.json", text)

    def write_failures(self, failures: dict[str, str]) -> None:
        text = json.dumps(failures, indent=2, sort_keys=True)
        atomicio.write_text(self.directory / "failures.json", text)


def _save(cache: FeatureCache, sample: Sample, arrays: dict[str, np.ndarray]) -> None:
    """Image first, npz last: a verified npz is what marks a sample done."""
    if cache.config.pipeline in IMAGE_PIPELINES:
        ok, png = cv2.imencode(".png", arrays["image"])
        if not ok:
            raise ValueError(f"{sample.id}: the pipeline's image cannot be encoded as PNG")
        atomicio.write_bytes(cache.image_path(sample), png.tobytes())
    npz = io.BytesIO()
    np.savez_compressed(npz, **arrays)
    atomicio.write_bytes(cache.path(sample), npz.getvalue())


def process_one(sample: Sample, cache: FeatureCache) -> tuple[str, str | None]:
    """Run the pipeline on one sample and store it: (id, None) or (id, failure reason)."""
    cv2.setNumThreads(1)  # one process per core already
    try:
        arrays = run_pipeline(sample, cache.config)
    except Exception as err:  # any failure is reported per sample, never fatal
        return sample.id, f"{type(err).__name__}: {err}"
    _save(cache, sample, arrays)
    return sample.id, None


@dataclass
class PrepareReport:
    """What one :func:`prepare` run did."""

    directory: Path
    total: int
    computed: int = 0
    reused: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def prepare(
    samples: Sequence[Sample],
    config: PreprocessConfig,
    root: str | Path,
    workers: int | None = None,
    retry_failed: bool = False,
    progress: bool = True,
) -> PrepareReport:
    """Make every sample's result under ``root`` unless it is there already.

    ``workers``: processes (default: all CPU cores; 1 runs in this process). Returns counts
    and every failure (earlier runs' included), each as the sample id and the reason.
    """
    start = time.perf_counter()
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"sample id {duplicate!r} occurs twice: results would overwrite")
    cache = FeatureCache(Path(root), resolve_preprocess(config))
    cache.write_config()
    done = set()
    for sample in samples:
        reason = cache.problem(sample)
        if reason is None:
            done.add(sample.id)
        elif cache.path(sample).exists():
            log.warning("cache entry of %s is unfinished (%s); recomputed", sample.id, reason)
    failures = {k: v for k, v in cache.failures().items() if k not in done}
    todo = [s for s in samples if s.id not in done and (retry_failed or s.id not in failures)]
    report = PrepareReport(cache.directory, len(samples), reused=len(done))
    for sample in todo:
        failures.pop(sample.id, None)
    workers = max(1, workers or os.cpu_count() or 1)
    bar = tqdm(total=len(todo), desc=f"prepare {config.pipeline}", disable=not progress or None)
    try:
        if workers == 1 or len(todo) <= 1:
            results = (process_one(s, cache) for s in todo)
            _collect(results, cache, failures, report, bar)
        else:
            # Fresh interpreters, not forks: a fork of a process whose torch or OpenCV thread
            # pools are running (as in `train`) can deadlock in the child.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                min(workers, len(todo)),
                mp_context=context,
                initializer=exit_with_parent,
                initargs=(os.getpid(),),
            ) as pool:
                futures = [pool.submit(process_one, s, cache) for s in todo]
                _collect((f.result() for f in as_completed(futures)), cache, failures, report, bar)
    finally:
        bar.close()
        cache.write_failures(failures)
    report.failed = {s.id: failures[s.id] for s in samples if s.id in failures}
    report.seconds = time.perf_counter() - start
    return report


def _collect(
    results: Iterable[tuple[str, str | None]],
    cache: FeatureCache,
    failures: dict[str, str],
    report: PrepareReport,
    bar: tqdm,
) -> None:
    """Tally results as they arrive; failures are saved at once so a crash keeps them."""
    for sample_id, reason in results:
        if reason is None:
            report.computed += 1
        else:
            failures[sample_id] = reason
            cache.write_failures(failures)
        bar.update(1)
