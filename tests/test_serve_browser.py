"""The page in a real headless Chromium (Debian's chromium package, driven by Playwright's
Python API; no browser is downloaded): `microexpr serve` started as a user starts it, the
demo's synthetic long video uploaded through the form with a model chosen, the timeline
awaited, the events table checked against the JSON API, a screenshot saved. Marked slow:
`.ci/run` runs it (and installs chromium); it skips where no chromium binary exists."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import train_tiny_bundle

from microexpr.synth.long_videos import generate_long_videos, write_long_video

CLASSES = ("negative", "positive", "surprise")
CHROMIUM = os.environ.get("MICROEXPR_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def chromium_or_skip() -> str:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no chromium binary at {CHROMIUM} (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiny_bundle(root: Path) -> Path:
    """A folder of model bundles holding one flow-image STSTNet (one epoch, random images)."""
    train_tiny_bundle(root / "models" / "demo")
    return root / "models"


# About 40 s on 2 busy cores (a bundle trained, a server started, a 6 s video analysed).
@pytest.mark.slow
def test_the_page_analyses_an_upload_in_a_real_browser(tmp_path):
    chromium = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    # The demo's long video (microexpr demo), shortened: 6 s, 160 px, 2 micro + 1 macro.
    video = generate_long_videos(
        1, 1, seconds=6.0, size=160, micro=2, macro=1, seed=0, emotions=CLASSES
    )[0]
    path = write_long_video(video, tmp_path / "demo_long_video.mp4")
    models = tiny_bundle(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "microexpr", "serve", "--port", str(port), "--models",
         str(models), "--keep-minutes", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )  # fmt: skip
    try:
        end = time.monotonic() + 90
        while True:
            try:
                httpx.get(f"{base}/api/config", timeout=2).raise_for_status()
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > end:
                    server.kill()
                    output = server.communicate()[0]
                    raise AssertionError(f"the server did not start: {output}") from None
                time.sleep(0.3)

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium, headless=True, args=["--no-sandbox"]
            )
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(base + "/")
                page.wait_for_selector("#model option >> text=demo/model", state="attached")
                page.select_option(
                    "#model", label=page.locator("#model option").nth(1).inner_text()
                )
                page.set_input_files("#videos", str(path))
                page.click("#submit")
                card = page.locator("article.analysis")
                card.wait_for(timeout=10_000)
                page.wait_for_selector("article.analysis[data-state=done]", timeout=180_000)
                page.wait_for_function(
                    "() => { const i = document.querySelector('img.timeline');"
                    " return i && i.complete && i.naturalWidth > 0; }",
                    timeout=30_000,
                )
                page.wait_for_function(
                    "() => [...document.querySelectorAll('.pictures img')]"
                    ".every(i => i.complete && i.naturalWidth > 0)",
                    timeout=30_000,
                )
                analysis_id = card.get_attribute("id").removeprefix("analysis-")
                rows = page.locator("table.events tbody tr")
                cells = [
                    [rows.nth(r).locator("td").nth(c).inner_text() for c in range(7)]
                    for r in range(rows.count())
                ]
                status_text = page.locator("article.analysis .status").inner_text()
                links = [a.get_attribute("href") for a in page.locator(".downloads a").all()]
                page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
            finally:
                browser.close()

        api = httpx.get(f"{base}/api/analyses/{analysis_id}", timeout=10).json()
        events = api["result"]["events"]
        assert api["state"] == "done" and events, api
        assert status_text.startswith("done:") and "labelled by demo/model" in status_text
        assert len(cells) == len(events)
        for row, event in zip(cells, events, strict=True):
            assert row[1] == f"{event['start_s']:.2f}" and row[2] == f"{event['end_s']:.2f}"
            assert row[3] == event["type"] and row[4] == event["label"]
            assert row[4] in CLASSES and row[5] == f"{event['confidence']:.2f}"
        # The planted macro-expression is found and typed as one.
        macro = next(e for e in video.events if e.type == "macro")
        assert any(e["type"] == "macro" and e["onset"] <= macro.apex <= e["offset"] for e in events)
        assert links == [
            api["result"]["files"]["events_csv"],
            api["result"]["files"]["result_json"],
        ]
        csv = httpx.get(base + links[0], timeout=10).text.strip().splitlines()
        assert len(csv) == len(events) + 1
        assert (tmp_path / "serve.png").stat().st_size > 10_000
    finally:
        server.terminate()
        server.wait(timeout=30)
    # The server's private folder (under TMPDIR) is removed when it stops.
    assert not list(tmp_path.glob("microexpr-serve-*"))
