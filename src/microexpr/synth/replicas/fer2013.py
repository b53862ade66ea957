"""FER2013 replica: apex frames as 48x48 grey images, in CSV or image folders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from microexpr.datasets.fer2013 import LABELS
from microexpr.synth.replicas._common import (
    WRITERS,
    ClipLike,
    check_emotion,
    write_csv,
    write_images,
)

FER_FOLDERS = {
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happiness": "happy",
    "sadness": "sad",
    "surprise": "surprise",
    "neutral": "neutral",
}


def _fer_image(clip: ClipLike) -> np.ndarray:
    frame = clip.frames[clip.apex]
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    return cv2.resize(gray, (48, 48), interpolation=cv2.INTER_AREA)


@WRITERS.register("fer2013")
def write_fer2013(
    clips: Sequence[ClipLike], out: Path, variant: str = "fer2013", bad_pixels: int = 0
) -> list[dict]:
    """FER2013: each clip's apex frame as a 48x48 grey image. ``variant`` ``fer2013``
    (fer2013.csv: emotion, pixels, Usage), ``icml`` (icml_face_data.csv, headers with a
    leading space) or ``folders`` (Kaggle train/ and test/ folders of jpgs). Usage cycles
    Training, Training, PublicTest, PrivateTest (folders: train, train, test, test)."""
    usages = ("Training", "Training", "PublicTest", "PrivateTest")
    truth = []
    lines = []
    for i, clip in enumerate(clips):
        emotion = check_emotion(clip, LABELS, "fer2013")
        code = LABELS.index(emotion)
        image = _fer_image(clip)
        usage = usages[i % len(usages)]
        if variant == "folders":
            split = "train" if usage == "Training" else "test"
            name = f"{split}_{i:05d}.jpg"
            folder = out / split / FER_FOLDERS[emotion]
            write_images(folder, [(0, image)], lambda _n, nm=name: nm)
            truth.append(
                {
                    "id": f"{split}/{FER_FOLDERS[emotion]}/{Path(name).stem}",
                    "dataset": "fer2013",
                    "label": emotion,
                    "usage": "Training" if split == "train" else "Test",
                }
            )
            continue
        pixels = " ".join(str(v) for v in image.ravel())
        if i < bad_pixels:
            pixels = pixels.rsplit(" ", 5)[0]
        lines.append(
            [str(code), usage, pixels] if variant == "icml" else [str(code), pixels, usage]
        )
        truth.append({"id": f"fer{i:05d}", "dataset": "fer2013", "label": emotion, "usage": usage})
    if variant == "fer2013":
        write_csv(out / "fer2013.csv", [["emotion", "pixels", "Usage"], *lines])
    elif variant == "icml":
        write_csv(out / "icml_face_data.csv", [["emotion", " Usage", " pixels"], *lines])
    elif variant != "folders":
        raise ValueError(f"FER2013 variant {variant!r}: fer2013, icml or folders")
    return truth
