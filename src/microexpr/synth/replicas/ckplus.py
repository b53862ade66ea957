"""CK+ replica: neutral -> peak image sequences with emotion and FACS files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from microexpr.datasets.ckplus import CODES
from microexpr.synth.replicas._common import (
    WRITERS,
    ClipLike,
    check_emotion,
    per_subject,
    write_images,
)


@WRITERS.register("ckplus")
def write_ckplus(
    clips: Sequence[ClipLike],
    out: Path,
    label_dir: str = "Emotion",
    unlabelled: int = 0,
    facs: bool = True,
) -> list[dict]:
    """CK+: ``cohn-kanade-images/S005/001/S005_001_00000001.png`` (8-digit, 1-based), frames
    neutral -> peak (the clip's frames up to its apex), ``<label_dir>/S005/001/
    S005_001_<peak>_emotion.txt`` with one float code; ``FACS/`` AU files when ``facs``.
    The first ``unlabelled`` sequences get no emotion file (the reader skips them)."""
    truth = []
    for i, (clip, j) in enumerate(per_subject(clips)):
        emotion = check_emotion(clip, CODES, "ckplus")
        subject, seq = f"S{clip.subject + 4:03d}", f"{j + 1:03d}"
        frames = clip.frames[: clip.apex + 1]
        files = [(k + 1, f) for k, f in enumerate(frames)]
        stem = f"{subject}_{seq}"
        write_images(
            out / "cohn-kanade-images" / subject / seq,
            files,
            lambda n, s=stem: f"{s}_{n:08d}.png",
            True,
        )
        if i < unlabelled:
            continue
        peak = len(files)
        label_folder = out / label_dir / subject / seq
        label_folder.mkdir(parents=True, exist_ok=True)
        code = CODES.index(emotion)
        (label_folder / f"{stem}_{peak:08d}_emotion.txt").write_text(f"   {code:.7e}\n")
        if facs:
            facs_folder = out / "FACS" / subject / seq
            facs_folder.mkdir(parents=True, exist_ok=True)
            lines = "".join(f"   {float(au.lstrip('RL')):.7e}   {0.0:.7e}\n" for au in clip.aus)
            (facs_folder / f"{stem}_{peak:08d}_facs.txt").write_text(lines)
        truth.append(
            {
                "id": stem,
                "dataset": "ckplus",
                "subject": subject,
                "clip": seq,
                "label": emotion,
                "onset": 0,
                "apex": peak - 1,
                "offset": peak - 1,
                "apex_source": "sheet",
                "aus": tuple(au.lstrip("RL") for au in clip.aus) if facs else (),
                "n_frames": peak,
            }
        )
    return truth
