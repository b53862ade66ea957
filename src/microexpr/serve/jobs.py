"""Analyses as jobs: a bounded queue, one analysis per worker thread at a time, progress
while it runs, and removal of every file a set time after it ends.

A job's folder lives in the server's private temporary folder (mode 0700) and is named by
its id, a random token the server made (``secrets.token_urlsafe``); requests find jobs by
looking that id up in a dict, so nothing a request says is ever joined to a path.
"""

from __future__ import annotations

import json
import secrets
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from microexpr.analyze.video import VideoSource, open_video_file
from microexpr.errors import DataError
from microexpr.serve.models import ModelChoice
from microexpr.serve.settings import ServeSettings
from microexpr.serve.uploads import VideoInfo

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
RESULT_FOLDER = "result"
RESULT_JSON = "result.json"


def new_id() -> str:
    """A job id: 128 random bits, URL-safe (22 characters)."""
    return secrets.token_urlsafe(16)


@dataclass(eq=False)
class Job:
    """One uploaded video and its analysis. ``folder``: its private folder (the upload,
    then the result files). ``progress``: 0..1 while it runs, with ``stage`` in words."""

    id: str
    name: str
    folder: Path
    video: Path
    info: VideoInfo
    model: ModelChoice | None
    state: str = QUEUED
    stage: str = "waiting for a worker"
    progress: float = 0.0
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    summary: dict | None = None

    @property
    def result_folder(self) -> Path:
        return self.folder / RESULT_FOLDER


class QueueFull(Exception):
    """More jobs than the queue has room for; the message says how many fit."""


class Closed(Exception):
    """The server is shutting down."""


Runner = Callable[[Job, "JobQueue"], dict]


class JobQueue:
    """Jobs by id; ``workers`` threads take queued jobs in order and run ``runner`` on
    each. At most ``capacity`` jobs wait; finished jobs (and their folders) go ``keep_s``
    seconds after they end."""

    def __init__(self, runner: Runner, workers: int, capacity: int, keep_s: float):
        self.runner = runner
        self.capacity = capacity
        self.keep_s = keep_s
        self.jobs: dict[str, Job] = {}
        self._waiting: deque[Job] = deque()
        self._lock = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"serve-worker-{n}", daemon=True)
            for n in range(workers)
        ]
        self._threads.append(threading.Thread(target=self._sweep, name="serve-sweep", daemon=True))
        for thread in self._threads:
            thread.start()

    def room(self) -> int:
        """How many more jobs may wait now."""
        with self._lock:
            return max(0, self.capacity - len(self._waiting))

    def submit(self, jobs: list[Job]) -> None:
        """Queue all of ``jobs`` or none: QueueFull when they do not all fit."""
        with self._lock:
            if self._closed:
                raise Closed("the server is shutting down")
            free = self.capacity - len(self._waiting)
            if len(jobs) > free:
                raise QueueFull(
                    f"the queue is full: {len(self._waiting)} analyses are waiting (room for "
                    f"{self.capacity}), {len(jobs)} more sent; try again when some are done"
                )
            for job in jobs:
                self.jobs[job.id] = job
                self._waiting.append(job)
            self._lock.notify_all()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self.jobs.get(job_id)

    def position(self, job: Job) -> int | None:
        """1 for the next job to start; None once it has started."""
        with self._lock:
            for n, waiting in enumerate(self._waiting, start=1):
                if waiting is job:
                    return n
            return None

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def running(self) -> int:
        with self._lock:
            return sum(job.state == RUNNING for job in self.jobs.values())

    def remove(self, job: Job) -> None:
        """Forget a finished job and delete its files now."""
        with self._lock:
            self.jobs.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)

    def close(self) -> None:
        """Stop taking jobs; workers finish the analysis in hand and stop."""
        with self._lock:
            self._closed = True
            self._waiting.clear()
            self._lock.notify_all()

    def _next(self) -> Job | None:
        with self._lock:
            while not self._waiting and not self._closed:
                self._lock.wait()
            if self._closed:
                return None
            job = self._waiting.popleft()
            job.state, job.started = RUNNING, time.time()
            job.stage = "starting"
            return job

    def _work(self) -> None:
        while (job := self._next()) is not None:
            try:
                job.summary = self.runner(job, self)
                job.state, job.progress, job.stage = DONE, 1.0, "done"
            except Exception as err:  # one bad video must not stop the worker
                job.error = _message(err, job)
                job.state, job.stage = FAILED, "failed"
            finally:
                job.finished = time.time()
                job.video.unlink(missing_ok=True)  # the upload is not needed any more

    def _sweep(self) -> None:
        """Every few seconds, delete the jobs that ended more than ``keep_s`` ago."""
        interval = min(30.0, max(0.2, self.keep_s / 4))
        while True:
            with self._lock:
                if self._lock.wait_for(lambda: self._closed, timeout=interval):
                    return
                now = time.time()
                expired = [
                    job
                    for job in self.jobs.values()
                    if job.finished is not None and now - job.finished > self.keep_s
                ]
            for job in expired:
                self.remove(job)


