"""Video input for `microexpr analyze`: files, frame folders, lists, in-memory frames, and every
kind of bad input refused with one DataError naming the file (and the frame)."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from microexpr.analyze import video
from microexpr.analyze.video import MemoryFrames, open_video, video_inputs
from microexpr.errors import DataError
from microexpr.preprocess.frames import MemoryFrame, read_image
from microexpr.samples import Video


def numbered_frames(n: int, size: tuple[int, int] = (48, 64)) -> list[np.ndarray]:
    """Frames whose mean grey level is their index x 4, so order can be checked."""
    return [np.full((*size, 3), 4 * i, np.uint8) for i in range(n)]


def write_video(path: Path, frames: list[np.ndarray], fps: float = 30.0) -> Path:
    """MJPG in AVI (``.avi``) or mp4v in MP4 (``.mp4``), as OpenCV writes them."""
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def corrupt_avi_frame(path: Path, index: int) -> Path:
    """Zero the JPEG data of frame ``index`` of an MJPG AVI (its ``00dc`` chunk)."""
    data = bytearray(path.read_bytes())
    start = data.find(b"movi")
    for _ in range(index + 1):
        start = data.find(b"00dc", start + 4)
    size = struct.unpack("<I", data[start + 4 : start + 8])[0]
    data[start + 8 : start + 8 + size] = bytes(size)
    path.write_bytes(data)
    return path


def unknown_codec_avi(path: Path) -> Path:
    """An AVI whose stream claims a codec no FFmpeg decodes (fourcc ``XQZW``)."""
    data = bytearray(path.read_bytes())
    header = data.find(b"strh")
    data[header + 12 : header + 16] = b"XQZW"
    fmt = data.find(b"strf")
    data[fmt + 24 : fmt + 28] = b"XQZW"  # BITMAPINFOHEADER.biCompression
    path.write_bytes(data)
    return path


def zero_rate_mp4(path: Path) -> Path:
    """An MP4 whose media time scale is 0: FFmpeg reads its frame rate as 1/512 per second."""
    data = bytearray(path.read_bytes())
    mdhd = data.find(b"mdhd")
    data[mdhd + 16 : mdhd + 20] = struct.pack(">I", 0)  # version 0: after times of 4 bytes
    path.write_bytes(data)
    return path


@pytest.fixture(params=[True, False], ids=["with-pyav", "opencv-only"])
def pyav(request, monkeypatch) -> bool:
    """Run a test with PyAV as installed, and as if it were not."""
    if request.param and not video.has_pyav():
        pytest.skip("PyAV is not installed")
    if not request.param:
        monkeypatch.setattr(video, "has_pyav", lambda: False)
    return request.param


def test_a_video_file_gives_its_frames_in_order_at_its_frame_rate(tmp_path):
    path = write_video(tmp_path / "talk.mp4", numbered_frames(12), fps=25.0)
    source = open_video(path)
    frames = list(source.frames())
    assert source.fps == 25.0 and source.name == "talk" and source.frame_count == 12
    assert len(frames) == 12 and frames[0].shape == (48, 64, 3)
    means = [f.mean() for f in frames]
    assert means == sorted(means) and abs(means[5] - 20) < 4
    assert open_video(path, fps=100.0).fps == 100.0  # --fps overrides the header
    picked = source.read([3, 7])
    assert sorted(picked) == [3, 7] and abs(picked[7].mean() - 28) < 4


def test_a_frame_folder_is_read_in_natural_order_and_needs_a_frame_rate(tmp_path):
    folder = tmp_path / "s15_0101"
    folder.mkdir()
    for i, frame in enumerate(numbered_frames(11), start=1):
        cv2.imwrite(str(folder / f"img{i}.png"), frame)  # img2 must come before img10
    with pytest.raises(DataError, match="s15_0101.*--fps"):
        open_video(folder)
    source = open_video(folder, fps=30)
    assert [round(f.mean()) for f in source.frames()] == [4 * i for i in range(11)]
    assert source.frame_name(9) == str(folder / "img10.png")
    listed = open_video(sorted(folder.iterdir(), key=video.natural_key), fps=30)
    assert listed.frame_count == 11
    record = Video("s15_0101", "casme_sq", "15", tuple(source.files), fps=30.0)
    assert open_video(record).fps == 30.0 and open_video(record).name == "s15_0101"


def test_in_memory_frames_need_a_rate_and_gray_frames_become_bgr():
    with pytest.raises(DataError, match="frame rate"):
        open_video(numbered_frames(3))
    source = open_video([np.zeros((8, 8), np.uint8)] * 2, fps=30, name="gray")
    assert isinstance(source, MemoryFrames) and next(source.frames()).shape == (8, 8, 3)


def test_a_memory_frame_stands_where_a_frame_file_would():
    image = np.full((6, 6, 3), (10, 20, 30), np.uint8)
    frame = MemoryFrame("talk.mp4 frame 12", image)
    assert read_image(frame) is image
    assert read_image(frame, gray=True).shape == (6, 6)
    assert str(Path(frame)) == "talk.mp4 frame 12"
    assert str(DataError(frame, "no face found")) == "talk.mp4 frame 12: no face found"


def test_folders_of_videos_stand_for_their_videos(tmp_path):
    write_video(tmp_path / "b.avi", numbered_frames(2))
    write_video(tmp_path / "a.mp4", numbered_frames(2))
    (tmp_path / "frames").mkdir()
    cv2.imwrite(str(tmp_path / "frames" / "img1.jpg"), numbered_frames(1)[0])
    (tmp_path / "notes.txt").write_text("not a video")
    found = video_inputs([str(tmp_path)])
    assert [p.name for p in found] == ["a.mp4", "b.avi", "frames"]
    (tmp_path / "empty").mkdir()
    assert video_inputs([str(tmp_path / "empty")]) == [tmp_path / "empty"]  # reported, not lost
    with pytest.raises(DataError, match="empty: no frame images"):
        open_video(tmp_path / "empty")


# --- bad input: one DataError naming the file (and the frame) --------------------------------


def test_a_file_that_is_not_a_video_is_named(tmp_path, pyav):
    path = tmp_path / "notes.mp4"
    path.write_text("hello, not a video\n")
    with pytest.raises(DataError, match=r"notes\.mp4: not a video"):
        open_video(path)


def test_a_video_with_zero_frames_is_named(tmp_path, pyav):
    path = tmp_path / "empty.avi"
    cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48)).release()
    with pytest.raises(DataError, match=r"empty\.avi: has no frames"):
        list(open_video(path).frames())


def test_a_corrupt_frame_in_the_middle_names_the_file_and_the_frame(tmp_path, pyav):
    path = corrupt_avi_frame(write_video(tmp_path / "broken.avi", numbered_frames(30)), 13)
    with pytest.raises(DataError, match=r"broken\.avi: frame 13: cannot be decoded"):
        list(open_video(path).frames())


def test_a_corrupt_image_in_a_frame_folder_names_that_frame(tmp_path):
    for i, frame in enumerate(numbered_frames(5), start=1):
        cv2.imwrite(str(tmp_path / f"img{i}.jpg"), frame)
    (tmp_path / "img3.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match=r"img3\.jpg: frame 2: missing or unreadable"):
        list(open_video(tmp_path, fps=30).frames())


def test_a_frame_rate_of_zero_in_the_header_needs_fps(tmp_path, pyav):
    path = zero_rate_mp4(write_video(tmp_path / "norate.mp4", numbered_frames(10)))
    with pytest.raises(DataError, match=r"norate\.mp4: no usable frame rate.*--fps"):
        open_video(path)
    assert open_video(path, fps=30).fps == 30.0
    with pytest.raises(DataError, match="--fps 0"):
        open_video(path, fps=0)


def test_an_unreadable_codec_is_named(tmp_path, pyav):
    path = unknown_codec_avi(write_video(tmp_path / "odd.avi", numbered_frames(10)))
    expected = "codec cannot be decoded" if pyav else "not a video OpenCV can read"
    with pytest.raises(DataError, match=rf"odd\.avi: .*{expected}"):
        list(open_video(path).frames())
