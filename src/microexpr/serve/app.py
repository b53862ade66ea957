"""The FastAPI application behind ``microexpr serve``: the page, the JSON API (its OpenAPI
schema at ``/openapi.json``, browsable at ``/docs``) and the result files, by job id.

Routes never build a path from what a request says: a job is found by looking its id up in
the queue's dict, a result file by a fixed name in that job's folder, an event picture by
an integer checked against the job's event count.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel

from microexpr.serve.jobs import (
    DONE,
    FAILED,
    QUEUED,
    RESULT_JSON,
    AnalysisRunner,
    Closed,
    Job,
    JobQueue,
    QueueFull,
    Runner,
    new_id,
)
from microexpr.serve.models import find_models
from microexpr.serve.settings import MB, ServeSettings
from microexpr.serve.uploads import (
    FILES_FIELD,
    MODEL_FIELD,
    UploadRefused,
    check_video,
    receive_upload,
)

# Multipart boundaries and part headers on top of the files themselves.
FORM_OVERHEAD = 64 * 1024
API = "/api/analyses"


class ModelOut(BaseModel):
    id: str
    name: str
    classes: list[str]
    kind: str
    runtime: str


class LimitsOut(BaseModel):
    max_upload_mb: float
    max_duration_s: float
    keep_minutes: float
    workers: int
    queue_size: int


class ConfigOut(BaseModel):
    """What the page needs to draw its form."""

    models: list[ModelOut]
    limits: LimitsOut


class EventOut(BaseModel):
    n: int
    onset: int
    apex: int
    offset: int
    start_s: float
    end_s: float
    type: str
    label: str
    confidence: float | None
    score: float
    probabilities: dict[str, float | None]
    picture: str


class FilesOut(BaseModel):
    timeline: str
    events_csv: str
    result_json: str


class ResultOut(BaseModel):
    fps: float
    frames: int
    duration_s: float
    micro: int
    macro: int
    classes: list[str]
    notes: list[str]
    seconds: dict[str, float]
    events: list[EventOut]
    files: FilesOut


class AnalysisOut(BaseModel):
    """One analysis: ``state`` queued / running / done / failed; ``position`` in the queue
    while queued (1: next); ``progress`` 0..1 with ``stage`` in words; ``result`` when done;
    ``error`` when failed. Times are Unix seconds."""

    id: str
    name: str
    model: str | None
    state: str
    position: int | None
    waiting: int
    progress: float
    stage: str
    error: str | None
    created: float
    started: float | None
    finished: float | None
    result: ResultOut | None


class SubmittedOut(BaseModel):
    analyses: list[AnalysisOut]


class ErrorOut(BaseModel):
    detail: str


ERRORS = {
    status: {"model": ErrorOut, "description": text}
    for status, text in {
        400: "a bad form (unknown model, no file)",
        413: "a file over the size or duration limit",
        415: "not a video that can be decoded, or not multipart/form-data",
        429: "the queue has no room for these videos now",
        503: "the server is shutting down",
    }.items()
}
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FILES_FIELD],
                    "properties": {
                        FILES_FIELD: {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "one or more video files",
                        },
                        MODEL_FIELD: {
                            "type": "string",
                            "description": "a model id from GET /api/config; empty: spotting only",
                        },
                    },
                }
            }
        },
    }
}


def _static(name: str) -> str:
    return resources.files("microexpr.serve").joinpath("static", name).read_text("utf-8")


def create_app(settings: ServeSettings | None = None, runner: Runner | None = None) -> FastAPI:
    """The application. ``runner`` analyses one job (default: the real analysis); tests
    give a controllable one. The private folder and the workers live as long as the
    application's lifespan (``with TestClient(app)``, or uvicorn's run)."""
    settings = settings or ServeSettings()
    models = find_models(settings.models_dir)
    state: dict = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        root = Path(tempfile.mkdtemp(prefix="microexpr-serve-", dir=settings.work_dir))
        root.chmod(0o700)  # mkdtemp makes it 0700 already; say so where it matters
        queue = JobQueue(
            runner or AnalysisRunner(settings), settings.workers, settings.queue_size,
            settings.keep_s,
        )  # fmt: skip
        state.update(root=root, queue=queue)
        app.state.root, app.state.queue = root, queue
        try:
            yield
        finally:
            queue.close()
            shutil.rmtree(root, ignore_errors=True)

    app = FastAPI(
        title="microexpr serve",
        summary="Spot and label facial micro-expressions in uploaded videos.",
        version="1",
        lifespan=lifespan,
    )

    def find_job(analysis_id: str) -> Job:
        job = state["queue"].get(analysis_id)
        if job is None:
            raise HTTPException(
                404,
                f"no such analysis (finished analyses are kept {settings.keep_s / 60:g} minutes)",
            )
        return job

    def done_job(analysis_id: str) -> Job:
        job = find_job(analysis_id)
        if job.state != DONE:
            raise HTTPException(409, f"analysis {analysis_id} is {job.state}, not done")
        return job

    def describe(job: Job) -> AnalysisOut:
        queue: JobQueue = state["queue"]
        return AnalysisOut(
            id=job.id,
            name=job.name,
            model=job.model.name if job.model is not None else None,
            state=job.state,
            position=queue.position(job) if job.state == QUEUED else None,
            waiting=queue.waiting(),
            progress=round(job.progress, 3),
            stage=job.stage,
            error=job.error,
            created=job.created,
            started=job.started,
            finished=job.finished,
            result=_result(job) if job.state == DONE else None,
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(_static("index.html"))

    @app.get("/app.js", include_in_schema=False)
    def script() -> Response:
        return Response(_static("app.js"), media_type="text/javascript")

    @app.get("/api/config", response_model=ConfigOut)
    def config() -> ConfigOut:
        """The models the page offers (beside spotting only) and the limits."""
        return ConfigOut(
            models=[
                ModelOut(
                    id=m.id, name=m.name, classes=list(m.classes), kind=m.kind, runtime=m.runtime
                )
                for m in models.values()
            ],  # fmt: skip
            limits=LimitsOut(
                max_upload_mb=round(settings.max_upload_bytes / MB, 3),
                max_duration_s=settings.max_duration_s,
                keep_minutes=round(settings.keep_s / 60, 2),
                workers=settings.workers,
                queue_size=settings.queue_size,
            ),
        )

    @app.post(
        API,
        status_code=202,
        response_model=SubmittedOut,
        responses=ERRORS,
        openapi_extra=UPLOAD_BODY,
    )
    async def submit(request: Request) -> SubmittedOut:
        """Upload one or more videos (field ``files``) and a ``model`` id (empty: spotting
        only). Each video is checked (size, decodable, duration) before anything is queued;
        then each becomes one analysis. All are queued or none."""
        queue: JobQueue = state["queue"]
        room = queue.room()
        if room == 0:
            raise HTTPException(
                429,
                f"the queue is full ({settings.queue_size} analyses waiting); try again "
                "when some are done",
                headers={"Retry-After": "30"},
            )
        length = request.headers.get("content-length")
        limit = settings.max_upload_bytes * room + FORM_OVERHEAD
        if length is not None and length.isdigit() and int(length) > limit:
            raise HTTPException(
                413,
                f"the upload is {int(length) / MB:.1f} MB; the limit is "
                f"{settings.max_upload_bytes / MB:g} MB a video",
            )
        batch = Path(tempfile.mkdtemp(prefix="upload-", dir=state["root"]))
        counter = iter(range(10**6))
        jobs: list[Job] = []
        submitted = False
        try:
            upload = await receive_upload(
                request.headers.get("content-type", ""),
                request.stream(),
                lambda: batch / f"{next(counter):03d}.video",
                settings.max_upload_bytes,
                room,
            )
            if not upload.files:
                raise UploadRefused(400, f"no video sent (form field '{FILES_FIELD}')")
            model_id = upload.fields.get(MODEL_FIELD, "")
            if model_id and model_id not in models:
                raise UploadRefused(400, "unknown model; GET /api/config lists them")
            model = models.get(model_id) if model_id else None
            for file in upload.files:
                info = await run_in_threadpool(
                    check_video, file.path, file.label, settings.max_duration_s,
                    settings.min_frames,
                )  # fmt: skip
                job_id = new_id()
                folder = state["root"] / job_id
                folder.mkdir(mode=0o700)
                video = folder / "upload.video"
                file.path.replace(video)
                jobs.append(Job(job_id, file.label, folder, video, info, model))
            try:
                queue.submit(jobs)
            except (QueueFull, Closed) as err:
                raise UploadRefused(429 if isinstance(err, QueueFull) else 503, str(err)) from None
            submitted = True
        except UploadRefused as err:
            headers = {"Retry-After": "30"} if err.status in (429, 503) else None
            raise HTTPException(err.status, err.message, headers=headers) from None
        finally:
            shutil.rmtree(batch, ignore_errors=True)
            if not submitted:  # refused, or the client went away: nothing of it stays
                for job in jobs:
                    shutil.rmtree(job.folder, ignore_errors=True)
        return SubmittedOut(analyses=[describe(job) for job in jobs])

    @app.get(API + "/{analysis_id}", response_model=AnalysisOut, responses={404: ERRORS[400]})
    def status(analysis_id: str) -> AnalysisOut:
        """Where an analysis stands; with its result once done."""
        return describe(find_job(analysis_id))

    @app.delete(API + "/{analysis_id}", status_code=204, responses={404: ERRORS[400]})
    def delete(analysis_id: str) -> Response:
        """Delete a finished analysis and its files now (not only after the keep time)."""
        job = find_job(analysis_id)
        if job.state not in (DONE, FAILED):
            raise HTTPException(409, f"analysis {analysis_id} is {job.state}; wait for it")
        state["queue"].remove(job)
        return Response(status_code=204)

    @app.get(API + "/{analysis_id}/timeline.png", response_class=FileResponse)
    def timeline(analysis_id: str) -> FileResponse:
        """The motion signal with the spotted intervals shaded and captioned."""
        job = done_job(analysis_id)
        return FileResponse(job.result_folder / "timeline.png", media_type="image/png")

    @app.get(API + "/{analysis_id}/events.csv", response_class=FileResponse)
    def events_csv(analysis_id: str) -> FileResponse:
        """One row per spotted interval (docs/analyze.md)."""
        job = done_job(analysis_id)
        return FileResponse(
            job.result_folder / "events.csv", media_type="text/csv",
            filename=f"{Path(job.name).stem or 'video'}_events.csv",
        )  # fmt: skip

    @app.get(API + "/{analysis_id}/result.json", response_class=FileResponse)
    def result_json(analysis_id: str) -> FileResponse:
        """The whole result: summary, settings, events and the per-frame table."""
        job = done_job(analysis_id)
        return FileResponse(
            job.result_folder / RESULT_JSON, media_type="application/json",
            filename=f"{Path(job.name).stem or 'video'}_result.json",
        )  # fmt: skip

    @app.get(API + "/{analysis_id}/events/{n}.png", response_class=FileResponse)
    def event_picture(analysis_id: str, n: int) -> FileResponse:
        """Event ``n``'s aligned apex face beside its onset -> apex flow."""
        job = done_job(analysis_id)
        if not 0 <= n < len(job.summary["event_table"]):
            raise HTTPException(404, f"analysis {analysis_id} has no event {n}")
        return FileResponse(job.result_folder / f"event_{n:03d}.png", media_type="image/png")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": err.detail}, err.status_code, headers=err.headers)

    return app


