"""What the operator sees: one line per event, prefixed ``[phase] host:``, or a JSON stream.

The engine emits :class:`Event` values to a :class:`Reporter`. :class:`ConsoleReporter` prints
them with rich (colours, unified diffs for changed files): it is ``berth apply -v``/``-vv``,
``berth plan`` and the other commands' output (``berth apply``'s default, a live progress
display, is :mod:`provisioner.output.progress`). :class:`JsonReporter` writes one JSON object
per line to stdout for ``--output json``. All are safe to call from worker threads.
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID


@dataclass(frozen=True)
class Event:
    """One thing that happened. ``kind`` is a short verb (``op``, ``phase``, ``error``...)."""

    kind: str
    phase: str = ""
    host: str = ""
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def prefix(self) -> str:
        parts = []
        if self.phase:
            parts.append(f"[{self.phase}]")
        if self.host:
            parts.append(f"{self.host}:")
        return " ".join(parts)


class Reporter(Protocol):
    def emit(self, event: Event) -> None: ...


_QUIET = frozenset({"facts", "connected", "stage", "progress", "start", "end", "running", "run"})
"""Bookkeeping events (timing, progress) that are never printed as lines."""
OPS, COMMANDS, NOOPS = 1, 2, 3
"""Verbosity levels of :class:`ConsoleReporter`: operation lines; with their commands and
diffs; and the operations already in place too."""

_STYLES = {
    "change": "yellow",
    "noop": "dim",
    "done": "green",
    "error": "red",
    "problem": "red",
    "warning": "yellow",
    "phase": "bold cyan",
    "summary": "bold",
}


class ConsoleReporter:
    """Human output, one line per event (see the module docstring). ``verbosity``:
    :data:`OPS` prints each operation, :data:`COMMANDS` (the default) also its commands and
    diffs, :data:`NOOPS` also the operations already in place.

    On a terminal, a progress bar per stage and phase counts hosts as they finish (``progress``
    forces it on or off); the event lines scroll above it.
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        verbosity: int = COMMANDS,
        progress: bool | None = None,
    ) -> None:
        # rich is imported by the reporters that print with it, not with this module: the
        # JSON stream (``--output json``) never loads it (~30 ms of a start)
        from rich.console import Console  # noqa: PLC0415

        self.console = console or Console(highlight=False, soft_wrap=True)
        self.verbosity = verbosity
        self.show_progress = self.console.is_terminal if progress is None else progress
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    def _track(self, event: Event) -> None:
        from rich.markup import escape  # noqa: PLC0415
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        if event.kind in ("stage", "phase"):
            if self._progress is None:
                self._progress = Progress(
                    SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TextColumn("hosts"), TimeElapsedColumn(),
                    console=self.console,
                )  # fmt: skip
                self._progress.start()
            label = f"[{event.phase}]" if event.phase else event.message
            self._tasks[event.phase or event.message] = self._progress.add_task(
                escape(label), total=event.data.get("total", 0)
            )
        elif self._progress is not None and event.kind == "end" and event.phase in self._tasks:
            self._progress.advance(self._tasks[event.phase])
        if event.kind == "summary" and self._progress is not None:
            self._progress.stop()
            self._progress = None

    def emit(self, event: Event) -> None:
        from rich.markup import escape  # noqa: PLC0415

        with self._lock:
            if self.show_progress:
                self._track(event)
            if event.kind == "noop" and self.verbosity < NOOPS:
                return
            if event.kind in _QUIET:
                return
            style = _STYLES.get(event.kind, "")
            text = f"{escape(event.prefix())} {escape(event.message)}".strip()
            self.console.print(f"[{style}]{text}[/]" if style else text)
            if self.verbosity < COMMANDS:
                return
            for command in event.data.get("commands", []):
                self.console.print(f"    [dim]$[/] {escape(command)}")
            diff = event.data.get("diff")
            if diff:
                for line in diff.splitlines():
                    colour = {"+": "green", "-": "red", "@": "cyan"}.get(line[:1], "")
                    body = escape(line)
                    self.console.print(f"    [{colour}]{body}[/]" if colour else f"    {body}")

    def close(self) -> None:
        """Stop the progress display (if a run ended without a summary, e.g. on an error)."""
        with self._lock:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None


class JsonReporter:
    """One JSON object per event and line (``--output json``)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        # the event's fields as asdict() gives them, without its deep copy of ``data`` (most of
        # a no-op run's events carry none): a dataclass inside ``data`` is converted when met
        fields = {"data": event.data, "host": event.host, "kind": event.kind,
                  "message": event.message, "phase": event.phase}  # fmt: skip
        line = json.dumps(fields, sort_keys=True, default=_json_value)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()


def _json_value(value: object) -> object:
    """What ``asdict`` makes of a dataclass (a dict, converted all the way down); anything
    else JSON cannot write, as text."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return str(value)


class TeeReporter:
    """Hands every event to each of ``reporters`` (e.g. the console and a timeline record)."""

    def __init__(self, *reporters: Reporter) -> None:
        self.reporters = reporters

    def emit(self, event: Event) -> None:
        for reporter in self.reporters:
            reporter.emit(event)

    def close(self) -> None:
        for reporter in self.reporters:
            stop = getattr(reporter, "close", None)
            if stop is not None:
                stop()


class CollectingReporter:
    """Keeps every event (tests, and callers that render their own summary)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]
