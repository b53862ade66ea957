"""The server's limits and choices in one frozen record, set once by ``microexpr serve``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from microexpr.analyze.settings import AnalyzeSettings

MB = 1024 * 1024
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class ServeSettings:
    """``models_dir``: where model bundles are looked for (None: spotting only).
    ``max_upload_bytes``: largest accepted file. ``max_duration_s``: longest accepted video.
    ``min_frames``: shortest (a still image decodes as a one-frame "video").
    ``keep_s``: how long a finished analysis and its files are kept. ``workers``: analyses
    run at once (one per worker). ``queue_size``: analyses that may wait for a worker; more
    are refused with HTTP 429. ``work_dir``: parent of the private temporary folder (None:
    the system's temporary folder). ``analyze``: the analysis settings. ``device``: where a
    model runs."""

    models_dir: Path | None = None
    max_upload_bytes: int = 200 * MB
    max_duration_s: float = 600.0
    min_frames: int = 10
    keep_s: float = 3600.0
    workers: int = 1
    queue_size: int = 8
    work_dir: Path | None = None
    analyze: AnalyzeSettings = field(default_factory=AnalyzeSettings)
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.max_upload_bytes < 1:
            raise ValueError("max upload size must be positive")
        if self.max_duration_s <= 0 or self.keep_s <= 0:
            raise ValueError("max duration and keep time must be positive")
        if self.workers < 1 or self.queue_size < 1:
            raise ValueError("workers and queue size must be at least 1")
        if self.models_dir is not None and not Path(self.models_dir).is_dir():
            raise ValueError(f"--models {self.models_dir}: not a folder")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine."""
    return host in LOOPBACK_HOSTS or host.startswith("127.")
