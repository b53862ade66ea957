"""One error type for bad annotation files, so every message names file, row and reason."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A dataset file or row that cannot be read as given."""

    def __init__(self, file: str | Path, reason: str, row: int | None = None):
        self.file = Path(file)
        self.row = row
        self.reason = reason
        where = f"{self.file}" if row is None else f"{self.file}, row {row}"
        super().__init__(f"{where}: {reason}")
