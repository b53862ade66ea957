"""Files that are either whole and verified or absent: atomic writes with a SHA-256 sidecar.

A crash, a kill or a full disk must never leave a file that looks finished but is not (the
0-byte ``config.json`` or the truncated fold CSV that a re-run then trusted). Every result
file, fold file and cache entry is therefore written to a temporary name in its own folder,
flushed to disk (fsync), renamed over the real name (atomic on POSIX), and followed by
``<name>.sha256`` holding its digest in ``sha256sum`` format. A reader asks
:func:`problem` (or reads through :func:`read_bytes`): a file whose sidecar is missing, or
whose digest does not match (truncated, corrupted, or written by something else), is not
finished, and its maker recomputes it.

The sidecar is written after the file, so every interruption leaves one of: nothing new,
a temporary file (ignored), the file without its sidecar (recomputed), or both (finished).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

CHECKSUM_SUFFIX = ".sha256"


class CorruptFileError(ValueError):
    """A file that is missing its checksum or does not match it; the message names it."""

    def __init__(self, path: Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def checksum_path(path: str | Path) -> Path:
    """Where the digest of ``path`` is kept: ``<name>.sha256`` beside it."""
    path = Path(path)
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _replace_durably(path: Path, data: bytes) -> None:
    """``data`` under ``path`` through a temporary file in the same folder, fsync and rename.
    On any error (a full disk, a read-only folder) the temporary file is removed and the old
    file, if any, is left as it was."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError) and err.filename is None:  # a write error names no file
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (a power cut after it keeps the new name)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the rename is still atomic
    finally:
        os.close(fd)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` atomically under ``path``, then its checksum sidecar."""
    path = Path(path)
    sidecar = checksum_path(path)
    with contextlib.suppress(FileNotFoundError):
        sidecar.unlink()  # the old digest must not vouch for a half-replaced file
    _replace_durably(path, data)
    _replace_durably(sidecar, f"{digest(data)}  {path.name}\n".encode())
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def problem(path: str | Path) -> str | None:
    """Why ``path`` is not a finished file (missing, no checksum, checksum mismatch), or
    None when it is whole."""
    try:
        _verified(Path(path))
    except CorruptFileError as err:
        return err.reason
    return None


def _verified(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorruptFileError(path, "missing") from None
    try:
        recorded = checksum_path(path).read_text(encoding="ascii").split()
    except FileNotFoundError:
        raise CorruptFileError(path, "no checksum file (unfinished write)") from None
    except (UnicodeDecodeError, OSError) as err:
        raise CorruptFileError(path, f"unreadable checksum file ({err})") from None
    if not recorded or recorded[0] != digest(data):
        raise CorruptFileError(path, f"checksum mismatch (truncated or corrupted, {len(data)} B)")
    return data


def read_bytes(path: str | Path) -> bytes:
    """The contents of a finished file; raises CorruptFileError when it is not one."""
    return _verified(Path(path))


def read_text(path: str | Path) -> str:
    return read_bytes(path).decode("utf-8")


def remove(path: str | Path) -> None:
    """Delete a file and its sidecar (sidecar first, so no digest outlives its file)."""
    path = Path(path)
    for target in (checksum_path(path), path):
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
