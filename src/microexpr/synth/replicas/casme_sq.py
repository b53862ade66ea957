"""CAS(ME)^2 replica: the header-less code sheet with its two naming sheets, and rawpic/."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from microexpr.datasets.casme_sq import (
    CODE_SHEET,
    DATASET,
    EMOTIONS,
    FPS,
    SUBJECT_SHEET,
    VIDEO_SHEET,
)
from microexpr.samples import Event, Video
from microexpr.synth.long_videos import LONG_WRITERS, LongVideo, plan_events
from microexpr.synth.replicas._common import aus_cell, write_images, write_xlsx

# The real subject folders (naming rule1) and videos (naming rule2 + the folder names, one
# spelt "unnyfarting" as on disk), docs/datasets.md "CAS(ME)^2".
SUBJECT_NUMBERS = (
    15,
    16,
    19,
    20,
    21,
    22,
    23,
    24,
    25,
    26,
    27,
    29,
    30,
    31,
    32,
    33,
    34,
    35,
    36,
    37,
    38,
    40,
)
VIDEOS = (
    ("0101", "disgust1", "disgustingteeth"),
    ("0102", "disgust2", "eatingworms"),
    ("0401", "anger1", "girlcrashing"),
    ("0402", "anger2", "beatingpregnantwoman"),
    ("0502", "happy1", "funnyerrors"),
    ("0503", "happy2", "unnyfarting"),
    ("0505", "happy3", "funnyinnovations"),
    ("0507", "happy4", "climbingthewall"),
    ("0508", "happy5", "funnydunkey"),
)
TYPE_CELL = {"micro": "micro-expression", "macro": "macro-expression"}
SELF_REPORT = {"positive": "happiness", "negative": "disgust", "surprise": "surprise"}
QUIRKS = ("offset_zero", "apex_zero", "offset_before_apex")


@LONG_WRITERS.register(DATASET)
def write_casme_sq(
    videos: Sequence[LongVideo],
    out: Path,
    workbook: str = "CAS(ME)^2code_final.xlsx",
    code_as_number: bool = False,
    unpadded: bool = False,
    **counts: int,
) -> list[Video]:
    """CAS(ME)^2: ``workbook`` (the file name) with worksheets ``CASFEcode_final`` (no
    header), ``naming rule1`` (one row per code row) and ``naming rule2``; frames
    ``rawpic/s15/15_0101disgustingteeth/img001.jpg`` (``unpadded``: ``img1.jpg``).
    Emotions are the estimated ones (negative, positive, surprise, others); the self-report
    column has the real typo ``happyiness`` once.

    Switch ``code_as_number``: naming rule2's codes saved as numbers (``101``). Counts:
    offset_zero (offset 0, as in 44 macro rows), apex_zero, offset_before_apex.
    """
    planned = plan_events(videos, counts, QUIRKS)
    code_rows, subject_rows, truth = [], [], []
    per_subject: dict[int, int] = {}
    for video, events in zip(videos, planned, strict=True):
        if video.subject > len(SUBJECT_NUMBERS):
            raise ValueError(f"CAS(ME)^2 has {len(SUBJECT_NUMBERS)} subjects")
        number = SUBJECT_NUMBERS[video.subject - 1]
        subject = f"s{number}"
        slot = per_subject[video.subject] = per_subject.get(video.subject, -1) + 1
        if slot >= len(VIDEOS):
            raise ValueError(f"CAS(ME)^2 has {len(VIDEOS)} videos per subject")
        code, video_name, title = VIDEOS[slot]
        folder = out / "rawpic" / subject / f"{number}_{code}{title}"
        frame_name = "img{}.jpg".format if unpadded else "img{:03d}.jpg".format
        write_images(folder, list(enumerate(video.frames, start=1)), frame_name)
        truth_events = []
        for k, plan in enumerate(events, start=1):
            event = plan.event
            emotion = event.emotion
            if emotion not in EMOTIONS:
                raise ValueError(f"CAS(ME)^2 codes {sorted(EMOTIONS)}, not {emotion!r}")
            onset, apex, offset = event.onset + 1, event.apex + 1, event.offset + 1
            want = [event.onset, event.apex, event.offset]
            if "offset_zero" in plan.quirks:
                offset, want[2] = 0, event.apex
            if "apex_zero" in plan.quirks:
                apex, want[1] = 0, None
            if "offset_before_apex" in plan.quirks:
                offset, want[1], want[2] = apex - 1, None, event.apex - 1
            report = SELF_REPORT.get(emotion, "sadness")
            if not code_rows and report == "happiness":
                report = "happyiness"
            code_rows.append(
                [
                    video.subject,
                    f"{video_name}_{k}",
                    onset,
                    apex,
                    offset,
                    aus_cell(event.aus),
                    emotion,
                    TYPE_CELL[event.type],
                    report,
                ]
            )
            subject_rows.append([number, subject, video.subject])
            truth_events.append(Event(*want, event.type, emotion, event.aus))
        paths = tuple(folder / frame_name(n) for n in range(1, len(video.frames) + 1))
        events_sorted = tuple(sorted(truth_events, key=lambda e: (e.onset, e.offset)))
        truth.append(
            Video(f"{subject}_{code}", DATASET, subject, paths, fps=FPS, events=events_sorted)
        )
    video_rows = [[int(c) if code_as_number else c, n] for c, n, _ in VIDEOS]
    book = {CODE_SHEET: code_rows, SUBJECT_SHEET: subject_rows, VIDEO_SHEET: video_rows}
    write_xlsx(out / workbook, book)
    return sorted(truth, key=lambda v: v.id)
