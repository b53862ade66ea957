"""SAMM Long Videos replica: the FACS_Movement_Only workbook and grey frame folders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from microexpr.datasets.samm_lv import DATASET, FPS
from microexpr.samples import Event, Video
from microexpr.synth.long_videos import LONG_WRITERS, LongVideo, plan_events
from microexpr.synth.replicas._common import aus_cell, write_images, write_xlsx
from microexpr.synth.replicas.samm import SAMM_HEADER

PREAMBLE = [
    ["SAMM Long Videos Dataset - FACS Codes"],
    [],
    ["Symbol Key:"],
    ['"/" = or'],
    [],
    ["AU Help:"],
    [
        '"L2 or R2" = Unilateral AU 2 on left side of face / right side of face',
        None,
        None,
        None,
        None,
        "NOTE: Subjects with Apex Frame not annotated were labelled as -1.",
    ],
    ['"A2" = Asymmetric AU 2. Occurs on both sides of face but stronger on one side'],
    [],
]
HEADER = [
    "Subject",
    "Filename",
    "Inducement Code",
    "Onset",
    "Apex",
    "Offset",
    "Duration",
    "Type",
    "Action Units",
    "Notes",
]
QUIRKS = ("fractional", "apex_minus_one", "onset_zero", "offset_past_end")
TYPE_CELL = {"micro": "Micro - 1/2", "macro": "Macro"}


@LONG_WRITERS.register(DATASET)
def write_samm_lv(
    videos: Sequence[LongVideo],
    out: Path,
    version: str = "V3",
    five_digits: bool = False,
    repeated_name: bool = False,
    micro_sheet: bool = False,
    **counts: int,
) -> list[Video]:
    """SAMM Long Videos: ``SAMM_LongVideos_<version>_Release.xlsx`` (V1, V2, V3), worksheet
    ``FACS_Movement_Only`` with its 9-row preamble, header on row 10, ``Duration`` a formula
    with its saved value; frames ``SAMM_longvideos/006_1/006_1_0001.jpg`` in grey.

    Switches: ``five_digits`` (the first video's frames are ``_00001``), ``repeated_name``
    (each video's second expression repeats the first one's Filename, as ``037_4_1``),
    ``micro_sheet`` (also a ``SAMM_Micro_FACS_Codes_v2.xlsx`` with the micro rows' emotions,
    for ``emotion_sheet=``). Counts: fractional (frames like ``566.4``), apex_minus_one,
    onset_zero, offset_past_end.
    """
    planned = plan_events(videos, counts, QUIRKS)
    rows, saved, micro_rows, truth = [], {}, [], []
    numbers: dict[int, int] = {}
    for index, (video, events) in enumerate(zip(videos, planned, strict=True)):
        subject = f"{video.subject + 5:03d}"
        numbers[video.subject] = numbers.get(video.subject, 0) + 1
        name = f"{subject}_{numbers[video.subject]}"
        width = 5 if five_digits and index == 0 else 4
        folder = out / "SAMM_longvideos" / name
        files = list(enumerate(video.frames, start=1))
        write_images(folder, files, lambda n, s=name, w=width: f"{s}_{n:0{w}d}.jpg", gray=True)
        last = len(video.frames)
        truth_events = []
        for k, plan in enumerate(events, start=1):
            event = plan.event
            onset, apex, offset = event.onset + 1, event.apex + 1, event.offset + 1
            want = [event.onset, event.apex, event.offset]
            if "fractional" in plan.quirks:
                onset, apex, offset = onset + 0.4, apex - 0.4, offset + 0.2
            if "apex_minus_one" in plan.quirks:
                apex, want[1] = -1, None
            if "onset_zero" in plan.quirks:
                onset, want[0] = 0, 0
            if "offset_past_end" in plan.quirks:
                offset, want[2] = last + 40, last - 1
            excel_row = len(PREAMBLE) + 2 + len(rows)
            formula = f"SUM(F{excel_row}-D{excel_row})+1"
            saved[formula] = offset - onset + 1
            filename = f"{name}_{1 if repeated_name and k == 2 else k}"
            rows.append(
                [
                    subject,
                    filename,
                    numbers[video.subject],
                    onset,
                    apex,
                    offset,
                    "=" + formula,
                    TYPE_CELL[event.type],
                    aus_cell(event.aus),
                    None,
                ]
            )
            if event.type == "micro":
                micro_rows.append([subject, filename, *[None] * 7, event.emotion.title()])
            truth_events.append(Event(*want, event.type, "", event.aus))
        paths = tuple(folder / f"{name}_{n:0{width}d}.jpg" for n in range(1, last + 1))
        events_sorted = tuple(sorted(truth_events, key=lambda e: (e.onset, e.offset)))
        truth.append(Video(name, DATASET, subject, paths, fps=FPS, events=events_sorted))
    if version not in ("V1", "V2", "V3"):
        raise ValueError(f"SAMM Long Videos version {version!r}: V1, V2 or V3")
    book = {"FACS_Movement_Only": [*PREAMBLE, HEADER, *rows]}
    write_xlsx(out / f"SAMM_LongVideos_{version}_Release.xlsx", book, saved)
    if micro_sheet:
        write_xlsx(out / "SAMM_Micro_FACS_Codes_v2.xlsx", {"Sheet1": [SAMM_HEADER, *micro_rows]})
    return sorted(truth, key=lambda v: v.id)
