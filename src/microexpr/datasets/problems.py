"""What a reader found wrong with a database and what it did about it.

Every reader takes ``report=``: a :class:`Report` collects the documented repairs (missing apex
set to the middle, offset 0 set to the apex, ...), notes (preamble rows skipped, label spellings
folded) and errors, each naming file, row and reason. By default the first error raises a
:class:`~microexpr.errors.DataError` and nothing is returned (no half-loaded
database); ``Report(collect_errors=True)`` (used by ``microexpr datasets check``) records every
error, skips the bad rows and carries on, so one pass lists all problems.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from microexpr import labels
from microexpr.errors import DataError
from microexpr.samples import Sample, subject_key

log = logging.getLogger("microexpr.datasets")

Kind = Literal["error", "repair", "note"]


@dataclass(frozen=True)
class Problem:
    """One finding: ``repair`` changed a value, ``note`` changed nothing, ``error`` lost a row."""

    kind: Kind
    file: Path
    row: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}" if self.row is None else f"{self.file}, row {self.row}"
        return f"{where}: {self.kind}: {self.reason}"


class Report:
    """Findings of one or more readers, in the order they were made."""

    def __init__(self, collect_errors: bool = False):
        self.collect_errors = collect_errors
        self.problems: list[Problem] = []

    def repair(self, file: str | Path, row: int | None, reason: str) -> None:
        self.problems.append(Problem("repair", Path(file), row, reason))

    def note(self, file: str | Path, row: int | None, reason: str) -> None:
        self.problems.append(Problem("note", Path(file), row, reason))

    def fail(self, error: DataError) -> None:
        """Raise ``error``, or record it when collecting (the caller then skips the row)."""
        if not self.collect_errors:
            raise error
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


def reporting(fn: Callable[..., list[Sample]]) -> Callable[..., list[Sample]]:
    """Give a reader a ``report=`` keyword: create one when absent and log what it found, so
    repairs are never silent even when the caller does not look at the report."""

    @functools.wraps(fn)
    def wrapper(root: Path, *args, report: Report | None = None, **kwargs) -> list[Sample]:
        own = report is None
        report = report if report is not None else Report()
        start = len(report.problems)
        try:
            samples = fn(Path(root), *args, report=report, **kwargs)
        except DataError as error:
            if not report.collect_errors:
                raise
            report.fail(error)
            samples = []
        if own:
            for problem in report.problems[start:]:
                log.info("%s", problem)
            repairs = len(report.of_kind("repair"))
            if repairs:
                log.warning(
                    "%s: %d documented repairs (microexpr datasets check lists them)",
                    fn.__name__,
                    repairs,
                )
        return samples

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


def check(name: str, root: str | Path, verify_images: str = "all", **options) -> CheckResult:
    """Read database ``name`` collecting every problem instead of stopping at the first, and
    decode every frame (``verify_images="all"``) so unreadable images are found too."""
    from microexpr.datasets.registry import load

    report = Report(collect_errors=True)
    if not Path(root).is_dir():
        report.fail(DataError(root, "database folder not found"))
        return CheckResult([], report)
    try:
        samples = load(name, root, report=report, verify_images=verify_images, **options)
    except TypeError as err:
        # Readers without a report (the flow-image reader) stop at their first error.
        if "unexpected keyword argument" not in str(err):
            raise
        try:
            samples = load(name, root, **options)
        except DataError as error:
            report.fail(error)
            samples = []
    except DataError as error:
        report.fail(error)
        samples = []
    return CheckResult(samples, report)
