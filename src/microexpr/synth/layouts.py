"""Whole synthetic replicas (`microexpr synth`): generated clips written in a layout by name.

A layout is a database's on-disk form (one writer per database in :mod:`.replicas`) or one of
the two published flow-image layouts; :data:`LAYOUTS` holds the clip settings each defaults to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from microexpr.registry import Registry
from microexpr.samples import Video
from microexpr.synth.generator import CASME2_EMOTIONS, generate_clips, synthetic_flow_images
from microexpr.synth.long_videos import DISTRACTORS, generate_long_videos
from microexpr.synth.replicas import write_layout, write_long_layout
from microexpr.synth.replicas.flow_images import write_flat, write_per_subject


@dataclass(frozen=True)
class LayoutDefaults:
    """What a layout's clips look like unless the user says otherwise."""

    fps: float
    emotions: tuple[str, ...]
    motion: dict = field(default_factory=dict)
    n_frames: int | None = None


# Frame rates as the readers assume them (docs/datasets.md); emotions = the classes of each
# database's usual protocol. FER2013 and CK+ hold ordinary (macro) expressions, so their
# motion is larger, and FER2013 keeps only the apex frame, so its clips are 3 frames long.
LAYOUTS: Registry[LayoutDefaults] = Registry("layout")
LAYOUTS.add("casme2", LayoutDefaults(200.0, CASME2_EMOTIONS))
LAYOUTS.add("samm", LayoutDefaults(200.0, ("anger", "contempt", "happiness", "surprise", "others")))
LAYOUTS.add("smic", LayoutDefaults(100.0, ("negative", "positive", "surprise")))
LAYOUTS.add("casme", LayoutDefaults(60.0, ("tense", "surprise", "repression", "disgust")))
LAYOUTS.add(
    "casme3",
    LayoutDefaults(
        30.0, ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "others")
    ),
)
LAYOUTS.add(
    "mmew",
    LayoutDefaults(
        90.0, ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "others")
    ),
)
LAYOUTS.add("composite", LayoutDefaults(200.0, ("negative", "positive", "surprise")))
LAYOUTS.add(
    "fer2013",
    LayoutDefaults(
        30.0,
        ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"),
        {"amplitude": (3.0, 6.0)},
        n_frames=3,
    ),
)
LAYOUTS.add(
    "ckplus",
    LayoutDefaults(
        30.0,
        ("anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise"),
        {"amplitude": (3.0, 6.0)},
    ),
)
LAYOUTS.add("flow", LayoutDefaults(200.0, ("negative", "positive", "surprise")))
LAYOUTS.add("flow-per-subject", LayoutDefaults(200.0, ("negative", "positive", "surprise")))


def write_synthetic(
    layout: str,
    out: str | Path,
    n_subjects: int,
    clips_per_subject: int,
    size: int = 64,
    seed: int = 0,
    fps: float | None = None,
    emotions: Sequence[str] | None = None,
    faces: str | Path | None = None,
    n_frames: int | None = None,
    quirks: dict | None = None,
    **motion,
) -> list[dict]:
    """Generate clips with the layout's defaults (:data:`LAYOUTS`) and write them there.

    Database layouts go through :func:`microexpr.synth.replicas.write_layout` (``quirks``
    are its keyword arguments); ``flow`` and ``flow-per-subject`` write u/v/strain images with
    :mod:`microexpr.synth.replicas.flow_images` (``size`` is then the image side; ``flow``
    takes ``dataset``, the CSV's database column, as its one quirk).
    Returns the ground-truth records.
    """
    defaults = LAYOUTS.get(layout)
    out = Path(out)
    classes = tuple(emotions or defaults.emotions)
    if layout.startswith("flow"):
        records = synthetic_flow_images(
            n_subjects, clips_per_subject, seed, size, classes, faces, **motion
        )
        out.mkdir(parents=True, exist_ok=True)
        if layout == "flow":
            write_flat(records, out, classes, **(quirks or {}))
        else:
            write_per_subject(records, out, classes)
        return [
            {"id": f"{subject}_{clip}", "subject": subject, "clip": clip, "label": label}
            for subject, clip, label, _ in records
        ]
    clips = generate_clips(
        n_subjects,
        clips_per_subject,
        size,
        seed,
        fps or defaults.fps,
        classes,
        faces,
        n_frames or defaults.n_frames,
        **{**defaults.motion, **motion},
    )
    return write_layout(layout, clips, out, **(quirks or {}))


@dataclass(frozen=True)
class LongLayoutDefaults:
    """What a long-video layout's videos look like unless the user says otherwise."""

    fps: float
    emotions: tuple[str, ...]


# Long-video databases (docs/datasets.md, "Long videos"): frame rates as the readers assume
# them; emotions as each sheet codes them (SAMM-LV codes none: its events read back without).
LONG_LAYOUTS: Registry[LongLayoutDefaults] = Registry("long-video layout")
LONG_LAYOUTS.add(
    "casme_sq", LongLayoutDefaults(30.0, ("negative", "positive", "surprise", "others"))
)
LONG_LAYOUTS.add(
    "samm_lv", LongLayoutDefaults(200.0, ("anger", "contempt", "happiness", "surprise", "others"))
)
LONG_LAYOUTS.add(
    "casme3_lv",
    LongLayoutDefaults(
        30.0, ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "others")
    ),
)


def write_long_synthetic(
    layout: str,
    out: str | Path,
    n_subjects: int,
    videos_per_subject: int = 1,
    seconds: float = 10.0,
    size: int = 256,
    seed: int = 0,
    fps: float | None = None,
    micro: int = 3,
    macro: int = 1,
    emotions: Sequence[str] | None = None,
    faces: str | Path | None = None,
    distractors: Sequence[str] = DISTRACTORS,
    quirks: dict | None = None,
) -> list[Video]:
    """Generate long videos with the layout's defaults (:data:`LONG_LAYOUTS`) and write them
    with :func:`microexpr.synth.replicas.write_long_layout` (``quirks`` are its keyword
    arguments). Returns the Videos the layout's reader must give back. All videos are held
    in memory until written: seconds x fps x size^2 x 3 bytes each."""
    defaults = LONG_LAYOUTS.get(layout)
    videos = generate_long_videos(
        n_subjects,
        videos_per_subject,
        seconds,
        fps or defaults.fps,
        size,
        micro,
        macro,
        distractors,
        seed,
        faces,
        tuple(emotions or defaults.emotions),
    )
    return write_long_layout(layout, videos, out, **(quirks or {}))
