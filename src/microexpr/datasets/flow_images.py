"""Preprocessed optical-flow images as public MER code distributes them.

Two layouts hold the same content (one 3-channel u/v/strain image per sample):

* flat: a folder of ``{subject}_{clip} .png`` files (the space before ``.png`` is as
  published, plain ``.png`` is accepted too) plus a CSV with ``dataset, sub, filename_o,
  label, imagename`` columns, e.g. ``combined_3_class2_for_optical_flow.csv``;
* per subject: ``<subject>/u_train|u_test/<label>/*.png``, where each subject's ``u_test``
  holds its own samples and ``u_train`` everybody else's (STSTNet's ``norm_u_v_os``).

Both give the same Samples: ``path`` is the flow image; in the flat layout the apex face
(``imagename``, when its folder is there) is ``frames[0]`` with ``apex=0``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from microexpr.datasets.problems import Report, reporting
from microexpr.datasets.registry import register
from microexpr.errors import DataError
from microexpr.samples import Sample

COMPOSITE_CLASSES = ("negative", "positive", "surprise")
DEFAULT_COLUMNS = {
    "dataset": "dataset",
    "subject": "sub",
    "clip": "filename_o",
    "label": "label",
    "face": "imagename",
}
FLOW_DIRS = ("STSNet_whole_norm_u_v_os", "norm_u_v_os", "flow")
FACE_DIRS = ("combined_datasets_whole", "faces")


def guess_database(subject: str) -> str:
    """Database from a composite subject id: ``sub01`` CASME II, ``s01`` SMIC, ``006`` SAMM."""
    if re.fullmatch(r"sub\d+", subject):
        return "casme2"
    if re.fullmatch(r"s\d+", subject):
        return "smic"
    if re.fullmatch(r"\d+", subject):
        return "samm"
    return "unknown"


def _label_name(raw: str, classes: Sequence[str], file: Path, row: int | None) -> str:
    text = str(raw).strip()
    if text.lstrip("-").isdigit():
        idx = int(text)
        if 0 <= idx < len(classes):
            return classes[idx]
    elif text.lower() in classes:
        return text.lower()
    raise DataError(file, f"unknown label {text!r} (expected 0..{len(classes) - 1} or a name)", row)


def _first_existing(root: Path, names: Sequence[str]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def _find_flow_file(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem} .png", f"{stem}.png"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_flat(
    root: Path,
    csv: str | Path | None = None,
    flow_dir: str | Path | None = None,
    face_dir: str | Path | None = None,
    columns: dict[str, str] | None = None,
    classes: Sequence[str] = COMPOSITE_CLASSES,
    report: Report | None = None,
) -> list[Sample]:
    """Flat folder + CSV layout; a bad row is a DataError naming file and line, skipped or
    raised as ``report`` says."""
    report = report if report is not None else Report(on_error="raise")
    cols = {**DEFAULT_COLUMNS, **(columns or {})}
    csv_path = Path(csv) if csv else next(iter(sorted(root.glob("*.csv"))), None)
    if csv_path is None or not csv_path.is_file():
        raise DataError(root, "no annotation CSV found (pass csv=...)")
    flow_folder = Path(flow_dir) if flow_dir else _first_existing(root, FLOW_DIRS)
    if flow_folder is None or not flow_folder.is_dir():
        raise DataError(root, f"no flow-image folder (looked for {', '.join(FLOW_DIRS)})")
    face_folder = Path(face_dir) if face_dir else _first_existing(root, FACE_DIRS)

    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise DataError(csv_path, f"cannot read as CSV ({err})") from None
    table.columns = [str(c).strip() for c in table.columns]
    for role in ("subject", "clip", "label"):
        if cols[role] not in table.columns:
            raise DataError(
                csv_path,
                f"missing column {cols[role]!r} ({role}); columns are {list(table.columns)}",
            )
    samples, seen = [], {}
    for i, row in enumerate(table.to_dict("records")):
        line = i + 2  # 1-based file line, header on line 1
        with report.guard():
            subject, clip = str(row[cols["subject"]]).strip(), str(row[cols["clip"]]).strip()
            if not subject or not clip:
                raise DataError(csv_path, "empty subject or clip", line)
            stem = f"{subject}_{clip}"
            if stem in seen:
                raise DataError(
                    csv_path, f"duplicate sample {stem!r} (first on line {seen[stem]})", line
                )
            seen[stem] = line
            label = _label_name(row[cols["label"]], classes, csv_path, line)
            flow = _find_flow_file(flow_folder, stem)
            if flow is None:
                raise DataError(
                    csv_path, f"flow image '{stem} .png' not found in {flow_folder}", line
                )
            samples.append(_flow_sample(row, cols, stem, subject, clip, label, flow, face_folder))
    if not samples and not report.errors:
        raise DataError(csv_path, "no samples")
    return samples


def _flow_sample(
    row: dict,
    cols: dict[str, str],
    stem: str,
    subject: str,
    clip: str,
    label: str,
    flow: Path,
    face_folder: Path | None,
) -> Sample:
    """One CSV row's Sample, with its apex face as the one frame when that file is there."""
    dataset = str(row.get(cols["dataset"], "")).strip() or guess_database(subject)
    frames: tuple[Path, ...] = ()
    face_name = str(row.get(cols["face"], "")).strip()
    if face_folder is not None and face_name and (face_folder / face_name).is_file():
        frames = (face_folder / face_name,)
    return Sample(
        id=stem,
        dataset=dataset,
        subject=subject,
        label=label,
        frames=frames,
        path=flow,
        apex=0 if frames else None,
        meta={"clip": clip},
    )


