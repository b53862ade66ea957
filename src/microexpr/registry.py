"""Named entries of one kind (models, readers, losses, protocols, ...), as timm names models.

Every registry in the project is a :class:`Registry`, so every unknown name fails the same
way: one line naming the kind, the name asked for and the names known.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """A name that no entry of a registry has (a KeyError for lookups, a ValueError for config
    validation, which is what both kinds of caller catch)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Entries by name; ``kind`` is how errors call them ("model", "dataset reader", ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry``; a second entry under one name is a programming error."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator form of :meth:`add`; the decorated object's ``__name__`` by default."""

        def wrap(entry: T) -> T:
            return self.add(name or entry.__name__, entry)  # type: ignore[attr-defined]

        return wrap

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise self.unknown(name)
        return self._entries[name]

    def unknown(self, name: str) -> UnknownNameError:
        """The error for a name this registry lacks, listing the names it has."""
        known = ", ".join(sorted(self._entries))
        return UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}")

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
