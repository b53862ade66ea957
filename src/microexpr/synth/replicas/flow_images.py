"""Flow-image replicas: u/v/strain images written in the two published layouts that
:mod:`microexpr.datasets.flow_images` reads (flat + CSV, and STSTNet's per-subject folders)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from microexpr.datasets.flow_images import COMPOSITE_CLASSES, FLOW_DIRS, guess_database

FlowRecord = tuple[str, str, str, np.ndarray]  # (subject, clip, class name, BGR u/v/strain)


def write_flat(
    records: Sequence[FlowRecord],
    out: Path,
    classes: Sequence[str] = COMPOSITE_CLASSES,
    dataset: str | None = None,
) -> Path:
    """Write the flat layout as published: ``{subject}_{clip} .png`` (with the space) + CSV.

    ``dataset`` fills the CSV's database column; by default it is guessed from each subject
    id, as the per-subject layout (which has no such column) is read.
    """
    folder = out / FLOW_DIRS[0]
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for subject, clip, label, image in records:
        cv2.imwrite(str(folder / f"{subject}_{clip} .png"), image)
        rows.append(
            [
                dataset or guess_database(subject),
                subject,
                clip,
                classes.index(label),
                "",
                f"{subject}_{clip}.jpg",
                "",
            ]
        )
    csv_path = out / "combined_3_class2_for_optical_flow.csv"
    columns = ["dataset", "sub", "filename_o", "label", "apex", "imagename", "sub_filename"]
    pd.DataFrame(rows, columns=columns).to_csv(csv_path, index=False)
    return csv_path


def write_per_subject(
    records: Sequence[FlowRecord], out: Path, classes: Sequence[str] = COMPOSITE_CLASSES
) -> None:
    """Write ``<subject>/u_train|u_test/<label>/{subject}_{clip}.png`` (STSTNet's layout)."""
    subjects = sorted({r[0] for r in records})
    for held_out in subjects:
        for subject, clip, label, image in records:
            split = "u_test" if subject == held_out else "u_train"
            folder = out / held_out / split / str(classes.index(label))
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{subject}_{clip}.png"), image)