def read_per_subject(
    root: Path, classes: Sequence[str] = COMPOSITE_CLASSES, report: Report | None = None
) -> list[Sample]:
    """``<subject>/u_test/<label>/*.png`` layout; ``u_train`` only duplicates other subjects.
    A label folder that is not a class is skipped or raised as ``report`` says."""
    report = report if report is not None else Report(on_error="raise")
    samples = []
    subject_dirs = sorted(p for p in root.iterdir() if (p / "u_test").is_dir())
    if not subject_dirs:
        raise DataError(root, "no <subject>/u_test folders")
    for subject_dir in subject_dirs:
        subject = subject_dir.name
        for label_dir in sorted(p for p in (subject_dir / "u_test").iterdir() if p.is_dir()):
            try:
                label = _label_name(label_dir.name, classes, label_dir, None)
            except DataError as error:
                report.fail(error)
                continue
            for image in sorted(label_dir.glob("*.png")):
                stem = image.name[: -len(".png")].rstrip()
                clip = stem[len(subject) + 1 :] if stem.startswith(subject + "_") else stem
                samples.append(
                    Sample(
                        id=stem,
                        dataset=guess_database(subject),
                        subject=subject,
                        label=label,
                        path=image,
                        meta={"clip": clip},
                    )
                )
    return samples


@register(
    "flow_images",
    "preprocessed u/v/strain flow images (flat + CSV, or per-subject)",
    provides="flow_images",
)
@reporting
def load_flow_images(
    root: Path,
    csv: str | Path | None = None,
    flow_dir: str | Path | None = None,
    face_dir: str | Path | None = None,
    columns: dict[str, str] | None = None,
    classes: Sequence[str] = COMPOSITE_CLASSES,
    report: Report | None = None,
) -> list[Sample]:
    """Preprocessed optical-flow images in either public layout (detected from the folder);
    ``csv``, ``flow_dir``, ``face_dir`` and ``columns`` are the flat layout's."""
    if not root.is_dir():
        raise DataError(root, "not a folder")
    if any((p / "u_test").is_dir() for p in root.iterdir()):
        flat_only = {"csv": csv, "flow_dir": flow_dir, "face_dir": face_dir, "columns": columns}
        given = sorted(k for k, v in flat_only.items() if v is not None)
        if given:
            raise DataError(root, f"per-subject layout: {', '.join(given)} apply to the flat one")
        return read_per_subject(root, classes, report)
    return read_flat(root, csv, flow_dir, face_dir, columns, classes, report)
