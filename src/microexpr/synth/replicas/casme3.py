"""CAS(ME)^3 part A replica: label sheet (three versions) and colour frame folders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from microexpr.datasets.casme3 import EMOTIONS
from microexpr.synth.replicas._common import (
    WRITERS,
    ClipLike,
    Entry,
    Planned,
    assign_quirks,
    check_emotion,
    per_subject,
    plan_frames,
    truth_record,
    write_images,
    write_xls,
    write_xlsx,
)

CASME3_SPELLING = {"happiness": "happy", "sadness": "sad"}


@WRITERS.register("casme3")
def write_casme3(
    clips: Sequence[ClipLike],
    out: Path,
    version: str = "jpgindex",
    me_a: bool = False,
    numbers_as_text: bool = True,
    **counts: int,
) -> list[dict]:
    """CAS(ME)^3 part A: ``version`` ``jpgindex`` (cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx),
    ``table`` (casme3_table.xlsx, sheet ``label``) or ``v2`` (CAS(ME)3_part_A_v2.xls with
    ``Expression type``); frames ``part_A/data/part_A_split/part_A/spNO.1/a/color/<n>.jpg``
    (``me_a``: MEB's ``ME_A/spNO.1/a/color/``). Emotions spelled as the sheet does (``happy``,
    ``sad``, one ``Others``). Counts: multi_me (a second expression in the same clip, id
    ``<clip>2``), offset_zero, missing_apex, apex_equals_onset, apex_equals_offset,
    missing_frame, upper_clip (clip letter in upper case)."""
    entries = []
    for clip, j in per_subject(clips):
        if j >= 13:
            raise ValueError("CAS(ME)^3 has 13 clips (a-m) per subject")
        emotion = check_emotion(clip, EMOTIONS, "casme3")
        entries.append(Entry(f"spNO.{clip.subject}", "abcdefghijklm"[j], emotion, clip))
    assign_quirks(entries, counts)
    base = out / ("ME_A" if me_a else "part_A/data/part_A_split/part_A")
    header = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class"]
    header += ["emotion"] + (["Expression type"] if version == "v2" else [])
    rows, truth = [], []

    def cell(value: int | None) -> int | str | None:
        if value is None:
            return None
        return str(value) if numbers_as_text else value

    for i, entry in enumerate(entries):
        planned = plan_frames(entry, start=200 + 50 * i)
        write_images(base / entry.subject / entry.clip / "color", planned.files, "{}.jpg".format)
        emotion = CASME3_SPELLING.get(entry.emotion, entry.emotion)
        if entry.emotion == "others" and i == 0:
            emotion = "Others"
        expressions = [(planned.onset, planned.apex, planned.offset, planned.truth, "")]
        if "multi_me" in entry.quirks:
            # A second expression in the same clip, starting one frame later.
            second = dict(planned.truth)
            second["onset"] = min(planned.truth["onset"] + 1, planned.truth["apex"])
            numbers = [n for n, _ in planned.files]
            expressions.append(
                (numbers[second["onset"]], planned.apex, planned.offset, second, "2")
            )
        for onset, apex, offset, timing, suffix in expressions:
            letter = entry.clip.upper() if "upper_clip" in entry.quirks else entry.clip
            row = [entry.subject, letter, cell(onset), cell(apex), cell(offset)]
            row += ["+".join(entry.source.aus), "1", emotion]
            row += ["Micro-expression"] if version == "v2" else []
            rows.append(row)
            planned_one = Planned(planned.files, onset, apex, offset, timing)
            truth.append(
                truth_record(
                    "casme3",
                    entry,
                    planned_one,
                    entry.emotion,
                    id=f"{entry.subject}_{entry.clip}{suffix}",
                )
            )
    if version == "v2":
        # A macro-expression in clip a, which the reader leaves out by default.
        rows.append([*rows[0][:5], "", "1", "happy", "Macro-expression"])
        write_xls(out / "CAS(ME)3_part_A_v2.xls", {"Sheet1": [header, *rows]})
    elif version == "jpgindex":
        write_xlsx(out / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", {"Sheet1": [header, *rows]})
    elif version == "table":
        write_xlsx(out / "casme3_table.xlsx", {"label": [header, *rows]})
    else:
        raise ValueError(f"CAS(ME)^3 version {version!r}: jpgindex, table or v2")
    return truth
