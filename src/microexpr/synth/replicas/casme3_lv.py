"""CAS(ME)^3 part A long-clip replica: typed sheet (or ME + MaE sheets) and clip folders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from microexpr.datasets.casme3 import EMOTIONS, FPS
from microexpr.datasets.casme3_lv import DATASET
from microexpr.samples import Event, Video
from microexpr.synth.long_videos import LONG_WRITERS, LongVideo, nearest_index, plan_events
from microexpr.synth.replicas._common import write_images, write_xls, write_xlsx
from microexpr.synth.replicas.casme3 import CASME3_SPELLING

HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]
TYPE_CELL = {"micro": "Micro-expression", "macro": "Macro-expression"}
QUIRKS = ("offset_zero", "missing_apex_frame", "upper_clip")


@LONG_WRITERS.register(DATASET)
def write_casme3_lv(
    videos: Sequence[LongVideo],
    out: Path,
    version: str = "v2",
    **counts: int,
) -> list[Video]:
    """CAS(ME)^3 part A: ``version`` ``v2`` (``CAS(ME)3_part_A_v2.xls``, one sheet with
    ``Expression type``) or ``split`` (micro rows in ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx``
    sheet ``label``, macro rows in ``cas(me)3_part_A_MaE_label_JpgIndex_v2_emotion.xlsx``
    sheet ``Sheet1``); frames ``part_A/data/part_A_split/part_A/spNO.1/a/color/<n>.jpg``
    numbered from 1, unpadded; emotions spelt as the sheets do (``happy``, ``sad``).

    Counts: offset_zero, missing_apex_frame (the apex frame dropped, as CAS(ME)^3 drops
    frames), upper_clip (the clip letter in upper case).
    """
    if version not in ("v2", "split"):
        raise ValueError(f"CAS(ME)^3 long-clip version {version!r}: v2 or split")
    planned = plan_events(videos, counts, QUIRKS)
    rows = {"micro": [], "macro": []}
    truth = []
    per_subject: dict[int, int] = {}
    for video, events in zip(videos, planned, strict=True):
        subject = f"spNO.{video.subject}"
        slot = per_subject[video.subject] = per_subject.get(video.subject, -1) + 1
        if slot >= 13:
            raise ValueError("CAS(ME)^3 has 13 clips (a-m) per subject")
        clip = "abcdefghijklm"[slot]
        dropped = {p.event.apex + 1 for p in events if "missing_apex_frame" in p.quirks}
        kept = [n for n in range(1, len(video.frames) + 1) if n not in dropped]
        folder = out / "part_A/data/part_A_split/part_A" / subject / clip / "color"
        write_images(folder, [(n, video.frames[n - 1]) for n in kept], "{}.jpg".format)
        truth_events = []
        for plan in events:
            event = plan.event
            if event.emotion not in EMOTIONS:
                raise ValueError(f"CAS(ME)^3 codes {sorted(EMOTIONS)}, not {event.emotion!r}")
            onset, apex, offset = event.onset + 1, event.apex + 1, event.offset + 1
            want = [nearest_index(kept, n) for n in (onset, apex, offset)]
            if "offset_zero" in plan.quirks:
                offset, want[2] = 0, want[1]
            letter = clip.upper() if "upper_clip" in plan.quirks else clip
            emotion = CASME3_SPELLING.get(event.emotion, event.emotion)
            row = [subject, letter, onset, apex, offset, "+".join(event.aus), "1", emotion]
            rows[event.type].append(row + ([TYPE_CELL[event.type]] if version == "v2" else []))
            truth_events.append(Event(*want, event.type, event.emotion, event.aus))
        paths = tuple(folder / f"{n}.jpg" for n in kept)
        events_sorted = tuple(sorted(truth_events, key=lambda e: (e.onset, e.offset)))
        truth.append(
            Video(f"{subject}_{clip}", DATASET, subject, paths, fps=FPS, events=events_sorted)
        )
    if version == "v2":
        header = [*HEADER, "Expression type"]
        write_xls(
            out / "CAS(ME)3_part_A_v2.xls", {"Sheet1": [header, *rows["micro"], *rows["macro"]]}
        )
    else:
        write_xlsx(
            out / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", {"label": [HEADER, *rows["micro"]]}
        )
        write_xlsx(
            out / "cas(me)3_part_A_MaE_label_JpgIndex_v2_emotion.xlsx",
            {"Sheet1": [HEADER, *rows["macro"]]},
        )
    return sorted(truth, key=lambda v: v.id)
