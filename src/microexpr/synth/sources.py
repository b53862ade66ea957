"""Synthetic pretraining sources: clips with planted facial actions written in the layout a
config's model input reads, for ``microexpr pretrain --synthetic`` (``train.pretrain``).

Synthetic subjects share no one with a micro-expression database, so weights trained on them
can start every LOSO fold without leaking a test subject.
"""

from __future__ import annotations

import json
from pathlib import Path

from microexpr import atomicio
from microexpr.config import ConfigError, DataConfig, ExperimentConfig
from microexpr.labels import get as get_taxonomy
from microexpr.recipe import resolve
from microexpr.synth.layouts import write_synthetic

# Seven emotions whose planted action units differ (CK+'s classes): more distinct motions
# for the network to tell apart than the three composite classes.
SYNTHETIC_TAXONOMY = "ck-7"
FACE_FRAME_SIDE = 96
# Written last in the source folder: the settings of a finished synthetic set.
SOURCE_MARKER = "synthetic.json"
# The database column of synthetic flow images: their ids (s01, ...) are SMIC's, and a
# subject key must never match a real subject's (see ``check_weights_subjects``).
SYNTHETIC_DATASET = "synthetic"
# The synthetic layout written for each input kind, and the reader that reads it back.
SYNTHETIC_LAYOUTS = {
    "flow_image": ("flow", "flow_images"),
    "apex_image": ("ckplus", "ckplus"),
    "image": ("ckplus", "ckplus"),
}


def synthetic_source(
    cfg: ExperimentConfig, folder: Path, subjects: int, clips: int, seed: int = 0
) -> DataConfig:
    """Write synthetic clips for ``cfg``'s model input into ``folder`` (kept, so the run can
    be inspected and repeated) and return the data settings that read them."""
    spec = resolve(cfg).input
    if spec.kind not in SYNTHETIC_LAYOUTS:
        raise ConfigError(
            f"synthetic pretraining writes {', '.join(SYNTHETIC_LAYOUTS)} inputs; "
            f"{cfg.model.name} reads {spec.kind}: pretrain it on a database (--data)"
        )
    layout, reader = SYNTHETIC_LAYOUTS[spec.kind]
    # flow images at the model's side; face frames large enough for the landmark detector
    side = spec.size if layout == "flow" else max(spec.size, FACE_FRAME_SIDE)
    classes = get_taxonomy(SYNTHETIC_TAXONOMY).classes
    settings = {"layout": layout, "subjects": subjects, "clips": clips, "side": side, "seed": seed}
    marker = folder / SOURCE_MARKER
    if not marker.is_file():
        quirks = {"dataset": SYNTHETIC_DATASET} if layout == "flow" else {}
        write_synthetic(
            layout, folder, subjects, clips, size=side, seed=seed, emotions=classes, quirks=quirks
        )
        atomicio.write_text(marker, json.dumps(settings))
    elif json.loads(marker.read_text()) != settings:  # a finished source is reused on a rerun
        raise ConfigError(
            f"{folder} holds synthetic clips of other settings ({marker.read_text()}): "
            "choose another --out"
        )
    options = {"classes": list(classes)} if reader == "flow_images" else {}
    return DataConfig(
        name=reader, root=str(folder.resolve()), options=options, taxonomy=SYNTHETIC_TAXONOMY
    )
