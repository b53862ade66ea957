"""`microexpr serve` through its JSON API (FastAPI's TestClient): the happy path on a small
synthetic video, with and without a model, and every refusal the issue asks for: an upload
over the size or duration limit, a text file renamed .mp4, requests naming ../ paths, more
uploads than the queue holds; queue positions, removal after the keep time, the schema."""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from conftest import train_tiny_bundle
from fastapi.testclient import TestClient  # noqa: E402

from microexpr.serve.app import create_app  # noqa: E402
from microexpr.serve.command import serve_command  # noqa: E402
from microexpr.serve.jobs import Job, JobQueue  # noqa: E402
from microexpr.serve.settings import ServeSettings, is_loopback  # noqa: E402
from microexpr.serve.uploads import display_name  # noqa: E402
from microexpr.synth.long_videos import generate_long_videos, write_long_video  # noqa: E402

CLASSES = ("negative", "positive", "surprise")


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory) -> tuple[Path, object]:
    """3 s at 30 fps, 128 x 128, one planted micro-expression (frames 50-56)."""
    video = generate_long_videos(
        1, 1, seconds=3.0, size=128, micro=1, macro=0, distractors=("noise",), seed=3,
        emotions=CLASSES,
    )[0]  # fmt: skip
    return write_long_video(video, tmp_path_factory.mktemp("videos") / "tiny.mp4"), video


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """A folder with one flow-image STSTNet bundle (one epoch on random flow images)."""
    root = tmp_path_factory.mktemp("models")
    train_tiny_bundle(root / "runs" / "tiny")
    return root / "runs"


@contextmanager
def serving(tmp_path: Path, runner=None, **options) -> Iterator[TestClient]:
    """A client of a fresh app whose private folder is under ``tmp_path/work``."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    app = create_app(ServeSettings(work_dir=work, **options), runner=runner)
    with TestClient(app) as client:
        yield client


def post(client: TestClient, *files: tuple[str, bytes], model: str = ""):
    return client.post(
        "/api/analyses",
        files=[("files", (name, data, "video/mp4")) for name, data in files],
        data={"model": model},
    )


def wait(client: TestClient, analysis_id: str, timeout: float = 120.0) -> dict:
    """Poll until the analysis is done or failed."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = client.get(f"/api/analyses/{analysis_id}").json()
        if status["state"] in ("done", "failed"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"analysis {analysis_id} did not finish in {timeout} s")


def private_root(tmp_path: Path) -> Path:
    (root,) = (tmp_path / "work").iterdir()
    return root


