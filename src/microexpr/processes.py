"""Worker processes that do not outlive their parent.

A spawned pool worker keeps computing its whole share when the parent is killed by a signal
(seen: the two workers of a killed 68-fold run trained on for 90 minutes, holding both
cores), as nothing tells it the results have nowhere to go. Every pool the project starts
runs :func:`exit_with_parent` in its workers.
"""

from __future__ import annotations

import os
import threading
import time


def exit_with_parent(parent: int, poll_seconds: float = 1.0) -> None:
    """Pool worker set-up: exit at once when process ``parent`` is gone (this worker is then
    re-parented, so its parent id changes), checked every ``poll_seconds`` by a daemon thread."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()