def _message(err: Exception, job: Job) -> str:
    """The error in one line, the upload's label in place of its server-side path."""
    text = err.reason if isinstance(err, DataError) else f"{type(err).__name__}: {err}"
    return text.replace(str(job.video), job.name)


class _Counted(VideoSource):
    """A video whose first pass (decode and track) reports each frame to ``on_frame``; its
    ``path`` is the upload's label, so messages and results never show the server's."""

    def __init__(self, inner: VideoSource, label: str, on_frame: Callable[[int], None]):
        self.inner = inner
        self.name = Path(label).stem or "video"
        self.path = Path(label)
        self.fps = inner.fps
        self.frame_count = inner.frame_count
        self.on_frame = on_frame
        self._passes = 0

    def frames(self) -> Iterator:
        self._passes += 1
        first = self._passes == 1
        for n, frame in enumerate(self.inner.frames(), start=1):
            if first:
                self.on_frame(n)
            yield frame


class AnalysisRunner:
    """The real runner: one :class:`~microexpr.analyze.Analyzer` per worker thread and
    model (a bundle is loaded once per worker), the analysis written by
    ``analyze.report.save_analysis``, plus ``result.json`` (everything, for the API)."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self._local = threading.local()

    def analyzer(self, model: ModelChoice | None):
        from microexpr.analyze import Analyzer

        cache = self._local.__dict__.setdefault("analyzers", {})
        key = model.id if model is not None else None
        if key not in cache:
            cache[key] = Analyzer(
                model=model.path if model is not None else None,
                device=self.settings.device,
                settings=self.settings.analyze,
            )
        return cache[key]

    def __call__(self, job: Job, queue: JobQueue) -> dict:
        from microexpr.analyze.report import save_analysis

        job.stage = "loading the model" if job.model is not None else "starting"
        analyzer = self.analyzer(job.model)
        total = job.info.frames

        def on_frame(n: int) -> None:
            job.progress = 0.85 * min(1.0, n / total)
            job.stage = f"decoding and tracking: frame {n} of {total}"

        job.stage = "decoding and tracking"
        source = _Counted(open_video_file(job.video, None, "upload"), job.name, on_frame)
        analysis = analyzer.analyze(source)
        job.progress, job.stage = 0.9, "writing the timeline and pictures"
        folder = save_analysis(analysis, job.result_folder, analyzer, source)
        return write_result(job, analysis, folder)


def write_result(job: Job, analysis, folder: Path) -> dict:
    """``result.json``: the summary ``save_analysis`` wrote (``analysis.json``) with the
    events and the per-frame table as records; returns the summary part."""
    summary = json.loads((folder / "analysis.json").read_text())
    summary["source"] = job.name
    summary["model"] = job.model.name if job.model is not None else None
    events = json.loads(analysis.events.to_json(orient="records"))
    frames = json.loads(analysis.frames.to_json(orient="records"))
    whole = {**summary, "event_table": events, "frame_table": frames}
    (folder / RESULT_JSON).write_text(json.dumps(whole) + "\n")
    return {**summary, "event_table": events}