def _result(job: Job) -> ResultOut:
    """The API's view of a finished job's summary."""
    summary = job.summary or {}
    classes = list(summary.get("classes", []))
    base = f"{API}/{job.id}"
    events = []
    for n, row in enumerate(summary.get("event_table", [])):
        probabilities = {c: row.get(f"p_{c}") for c in classes}
        label = row.get("label") or ""
        events.append(
            EventOut(
                n=n,
                onset=row["onset"],
                apex=row["apex"],
                offset=row["offset"],
                start_s=row["start_s"],
                end_s=row["end_s"],
                type=row["type"],
                label=label,
                confidence=probabilities.get(label) if label else None,
                score=row["score"],
                probabilities=probabilities,
                picture=f"{base}/events/{n}.png",
            )  # fmt: skip
        )
    counts = summary.get("events", {})
    return ResultOut(
        fps=summary.get("fps", job.info.fps),
        frames=summary.get("frames", job.info.frames),
        duration_s=job.info.duration_s,
        micro=counts.get("micro", 0),
        macro=counts.get("macro", 0),
        classes=classes,
        notes=summary.get("notes", []),
        seconds=summary.get("seconds", {}),
        events=events,
        files=FilesOut(
            timeline=f"{base}/timeline.png",
            events_csv=f"{base}/events.csv",
            result_json=f"{base}/result.json",
        ),
    )
