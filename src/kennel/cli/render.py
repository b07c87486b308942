"""Output helpers shared by commands: JSON for machines, rich tables and progress for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from datetime import UTC, date, datetime
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from kennel import progress as events
from kennel.display import shown
from kennel.progress import Event, counter


class ShownConsole(Console):
    """A console that shows every string it renders (messages, table cells, titles) through
    ``kennel.display.shown``: what a command prints from data (a file name, a URL, a library's
    message) can neither print a password nor send the terminal an escape sequence."""

    def render_str(self, text: str, **options: Any) -> Text:
        # markup=False marks a line of data (a file name, a reason): one line whatever it
        # holds; kennel's own text keeps its line breaks and tabs
        keep = "" if options.get("markup") is False else "\n\t"
        return super().render_str(shown(text, keep=keep), **options)


# Into a pipe or a log (no terminal), lines are not wrapped and tables get room instead of
# being cut at rich's 80-column default.
console = ShownConsole(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err_console = ShownConsole(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 200)


def jsonable(value: Any) -> Any:
    """``json.dumps``'s ``default``: a time as ISO-8601 with ``T`` and its UTC offset (a naive
    one is UTC, as every store keeps it), a date as ISO-8601, anything else as ``str``."""
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def dumps(data: Any, **options: Any) -> str:
    """JSON for machines (``--json``): times always in one form (see ``jsonable``)."""
    return json.dumps(data, default=jsonable, **options)


def emit_json(data: Any) -> None:
    typer.echo(dumps(data, indent=2, sort_keys=True))


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    # the title names things too (a study, a model): data, never markup
    out = Table(title=Text(shown(title)) if title else None, title_justify="left")
    for column in columns:
        out.add_column(column)
    for row in rows:
        # a cell is one line of data, never markup: a line break inside a name is shown as
        # \x0a, and "x[/b]" is printed as it is (rich read it as a tag, and raised)
        out.add_row(*(Text(shown(str(v))) for v in row))
    console.print(out)


@contextmanager
def reporting(json_out: bool = False, *, ticking: bool = True) -> Iterator[events.Progress]:
    """The command line's listener for library progress (``kennel.progress``).

    With ``--json`` every event is one JSON line on stderr, so stdout keeps only the result;
    whatever a library prints to stdout meanwhile (Ray's driver reports a worker that died
    there, whatever ``log_to_driver`` says) goes to stderr too. Otherwise messages are
    printed, and in a terminal each phase that counts (ingest, caching, tuning, training,
    certification, scoring) gets a live bar on stderr. ``ticking=False``: the bar is redrawn
    on each event only, by no thread of its own (an ingest's events come every few hundred
    files, and its workers are forked only while no other thread runs).
    """
    if json_out:
        with redirect_stdout(sys.stderr):
            yield lambda event: typer.echo(dumps({"event": event.as_dict()}), err=True)
        return
    if not err_console.is_terminal:
        yield events.lines(lambda message: console.print(message, markup=False))
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        auto_refresh=ticking,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def show(event: Event) -> None:
            if event.message:
                bar.console.print(event.message, markup=False)
            if event.done is not None:
                if event.phase not in tasks:
                    tasks[event.phase] = bar.add_task(event.phase, total=event.total)
                bar.update(
                    tasks[event.phase], completed=event.done, total=event.total, refresh=not ticking
                )

        yield show


@contextmanager
def progress_bar(description: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """``update(done, total)`` drawn as one bar on stderr (see ``reporting``)."""
    if not enabled:
        yield lambda _done, _total: None
        return
    with reporting() as progress:
        yield counter(progress, description)
