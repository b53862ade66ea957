"""Uploads, streamed straight into the server's private folder and checked as videos.

The multipart body is parsed as it arrives (python-multipart's streaming parser, the one
Starlette's own form parsing uses), so a file over the size limit is refused after the limit
is read, not after the whole file, and no copy of it lands anywhere else (Starlette's form
parsing spools to the system's temporary folder). Each file is written under a server-made
name; the name the browser sends is kept only as a label for people, cleaned of anything
path-like, and never touches the file system.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from microexpr.analyze.video import open_video_file
from microexpr.errors import DataError

FILES_FIELD = "files"
MODEL_FIELD = "model"
# Form fields other than files are tiny (a model id); anything longer is not from the page.
MAX_FIELD_BYTES = 1024
MAX_LABEL_CHARS = 80


class UploadRefused(Exception):
    """A request refused before any analysis: HTTP ``status`` and a message for people."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def display_name(raw: str) -> str:
    """The upload's own name as a label: its last path component, printable characters
    only, at most ``MAX_LABEL_CHARS``. Only ever shown, never used as a path."""
    name = re.split(r"[\\/]", raw)[-1]
    name = "".join(c for c in unicodedata.normalize("NFC", name) if c.isprintable())
    name = name.strip().lstrip(".") or "video"
    return name[:MAX_LABEL_CHARS]


@dataclass
class UploadedFile:
    """One file of the request: ``label`` (for people), ``path`` (server-made), ``size``."""

    label: str
    path: Path
    size: int = 0


@dataclass
class Upload:
    """What a POST carried: its files (in order) and its form fields."""

    files: list[UploadedFile] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


class _Receiver:
    """python-multipart callbacks writing each file part to ``new_path()``."""

    def __init__(self, new_path, max_bytes: int, max_files: int):
        self.new_path = new_path
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.upload = Upload()
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._field: str | None = None
        self._data = bytearray()
        self._file: UploadedFile | None = None
        self._handle = None

    def on_part_begin(self) -> None:
        self._disposition, self._field, self._file, self._data = b"", None, None, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise UploadRefused(400, "a form part has no name")
        self._field = options[b"name"].decode("utf-8", "replace")
        if b"filename" not in options:
            return
        if self._field != FILES_FIELD:
            raise UploadRefused(400, f"files go in the '{FILES_FIELD}' field")
        if len(self.upload.files) >= self.max_files:
            raise UploadRefused(
                429,
                f"too many videos in one request: the queue has room for {self.max_files} "
                "now; send fewer or try again when some are done",
            )
        label = display_name(options[b"filename"].decode("utf-8", "replace"))
        self._file = UploadedFile(label, self.new_path())
        # O_EXCL: a server-made name never meets an existing file; 0600: private.
        fd = os.open(self._file.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._handle = os.fdopen(fd, "wb")
        self.upload.files.append(self._file)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._file is None:
            self._data += chunk
            if len(self._data) > MAX_FIELD_BYTES:
                raise UploadRefused(400, f"form field '{self._field}' is too long")
            return
        self._file.size += len(chunk)
        if self._file.size > self.max_bytes:
            raise UploadRefused(
                413,
                f"{self._file.label} is larger than the upload limit of "
                f"{self.max_bytes / 1024 / 1024:g} MB",
            )
        self._handle.write(chunk)

    def on_part_end(self) -> None:
        if self._file is not None:
            self.close()
        elif self._field is not None:
            self.upload.fields[self._field] = self._data.decode("utf-8", "replace")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


async def receive_upload(
    content_type: str,
    stream: AsyncIterator[bytes],
    new_path,
    max_bytes: int,
    max_files: int,
) -> Upload:
    """Parse a multipart/form-data body from ``stream``, each file written to a fresh
    ``new_path()``. Raises UploadRefused (files already written are the caller's to
    remove: they are all in ``new_path``'s folder)."""
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise UploadRefused(415, "send the videos as multipart/form-data")
    receiver = _Receiver(new_path, max_bytes, max_files)
    callbacks = {
        name: getattr(receiver, name)
        for name in (
            "on_part_begin",
            "on_part_data",
            "on_part_end",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
        )
    }
    parser = MultipartParser(params[b"boundary"], callbacks)
    try:
        async for chunk in stream:
            parser.write(chunk)
        parser.finalize()
    except FormParserError:
        raise UploadRefused(400, "the request body is not valid multipart/form-data") from None
    finally:
        receiver.close()
    return receiver.upload


@dataclass(frozen=True)
class VideoInfo:
    """What the check learnt: frame rate, frames, seconds, frame size."""

    fps: float
    frames: int
    duration_s: float
    width: int
    height: int


def check_video(path: Path, label: str, max_duration_s: float, min_frames: int) -> VideoInfo:
    """Decode ``path`` enough to know it is a video (whatever its name says): its header's
    frame rate and count, and its first frame; a header without a frame count is counted by
    decoding, stopping past the limit. Raises UploadRefused with the reason."""
    try:
        source = open_video_file(path, None, "upload")
        frames = source.frames()
        first = next(frames, None)
        if first is None:
            raise DataError(path, "has no frames")
        count = source.frame_count
        if not count:
            limit = math.floor(max_duration_s * source.fps) + 1
            count = 1 + sum(1 for _, _ in zip(range(limit), frames, strict=False))
        frames.close()
    except ValueError as err:  # DataError, or a decoder's own complaint
        reason = err.reason if isinstance(err, DataError) else str(err)
        raise UploadRefused(415, f"{label} is not a video that can be decoded ({reason})") from None
    duration = count / source.fps
    if duration > max_duration_s:
        raise UploadRefused(
            413,
            f"{label} lasts {duration:.1f} s, longer than the limit of {max_duration_s:g} s",
        )
    if count < min_frames:
        raise UploadRefused(
            415,
            f"{label} has {count} frame(s); a video of at least {min_frames} frames is needed",
        )
    height, width = first.shape[:2]
    return VideoInfo(source.fps, count, round(duration, 3), width, height)
