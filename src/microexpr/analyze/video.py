"""Frames of a long recording, from a video file, a folder of frames, a list of frame files,
a long-video reader's :class:`~microexpr.samples.Video` or frames already in memory.

Video files are decoded with OpenCV (its FFmpeg build). PyAV (``pip install
'microexpr[video]'``) is used where OpenCV cannot: a file it cannot open (a codec its build
lacks) or whose header gives it no usable frame rate. Without PyAV those cases are errors.
Everything here reads frames strictly in order, so no container has to support seeking;
frames wanted again (the spotted intervals) are found by a second pass.

Every problem is a :class:`~microexpr.errors.DataError` naming the file and, for a frame that
cannot be decoded, the frame (0-based, as the output tables count): not a video, no frames,
a corrupt frame, a codec that cannot be decoded, no frame rate.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from microexpr.errors import DataError
from microexpr.samples import Video

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# A frame rate below this is taken for a broken header (an MP4 with time scale 0 reads as
# 1/512 frames per second); micro-expressions cannot be seen below it anyway.
MIN_FPS = 1.0
# Reads tried after a failed one before the stream counts as ended: a failure followed by a
# good frame is a corrupt frame in the middle, not the end.
_READS_AFTER_FAILURE = 3


def _usable(fps: float | None) -> bool:
    return fps is not None and math.isfinite(fps) and fps >= MIN_FPS


def has_pyav() -> bool:
    """Whether PyAV is installed (the optional ``video`` extra)."""
    return importlib.util.find_spec("av") is not None


def natural_key(path: Path) -> list:
    """Sort key that puts ``img2.jpg`` before ``img10.jpg`` (numbers compared as numbers)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class VideoSource:
    """One recording: ``name`` (names its output folder), ``path`` (for messages), ``fps``,
    ``frame_count`` when the header or listing tells it; :meth:`frames` yields BGR uint8
    frames in order, :meth:`read` collects chosen ones."""

    name: str
    path: Path
    fps: float
    frame_count: int | None

    def frames(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def read(self, indices: Collection[int]) -> dict[int, np.ndarray]:
        """The frames at ``indices`` (one pass, stopping after the last one wanted)."""
        wanted = set(indices)
        found: dict[int, np.ndarray] = {}
        if not wanted:
            return found
        last = max(wanted)
        for i, frame in enumerate(self.frames()):
            if i in wanted:
                found[i] = frame
            if i >= last:
                break
        return found

    def frame_name(self, index: int) -> str:
        """How messages name one frame: ``talk.mp4 frame 120``."""
        return f"{self.path} frame {index}"


def _fps_or_error(path: Path, header: float | None, given: float | None) -> float:
    if given is not None:
        if not _usable(given):
            raise DataError(path, f"--fps {given}: a frame rate must be at least {MIN_FPS}")
        return float(given)
    if not _usable(header):
        shown = "none" if header is None or not math.isfinite(header) else f"{header:g}"
        raise DataError(
            path, f"no usable frame rate in the file (it reads {shown}); give it with --fps"
        )
    return float(header)


@dataclass
class FrameFiles(VideoSource):
    """Frames stored one image per file (the databases' layout), in the order given."""

    name: str
    path: Path
    files: Sequence[Path]
    fps: float

    @property
    def frame_count(self) -> int:
        return len(self.files)

    def _image(self, index: int) -> np.ndarray:
        image = cv2.imread(str(self.files[index]), cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(self.files[index], f"frame {index}: missing or unreadable image")
        return image

    def frames(self) -> Iterator[np.ndarray]:
        for i in range(len(self.files)):
            yield self._image(i)

    def read(self, indices: Collection[int]) -> dict[int, np.ndarray]:
        return {i: self._image(i) for i in sorted(set(indices))}

    def frame_name(self, index: int) -> str:
        return str(self.files[index])


@dataclass
class MemoryFrames(VideoSource):
    """Frames already decoded (the synthetic generator's, a caller's array)."""

    name: str
    path: Path
    images: Sequence[np.ndarray]
    fps: float

    @property
    def frame_count(self) -> int:
        return len(self.images)

    def frames(self) -> Iterator[np.ndarray]:
        for image in self.images:
            yield _bgr(image)

    def read(self, indices: Collection[int]) -> dict[int, np.ndarray]:
        return {i: _bgr(self.images[i]) for i in sorted(set(indices))}


def _bgr(image: np.ndarray) -> np.ndarray:
    """Gray frames as 3-channel BGR, so every source yields one layout."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, not {image.dtype}")
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image


@dataclass
class OpenCVVideo(VideoSource):
    """A video file decoded by OpenCV."""

    name: str
    path: Path
    fps: float
    frame_count: int | None

    def frames(self) -> Iterator[np.ndarray]:
        capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        try:
            index = 0
            while True:
                ok, frame = capture.read()
                if ok:
                    yield frame
                    index += 1
                    continue
                # A failed read: the end, unless a later frame decodes (a corrupt frame).
                if any(capture.read()[0] for _ in range(_READS_AFTER_FAILURE)):
                    raise DataError(self.path, f"frame {index}: cannot be decoded (corrupt)")
                if index == 0:
                    raise DataError(self.path, "has no frames (none could be decoded)")
                return
        finally:
            capture.release()


@dataclass
class PyAVVideo(VideoSource):
    """A video file decoded by PyAV (FFmpeg's libraries), for what OpenCV cannot read."""

    name: str
    path: Path
    fps: float
    frame_count: int | None

    def frames(self) -> Iterator[np.ndarray]:
        import av

        index = 0
        try:
            with av.open(str(self.path)) as container:
                for frame in container.decode(video=0):
                    yield frame.to_ndarray(format="bgr24")
                    index += 1
        except av.error.DecoderNotFoundError:
            raise DataError(self.path, "its codec cannot be decoded (no decoder)") from None
        except av.error.FFmpegError as err:
            raise DataError(
                self.path, f"frame {index}: cannot be decoded ({err.strerror})"
            ) from None
        if index == 0:
            raise DataError(self.path, "has no frames (none could be decoded)")


def _pyav_header(path: Path) -> tuple[float | None, int | None]:
    """(frame rate, frame count) from PyAV; DataError when it cannot open the file or has no
    decoder for its codec."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(path, "has no video stream")
            stream = container.streams.video[0]
            if stream.codec_context is None:  # PyAV found no decoder for the stream's codec
                raise DataError(path, "its codec cannot be decoded (no decoder for it)")
            rate = stream.average_rate or stream.guessed_rate
            return (float(rate) if rate else None), (stream.frames or None)
    except av.error.DecoderNotFoundError:
        raise DataError(path, "its codec cannot be decoded (no decoder)") from None
    except av.error.FFmpegError as err:
        raise DataError(path, f"not a video FFmpeg can read ({err.strerror})") from None


def _quiet_decoders() -> None:
    """Silence OpenCV's and its FFmpeg's own log lines: every problem they print is raised
    here as one DataError naming the file and frame."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def open_video_file(path: Path, fps: float | None = None, name: str | None = None) -> VideoSource:
    """A video file by OpenCV, or by PyAV where OpenCV cannot open it or read its rate."""
    if not path.is_file():
        raise DataError(path, "no such video file")
    _quiet_decoders()
    name = name or path.stem
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    opened = capture.isOpened()
    header = capture.get(cv2.CAP_PROP_FPS) if opened else None
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if opened else 0
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)) if opened else 0
    capture.release()
    if opened and (fps is not None or _usable(header)):
        return OpenCVVideo(name, path, _fps_or_error(path, header, fps), count or None)
    if has_pyav():
        rate, frames = _pyav_header(path)
        return PyAVVideo(name, path, _fps_or_error(path, rate, fps), frames)
    if opened:  # OpenCV opens it but reads no usable frame rate
        _fps_or_error(path, header, fps)
    codec = _fourcc_text(fourcc)
    raise DataError(
        path,
        "not a video OpenCV can read (not a video file, or a codec its FFmpeg lacks"
        + (f": {codec}" if codec else "")
        + "); installing PyAV (pip install 'microexpr[video]') may read it",
    )


def _fourcc_text(code: int) -> str:
    text = code.to_bytes(4, "little", signed=code < 0).decode("latin-1") if code else ""
    return text if text.isprintable() and text.strip() else ""


def frame_files(folder: Path) -> list[Path]:
    """The image files of a frame folder, in natural order (``img2`` before ``img10``)."""
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    return sorted(files, key=natural_key)


def open_video(
    source: str | Path | Video | Sequence[Path] | Sequence[np.ndarray],
    fps: float | None = None,
    name: str | None = None,
) -> VideoSource:
    """One recording from any of the forms this module reads.

    ``source``: a video file; a folder of frame images (natural order); a list of frame files;
    a long-video reader's :class:`Video` (its frame files or its ``path``, its ``fps``); a list
    of BGR (or gray) uint8 arrays. ``fps`` overrides the file's rate and is required where
    there is none (frame folders, lists). ``name`` names the output (default: the file or
    folder name, the Video's id).
    """
    if isinstance(source, Video):
        rate = fps if fps is not None else source.fps
        if source.frames:
            folder = Path(source.frames[0]).parent
            return _files(source.frames, folder, rate, name or source.id)
        if source.path is not None:
            return open_video_file(Path(source.path), rate, name or source.id)
        raise DataError(source.id, "the video record has neither frames nor a path")
    if isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir():
            files = frame_files(path)
            if not files:
                raise DataError(path, f"no frame images ({', '.join(IMAGE_SUFFIXES)})")
            return _files(files, path, fps, name or path.name)
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise DataError(path, "a single image, not a video (give its folder of frames)")
        return open_video_file(path, fps, name)
    items = list(source)
    if not items:
        raise DataError(name or "frames", "no frames")
    if all(isinstance(item, np.ndarray) for item in items):
        if fps is None:
            raise DataError(name or "frames", "frames in memory need a frame rate (fps)")
        label = name or "frames"
        return MemoryFrames(label, Path(label), items, _fps_or_error(Path(label), None, fps))
    files = [Path(item) for item in items]
    return _files(files, files[0].parent, fps, name or files[0].parent.name)


def _files(files: Sequence[Path], folder: Path, fps: float | None, name: str) -> FrameFiles:
    if fps is None:
        raise DataError(folder, "frame images carry no frame rate; give it with --fps")
    return FrameFiles(name, folder, [Path(f) for f in files], _fps_or_error(folder, None, fps))


def video_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """Command-line inputs: video files and frame folders as given; a folder holding no frame
    images but videos or frame folders stands for each of them."""
    out: list[Path] = []
    for text in paths:
        path = Path(text)
        inner = sorted(path.iterdir(), key=natural_key) if path.is_dir() else []
        if path.is_dir() and not frame_files(path):
            videos = [p for p in inner if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()]
            folders = [p for p in inner if p.is_dir() and frame_files(p)]
            out += videos + folders or [path]  # an empty folder stays, to be reported
        else:
            out.append(path)
    return out
