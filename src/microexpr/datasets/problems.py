"""What a reader found wrong with a database and what it did about it.

Every reader takes ``report=`` and ``on_error=``: a :class:`Report` collects the documented
repairs (missing apex set to the middle, offset 0 set to the apex, ...), notes (preamble rows
skipped, label spellings folded) and errors, each naming file, row and reason. A row (clip,
sequence, CSV line) that cannot be read is skipped with its reason by default
(``on_error="skip"``): one odd row never stops a database whose other rows are sound.
``on_error="raise"`` stops at the first such row with a :class:`~microexpr.errors.DataError`
and returns nothing. A whole file that cannot be read (no sheet, no header, a damaged
workbook) always raises, except under ``Report(collect_errors=True)`` (``microexpr datasets
check``), which records every error, whole-file ones included, so one pass lists them all.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from microexpr import labels
from microexpr.errors import DataError
from microexpr.samples import Sample, subject_key

log = logging.getLogger("microexpr.datasets")

Kind = Literal["error", "repair", "note"]
OnError = Literal["raise", "skip"]
DEFAULT_ON_ERROR: OnError = "skip"


@dataclass(frozen=True)
class Problem:
    """One finding: ``repair`` changed a value, ``note`` changed nothing, ``error`` lost a row."""

    kind: Kind
    file: Path
    row: int | None
    reason: str

    @property
    def where(self) -> str:
        return f"{self.file}" if self.row is None else f"{self.file}, row {self.row}"

    def __str__(self) -> str:
        return f"{self.where}: {self.kind}: {self.reason}"


class Report:
    """Findings of one or more readers, in the order they were made.

    ``on_error``: what a bad row does (``skip`` it, or ``raise``); the reader's ``on_error=``
    sets it for that read. ``collect_errors``: record every error, whole-file ones too, and
    raise none (what ``datasets check`` needs to list everything in one pass).
    """

    def __init__(self, collect_errors: bool = False, on_error: OnError = DEFAULT_ON_ERROR):
        self.collect_errors = collect_errors
        self.on_error = _checked(on_error)
        self.problems: list[Problem] = []

    def repair(self, file: str | Path, row: int | None, reason: str) -> None:
        self.problems.append(Problem("repair", Path(file), row, reason))

    def note(self, file: str | Path, row: int | None, reason: str) -> None:
        self.problems.append(Problem("note", Path(file), row, reason))

    def fail(self, error: DataError) -> None:
        """A bad row: raise ``error`` (``on_error="raise"``), or record it and let the caller
        skip the row."""
        if self.on_error == "raise" and not self.collect_errors:
            raise error
        self.record(error)

    def record(self, error: DataError) -> None:
        self.problems.append(Problem("error", error.file, error.row, error.reason))

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Wrap the reading of one row: a DataError inside raises or is recorded."""
        try:
            yield
        except DataError as error:
            self.fail(error)

    def of_kind(self, kind: Kind) -> list[Problem]:
        return [p for p in self.problems if p.kind == kind]

    @property
    def errors(self) -> list[Problem]:
        return self.of_kind("error")

    def about(self, file: str | Path, row: int | None) -> list[Problem]:
        """Findings about one row (attached to its Sample's meta)."""
        return [p for p in self.problems if p.file == Path(file) and p.row == row]


def _checked(on_error: str) -> OnError:
    if on_error not in get_args(OnError):
        raise ValueError(f"on_error={on_error!r}: one of {', '.join(get_args(OnError))}")
    return on_error  # type: ignore[return-value]


def reporting(fn: Callable[..., list[Sample]]) -> Callable[..., list[Sample]]:
    """Give a reader the ``report=`` and ``on_error=`` keywords: create a report when absent
    and log what it found, so repairs and skipped rows are never silent even when the caller
    does not look at the report. ``on_error`` (None: the report's own setting) holds for
    this read only."""

    @functools.wraps(fn)
    def wrapper(
        root: Path, *args, report: Report | None = None, on_error: OnError | None = None, **kwargs
    ) -> list[Sample]:
        own = report is None
        report = report if report is not None else Report()
        before, start = report.on_error, len(report.problems)
        report.on_error = _checked(on_error or before)
        try:
            samples = fn(Path(root), *args, report=report, **kwargs)
        except DataError as error:
            if not report.collect_errors:
                raise
            report.record(error)
            samples = []
        finally:
            report.on_error = before
        found = report.problems[start:]
        for problem in found:
            if problem.kind == "error" and not report.collect_errors:
                log.warning("skipped: %s", problem)  # rows lost are never silent
            elif own:
                log.info("%s", problem)
        repairs = sum(p.kind == "repair" for p in found)
        if own and repairs:
            log.warning(
                "%s: %d documented repairs (microexpr datasets check lists them)",
                fn.__name__,
                repairs,
            )
        return samples

    own_parameters = list(inspect.signature(fn).parameters.values())
    option = inspect.Parameter(
        "on_error", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="OnError | None"
    )
    wrapper.__signature__ = inspect.Signature(
        [p for p in own_parameters if p.kind != p.VAR_KEYWORD]
        + [option]
        + [p for p in own_parameters if p.kind == p.VAR_KEYWORD]
    )
    return wrapper


@dataclass
class CheckResult:
    """What ``microexpr datasets check`` shows: the samples read and every finding."""

    samples: list[Sample]
    report: Report

    def counts(self, field: str) -> dict[str, int]:
        """Samples per ``label``, ``dataset`` or ``subject`` (dataset-qualified)."""
        counter: dict[str, int] = {}
        for sample in self.samples:
            value = subject_key(sample) if field == "subject" else getattr(sample, field)
            counter[value] = counter.get(value, 0) + 1
        return dict(sorted(counter.items()))

    def taxonomy_counts(self, name: str) -> dict[str, int]:
        """Samples per class of a taxonomy (in its class order); dropped emotions not counted."""
        taxonomy = labels.get(name)
        kept = taxonomy.apply(self.samples)
        return {c: sum(1 for s in kept if s.label == c) for c in taxonomy.classes}

    def outcomes(self) -> dict[OnError, str]:
        """What each ``on_error`` choice would do with this database, in one line each."""
        errors = self.report.errors
        if not errors:
            same = f"all {len(self.samples)} samples load (no row has an error)"
            return {"skip": same, "raise": same}
        skip = f"{len(self.samples)} samples load; the {len(errors)} errors below are skipped"
        if not self.samples:
            skip = f"nothing loads; the first error: {errors[0]}"
        return {"skip": skip, "raise": f"nothing loads; it stops at the first error: {errors[0]}"}


def check(name: str, root: str | Path, verify_images: str = "all", **options) -> CheckResult:
    """Read database ``name`` collecting every problem instead of stopping at the first, and
    decode every frame (``verify_images="all"``) so unreadable images are found too.
    Readers that decode no frames (flow images) take no ``verify_images``."""
    from microexpr.datasets.registry import READERS, load

    report = Report(collect_errors=True)
    if not Path(root).is_dir():
        report.record(DataError(root, "database folder not found"))
        return CheckResult([], report)
    if "verify_images" in inspect.signature(READERS.get(name).read).parameters:
        options = {"verify_images": verify_images, **options}
    try:
        samples = load(name, root, report=report, **options)
    except DataError as error:
        report.record(error)
        samples = []
    return CheckResult(samples, report)
