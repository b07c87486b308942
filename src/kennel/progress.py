"""One way for long work to say how it is going.

Library code reports ``Event``s to a ``Progress`` callable it is handed: a line of narrative
(``message``), how far a phase has come (``done`` of ``total``; ``total`` None while unknown),
or both. Who listens decides what to show: the CLI draws rich progress bars and prints the
messages, ``--json`` writes each event as a JSON line on stderr, the demo indents the messages
under its own story, and the web dashboard can stream them. Nothing is printed by the library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    phase: str  # what is going on: ingest, cache, tune, train, package, certify, score, ...
    message: str = ""  # a line for people ("" for a pure count)
    done: int | None = None
    total: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"phase": self.phase}
        if self.message:
            out["message"] = self.message
        if self.done is not None:
            out["done"], out["total"] = self.done, self.total
        return out


Progress = Callable[[Event], None]


def silent(_event: Event) -> None:
    """Report nothing: the default of every library call."""


def lines(write: Callable[[str], None], indent: str = "") -> Progress:
    """Only the messages, one line each (counts are dropped): for logs and the demo."""

    def report(event: Event) -> None:
        if event.message:
            write(indent + event.message)

    return report


def counter(progress: Progress, phase: str) -> Callable[[int, int], None]:
    """``update(done, total)`` for loops that count, reporting into ``progress``."""
    return lambda done, total: progress(Event(phase, done=done, total=total))
