"""68 landmarks on the 442 real faces of the MEGC2019 composite (224x224 crops).

Counts the faces each stage of the detection cascade finds (faces.detect_face), checks that
every landmark set is plausible (brows, eyes, nose and mouth within 5% of the image; brows above
eyes above nose tip above mouth above chin; eyes level within 20 degrees), and draws
landmarks on a few faces, some found only by a fallback stage, into a small PNG.

    python benchmarks/landmarks_composite.py [--data ../shared/data/megc2019_composite]
        [--figure docs/img/landmarks_composite.png]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from microexpr.preprocess.faces import detect_face, eye_centres, landmarks_in_box


def plausible(marks: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Inner-face landmarks (brows, eyes, nose, mouth) within 5% of the image and all in
    anatomical order from top to bottom. The jaw line may leave the tight crops."""
    h, w = shape[:2]
    inner = marks[17:]
    inside = np.all((inner >= -0.05 * w) & (inner <= [1.05 * w, 1.05 * h]))
    brow, eye = marks[17:27, 1].mean(), marks[36:48, 1].mean()
    nose, mouth, chin = marks[33, 1], marks[48:68, 1].mean(), marks[8, 1]
    left, right = eye_centres(marks)
    tilt = abs(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))
    return bool(inside and brow < eye < nose < mouth < chin and tilt < 20)


def draw(image: np.ndarray, marks: np.ndarray, label: str, side: int = 112) -> np.ndarray:
    scale = side / image.shape[1]
    tile = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
    if tile.ndim == 2:
        tile = cv2.cvtColor(tile, cv2.COLOR_GRAY2BGR)
    for x, y in marks * scale:
        cv2.circle(tile, (int(round(x)), int(round(y))), 1, (0, 255, 0), -1)
    cv2.putText(tile, label, (3, side - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 255, 255), 1)
    return tile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/megc2019_composite")
    parser.add_argument("--figure", default="docs/img/landmarks_composite.png")
    args = parser.parse_args()
    files = sorted((Path(args.data) / "combined_datasets_whole").glob("*.jpg"))
    if not files:
        raise SystemExit(f"no faces under {args.data}/combined_datasets_whole")
    stages: Counter[str] = Counter()
    bad, examples = [], {}
    start = time.perf_counter()
    for file in files:
        image = cv2.imread(str(file), cv2.IMREAD_COLOR)
        face = detect_face(image)
        stages[face.detector if face else "none"] += 1
        if face is None:
            continue
        marks = landmarks_in_box(image, face.box)
        if not plausible(marks, image.shape):
            bad.append(file.name)
        examples.setdefault(face.detector, []).append((image, marks))
    seconds = time.perf_counter() - start
    found = len(files) - stages["none"]
    print(
        f"{found}/{len(files)} faces with 68 landmarks ({found / len(files):.1%}), "
        f"{seconds:.1f} s ({1000 * seconds / len(files):.0f} ms/face)"
    )
    print("by stage: " + ", ".join(f"{k} {v}" for k, v in sorted(stages.items())))
    print(f"implausible landmark sets: {len(bad)} {bad[:10]}")

    # Figure: 4 HOG faces (spread over the set), then the fallback stages' faces.
    picks = examples.get("hog1", [])[:: max(1, len(examples.get("hog1", [])) // 4)][:4]
    labels = ["hog1"] * len(picks)
    for stage in ("hog2", "hog_padded", "cnn", "haar"):
        chosen = examples.get(stage, [])[: 1 if stage != "cnn" else 2]
        picks += chosen
        labels += [stage] * len(chosen)
    tiles = [draw(img, marks, lab) for (img, marks), lab in zip(picks, labels, strict=True)]
    while len(tiles) % 4:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.vstack([np.hstack(tiles[i : i + 4]) for i in range(0, len(tiles), 4)])
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.figure, grid, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(
        f"figure {args.figure}: {grid.shape[1]}x{grid.shape[0]}, "
        f"{Path(args.figure).stat().st_size // 1024} KB"
    )


if __name__ == "__main__":
    main()