class GatedRunner:
    """A runner that holds every analysis until ``release`` is set (queue tests)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started: list[str] = []

    def __call__(self, job: Job, queue: JobQueue) -> dict:
        self.started.append(job.name)
        if not self.release.wait(30):
            raise TimeoutError("never released")
        return {"event_table": []}


# -- the happy path -------------------------------------------------------------------------


def test_a_small_video_is_spotted_and_every_file_is_served(tmp_path, tiny_video):
    path, video = tiny_video
    with serving(tmp_path) as client:
        response = post(client, ("tiny.mp4", path.read_bytes()))
        assert response.status_code == 202, response.text
        (submitted,) = response.json()["analyses"]
        assert submitted["name"] == "tiny.mp4" and submitted["model"] is None
        root = private_root(tmp_path)
        assert root.stat().st_mode & 0o777 == 0o700
        job_folder = root / submitted["id"]
        assert job_folder.stat().st_mode & 0o777 == 0o700

        status = wait(client, submitted["id"])
        assert status["state"] == "done", status["error"]
        assert status["progress"] == 1.0
        result = status["result"]
        assert result["frames"] == 90 and result["fps"] == pytest.approx(30.0)
        planted = video.events[0]
        (event,) = result["events"]
        assert event["type"] == "micro" and event["label"] == "" and event["confidence"] is None
        assert event["onset"] <= planted.apex <= event["offset"]

        timeline = client.get(result["files"]["timeline"])
        assert timeline.status_code == 200 and timeline.content[:8] == b"\x89PNG\r\n\x1a\n"
        picture = client.get(event["picture"])
        assert picture.status_code == 200 and picture.content[:4] == b"\x89PNG"
        image = cv2.imdecode(np.frombuffer(picture.content, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[1] == 2 * image.shape[0]  # apex face beside its flow
        csv = client.get(result["files"]["events_csv"]).text.strip().splitlines()
        assert csv[0].startswith("subject,video,onset,apex,offset") and len(csv) == 2
        whole = client.get(result["files"]["result_json"]).json()
        assert len(whole["frame_table"]) == 90 and len(whole["event_table"]) == 1
        assert whole["source"] == "tiny.mp4"
        assert str(root) not in client.get(result["files"]["result_json"]).text
        # The upload itself is deleted as soon as its analysis ends.
        assert not (job_folder / "upload.video").exists()
    assert not root.exists()  # the private folder goes with the server


def test_a_chosen_model_labels_each_event(tmp_path, tiny_video, models_dir):
    path, _ = tiny_video
    with serving(tmp_path, models_dir=models_dir) as client:
        (model,) = client.get("/api/config").json()["models"]
        assert model["name"] == "tiny/model" and model["classes"] == list(CLASSES)
        assert model["id"] != model["name"] and "/" not in model["id"]
        response = post(client, ("talk.mp4", path.read_bytes()), model=model["id"])
        assert response.status_code == 202, response.text
        status = wait(client, response.json()["analyses"][0]["id"])
    assert status["state"] == "done", status["error"]
    assert status["model"] == "tiny/model"
    (event,) = status["result"]["events"]
    assert event["label"] in CLASSES
    assert event["confidence"] == pytest.approx(max(event["probabilities"].values()))
    assert sum(event["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_a_video_without_a_face_fails_with_a_message_naming_the_upload(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "noise.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (96, 96))
    for _ in range(30):
        writer.write(rng.integers(0, 256, (96, 96, 3), np.uint8))
    writer.release()
    with serving(tmp_path) as client:
        response = post(client, ("static noise.mp4", path.read_bytes()))
        assert response.status_code == 202, response.text
        status = wait(client, response.json()["analyses"][0]["id"])
        root = private_root(tmp_path)
    assert status["state"] == "failed"
    assert "face" in status["error"] and str(root) not in status["error"]


# -- refusals -------------------------------------------------------------------------------


def test_an_upload_over_the_size_limit_is_refused_and_nothing_is_kept(tmp_path, tiny_video):
    path, _ = tiny_video
    data = path.read_bytes()
    assert len(data) > 10_000
    with serving(tmp_path, max_upload_bytes=10_000, queue_size=1) as client:
        # Read as it streams: refused once past the limit.
        response = post(client, ("big.mp4", data))
        assert response.status_code == 413
        assert "big.mp4 is larger than the upload limit" in response.json()["detail"]
        # A declared length far past the limit is refused before the body is read.
        response = post(client, ("huge.mp4", data * 4))
        assert response.status_code == 413
        assert "the limit is" in response.json()["detail"]
        assert list(private_root(tmp_path).iterdir()) == []


def test_a_video_over_the_duration_limit_is_refused_before_any_work(tmp_path, tiny_video):
    path, _ = tiny_video
    runner = GatedRunner()
    with serving(tmp_path, runner=runner, max_duration_s=1.0) as client:
        response = post(client, ("long.mp4", path.read_bytes()))
        assert response.status_code == 413
        assert response.json()["detail"] == "long.mp4 lasts 3.0 s, longer than the limit of 1 s"
        assert runner.started == [] and list(private_root(tmp_path).iterdir()) == []


def test_a_text_file_renamed_mp4_is_refused_by_its_content(tmp_path):
    text = b"This is not a video, whatever its name says.\n" * 200
    _, png = cv2.imencode(".png", np.full((64, 64, 3), 128, np.uint8))
    runner = GatedRunner()
    with serving(tmp_path, runner=runner) as client:
        response = post(client, ("notes.mp4", text))
        assert response.status_code == 415
        assert response.json()["detail"].startswith("notes.mp4 is not a video that can be decoded")
        # An image renamed .mp4 decodes as one frame: not a video either.
        response = post(client, ("photo.mp4", png.tobytes()))
        assert response.status_code == 415, response.text
        assert "photo.mp4" in response.json()["detail"]
        assert runner.started == [] and list(private_root(tmp_path).iterdir()) == []


def test_requests_naming_paths_never_reach_the_file_system(tmp_path, tiny_video):
    path, _ = tiny_video
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve me")
    runner = GatedRunner()
    runner.release.set()
    with serving(tmp_path, runner=runner) as client:
        relative = "../" * 8 + str(secret).lstrip("/")
        for url in (
            f"/api/analyses/{relative}",
            "/api/analyses/..%2F..%2F..%2Fetc%2Fpasswd",
            "/api/analyses/%2e%2e/timeline.png",
            "/api/analyses/%2e%2e%2f%2e%2e/result.json",
            f"/{relative}",
            "/app.js/..%2F..%2Fpyproject.toml",
        ):
            response = client.get(url)
            assert response.status_code in (404, 405, 422), url
            assert "do not serve me" not in response.text and "root:" not in response.text

        # A model named by path is unknown: models are named by server-made ids only.
        response = post(client, ("tiny.mp4", path.read_bytes()), model=str(secret))
        assert response.status_code == 400 and "unknown model" in response.json()["detail"]
        response = post(client, ("tiny.mp4", path.read_bytes()), model="../../../etc/passwd")
        assert response.status_code == 400

        # A file name with a path in it is a label only; the file lands under a token.
        response = post(client, ("../../../../escape.mp4", path.read_bytes()))
        assert response.status_code == 202, response.text
        (submitted,) = response.json()["analyses"]
        assert submitted["name"] == "escape.mp4"
        status = wait(client, submitted["id"])
        assert status["state"] == "done"
        for url in (
            f"/api/analyses/{submitted['id']}/events/..%2F..%2Fresult.json",
            f"/api/analyses/{submitted['id']}/events/-1.png",
            f"/api/analyses/{submitted['id']}/events/0.png",  # no events: the runner made none
        ):
            assert client.get(url).status_code in (404, 422), url
    assert not list(tmp_path.rglob("*escape*"))


def test_display_names_lose_every_path_part():
    assert display_name("../../etc/passwd") == "passwd"
    assert display_name("C:\\Users\\me\\talk.mp4") == "talk.mp4"
    assert display_name("..") == "video" and display_name("") == "video"
    assert display_name("a\x00b\nc.mp4") == "abc.mp4"


def test_more_uploads_than_the_queue_holds_are_refused_with_429(tmp_path, tiny_video):
    data = tiny_video[0].read_bytes()
    runner = GatedRunner()
    with serving(tmp_path, runner=runner, workers=1, queue_size=2) as client:
        first = post(client, ("a.mp4", data)).json()["analyses"][0]
        end = time.monotonic() + 10
        while runner.started != ["a.mp4"] and time.monotonic() < end:
            time.sleep(0.02)
        assert client.get(f"/api/analyses/{first['id']}").json()["state"] == "running"

        # Three at once do not fit in a queue of two: none of them is queued.
        response = post(client, ("b.mp4", data), ("c.mp4", data), ("d.mp4", data))
        assert response.status_code == 429
        assert "too many videos in one request" in response.json()["detail"]

        waiting = post(client, ("b.mp4", data), ("c.mp4", data))
        assert waiting.status_code == 202, waiting.text
        b, c = waiting.json()["analyses"]
        assert (b["state"], b["position"]) == ("queued", 1)
        assert (c["state"], c["position"]) == ("queued", 2)

        response = post(client, ("e.mp4", data))
        assert response.status_code == 429
        assert "the queue is full" in response.json()["detail"]
        assert response.headers["retry-after"] == "30"

        runner.release.set()
        states = [wait(client, a["id"])["state"] for a in (first, b, c)]
    assert states == ["done"] * 3 and runner.started == ["a.mp4", "b.mp4", "c.mp4"]


def test_finished_analyses_are_removed_after_the_keep_time(tmp_path, tiny_video):
    runner = GatedRunner()
    runner.release.set()
    with serving(tmp_path, runner=runner, keep_s=0.5) as client:
        (submitted,) = post(client, ("tiny.mp4", tiny_video[0].read_bytes())).json()["analyses"]
        assert wait(client, submitted["id"])["state"] == "done"
        folder = private_root(tmp_path) / submitted["id"]
        end = time.monotonic() + 10
        while folder.exists() and time.monotonic() < end:
            time.sleep(0.1)
        assert not folder.exists()
        response = client.get(f"/api/analyses/{submitted['id']}")
        assert response.status_code == 404 and "kept" in response.json()["detail"]


def test_a_finished_analysis_can_be_deleted_at_once(tmp_path, tiny_video):
    runner = GatedRunner()
    runner.release.set()
    with serving(tmp_path, runner=runner) as client:
        (submitted,) = post(client, ("tiny.mp4", tiny_video[0].read_bytes())).json()["analyses"]
        wait(client, submitted["id"])
        assert client.delete(f"/api/analyses/{submitted['id']}").status_code == 204
        assert not (private_root(tmp_path) / submitted["id"]).exists()
        assert client.get(f"/api/analyses/{submitted['id']}").status_code == 404


# -- the page, the schema, the command --------------------------------------------------------


def test_the_page_and_the_openapi_schema(tmp_path):
    with serving(tmp_path) as client:
        page = client.get("/")
        assert page.status_code == 200 and 'id="upload"' in page.text
        assert "fetch(" in client.get("/app.js").text
        schema = client.get("/openapi.json").json()
    post_op = schema["paths"]["/api/analyses"]["post"]
    body = post_op["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["properties"]["files"]["items"]["format"] == "binary"
    assert {"202", "413", "415", "429"} <= set(post_op["responses"])
    assert "get" in schema["paths"]["/api/analyses/{analysis_id}"]
    assert "AnalysisOut" in schema["components"]["schemas"]


def test_the_command_binds_to_loopback_unless_told_otherwise():
    assert inspect.signature(serve_command).parameters["host"].default == "127.0.0.1"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")
