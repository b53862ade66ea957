"""A bounded load run of `microexpr serve` on loopback: every upload finishes, none is lost.

Starts `microexpr serve` on 127.0.0.1 at a free port (nothing else is contacted), writes one
small synthetic video (``microexpr.synth.long_videos``: 3 s, 128 x 128, one planted
micro-expression), and has ``--clients`` threads send ``--uploads`` uploads in all, each
client posting its share one after another without waiting for results (a 429 from the full
queue is retried after a second, and counted), then polling each of its analyses until it
is done or failed. Reports: accepted, finished, failed, lost (accepted but never seen to end,
or gone), 429 refusals retried, the wait in the queue (the server's started - created) and
the time from acceptance to the result, median and worst. Bounded: at most ``--uploads``
analyses and ``--timeout`` seconds in all.

    python benchmarks/serve_load.py --uploads 20 --clients 4 --workers 1 --queue 8
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from microexpr.synth.long_videos import generate_long_videos, write_long_video

HOST = "127.0.0.1"  # loopback only: the run never sends anything off this machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_for_server(base: str, server: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.communicate()[0]}")
        try:
            httpx.get(f"{base}/api/config", timeout=2).raise_for_status()
            return
        except httpx.TransportError:
            time.sleep(0.3)
    raise SystemExit("the server did not start in time")


class Client(threading.Thread):
    """One client: posts its uploads in turn (retrying a 429), then polls each to its end."""

    def __init__(self, name: str, base: str, video: bytes, uploads: int, deadline: float):
        super().__init__(name=name, daemon=True)
        self.base, self.video, self.uploads, self.deadline = base, video, uploads, deadline
        self.accepted: dict[str, float] = {}  # id -> client time accepted
        self.ended: dict[str, dict] = {}  # id -> final status
        self.seen_at: dict[str, float] = {}
        self.refused_429 = 0
        self.errors: list[str] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as http:
            for n in range(self.uploads):
                while time.monotonic() < self.deadline:
                    files = [("files", (f"{self.name}_{n}.mp4", self.video, "video/mp4"))]
                    response = http.post("/api/analyses", files=files, data={"model": ""})
                    if response.status_code == 429:
                        self.refused_429 += 1
                        time.sleep(1.0)
                        continue
                    if response.status_code != 202:
                        self.errors.append(f"POST {response.status_code}: {response.text}")
                        break
                    (analysis,) = response.json()["analyses"]
                    self.accepted[analysis["id"]] = time.monotonic()
                    break
            pending = set(self.accepted)
            while pending and time.monotonic() < self.deadline:
                for analysis_id in sorted(pending):
                    response = http.get(f"/api/analyses/{analysis_id}")
                    if response.status_code != 200:
                        self.errors.append(f"GET {analysis_id}: {response.status_code}")
                        pending.discard(analysis_id)
                        continue
                    status = response.json()
                    if status["state"] in ("done", "failed"):
                        self.ended[analysis_id] = status
                        self.seen_at[analysis_id] = time.monotonic()
                        pending.discard(analysis_id)
                time.sleep(0.25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--queue", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=600.0, help="whole run, seconds")
    args = parser.parse_args()
    if not 1 <= args.uploads <= 200:
        raise SystemExit("--uploads: 1 to 200 (a bounded run)")

    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        video = generate_long_videos(
            1, 1, seconds=3.0, size=128, micro=1, macro=0, distractors=("noise",), seed=3
        )[0]
        data = write_long_video(video, Path(tmp) / "tiny.mp4").read_bytes()
        port = free_port()
        base = f"http://{HOST}:{port}"
        command = [
            sys.executable, "-m", "microexpr", "serve", "--host", HOST, "--port", str(port),
            "--workers", str(args.workers), "--queue", str(args.queue),
        ]  # fmt: skip
        server = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "TMPDIR": tmp},
        )
        try:
            wait_for_server(base, server, 120)
            start = time.monotonic()
            deadline = start + args.timeout
            shares = [args.uploads // args.clients + (i < args.uploads % args.clients)
                      for i in range(args.clients)]  # fmt: skip
            clients = [
                Client(f"c{i}", base, data, share, deadline) for i, share in enumerate(shares)
            ]
            for client in clients:
                client.start()
            for client in clients:
                client.join(max(0.0, deadline - time.monotonic()) + 5)
            wall = time.monotonic() - start
        finally:
            server.terminate()
            server.wait(timeout=30)

    accepted = sum(len(c.accepted) for c in clients)
    ended = {k: v for c in clients for k, v in c.ended.items()}
    done = [s for s in ended.values() if s["state"] == "done"]
    failed = [s for s in ended.values() if s["state"] == "failed"]
    lost = accepted - len(ended)
    waits = [s["started"] - s["created"] for s in ended.values()]
    turnaround = [c.seen_at[k] - c.accepted[k] for c in clients for k in c.ended]
    runs = [s["finished"] - s["started"] for s in ended.values()]
    errors = [e for c in clients for e in c.errors]
    print(
        f"uploads {args.uploads} from {args.clients} clients, {args.workers} worker(s), "
        f"queue {args.queue}; wall {wall:.1f} s"
    )
    print(
        f"accepted {accepted}, finished {len(done)}, failed {len(failed)}, lost {lost}, "
        f"429 refusals retried {sum(c.refused_429 for c in clients)}, errors {len(errors)}"
    )
    for name, values in (
        ("queue wait", waits),
        ("accepted -> result", turnaround),
        ("analysis", runs),
    ):
        if values:
            print(f"{name}: median {statistics.median(values):.2f} s, worst {max(values):.2f} s")
    for error in errors[:5]:
        print("error:", error)
    if lost or failed or errors or len(done) != args.uploads:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
