"""Figures and tables of docs/synthetic.md: one PNG per emotion (apex frame | TV-L1 flow from
the onset frame, hue = direction, brightness = magnitude up to 3 px) and the AU table.

    python docs/synthetic_figures.py   # writes docs/img/synthetic_<emotion>.png, prints tables
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from microexpr.preprocess.flow import tvl1
from microexpr.synth.generator import AU_TABLE, EMOTION_AUS, generate_clips

EMOTIONS = (
    "happiness", "surprise", "disgust", "repression", "sadness",
    "fear", "anger", "contempt", "tense", "others",
)  # fmt: skip
SIZE = 96
FULL_SCALE_PX = 3.0


def flow_colour(flow: np.ndarray) -> np.ndarray:
    """Middlebury-style colour: hue = direction, value = magnitude / FULL_SCALE_PX."""
    magnitude, angle = cv2.cartToPolar(flow[..., 0], flow[..., 1], angleInDegrees=True)
    hsv = np.zeros((*flow.shape[:2], 3), np.uint8)
    hsv[..., 0] = (angle / 2).astype(np.uint8)
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(magnitude / FULL_SCALE_PX * 255, 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def emotion_figure(emotion: str, seed: int) -> tuple[np.ndarray, tuple[str, ...]]:
    clip = generate_clips(
        1, 1, size=SIZE, seed=seed, emotions=[emotion], amplitude=(3.0, 3.0), noise=0.0
    )[0]
    flow = tvl1(clip.frames[clip.onset], clip.frames[clip.apex])
    return np.hstack([clip.frames[clip.apex], flow_colour(flow)]), clip.aus


def au_table() -> str:
    lines = [
        "| AU | landmark anchors (iBUG 68, 0-based) | direction (outward, up) | sigma (x IOD) |",
        "| --- | --- | --- | --- |",
    ]
    for au, parts in AU_TABLE.items():
        for part in parts:
            anchors = "; ".join(
                "mean(" + ",".join(map(str, g)) + ")" if len(g) > 1 else str(g[0])
                for g in part.anchors
            )
            lines.append(
                f"| {au} | {anchors} | ({part.outward:+.1f}, {part.up:+.1f}) | {part.sigma:.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    out = Path(__file__).parent / "img"
    out.mkdir(exist_ok=True)
    for seed, emotion in enumerate(EMOTIONS):
        image, aus = emotion_figure(emotion, seed)
        cv2.imwrite(str(out / f"synthetic_{emotion}.png"), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(f"{emotion}: AUs {'+'.join(aus)}")
    print(au_table())
    for emotion, options in EMOTION_AUS.items():
        print(f"| {emotion} | {' or '.join('+'.join(o) or 'none' for o in options)} |")


if __name__ == "__main__":
    main()
