"""The default output of ``berth apply``: a live progress display, then a summary table.

On a terminal, one live display (rich ``Live``) shows a line per stage and phase: hosts done of
total, elapsed time, and on slow hosts the operation in flight. Without a terminal (CI logs) the
same facts come as plain lines, one when a phase starts and one when it ends. Either way the
run ends with a table per host (operations changed, already in place, failed, time) and, when
something failed, the failing host, phase, operation, the command's output and a hint.

Warnings (a host still busy after a minute), unreachable hosts and errors are printed as they
happen, and so are the lines of the operator-side steps (verify's result and how to reach the
cluster). ``-v`` and ``-vv`` use the line reporter (:class:`~provisioner.reporting.ConsoleReporter`)
instead.
"""

from __future__ import annotations

import threading

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from provisioner.output.record import CLUSTER, PhaseState, RunRecord
from provisioner.reporting import Event

SLOW = 2.0
"""Seconds on one operation after which the display names it (a slow host)."""
SHOWN_SLOW = 3
"""Slow hosts named per phase line; the rest are counted."""
OP_WIDTH = 48
"""Characters of an operation's description shown (a package list can be hundreds)."""
DEFAULT_HINT = "fix the cause and run `berth apply` again: finished operations are not repeated"
_PRINTED = ("warning", "problem", "error")


def _seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 60 else f"{int(value // 60)}m{int(value % 60):02d}s"


class ProgressReporter:
    """The default human output (see the module docstring). ``live`` forces the live display on
    or off (default: on when the console is a terminal)."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        live: bool | None = None,
        record: RunRecord | None = None,
        title: str = "berth apply",
        refresh_per_second: float = 4.0,
    ) -> None:
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.record = record or RunRecord()
        self.title = title
        self.live_mode = _interactive(self.console) if live is None else live
        self._live: Live | None = None
        self._refresh = refresh_per_second
        self._spinners: dict[str, Spinner] = {}
        self._ended: set[str] = set()
        self._summarized = False
        self._lock = threading.RLock()

    # -- events ---------------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        self.record.emit(event)
        with self._lock:
            if self.live_mode and self._live is None and event.kind in ("stage", "phase", "run"):
                self._live = Live(
                    _Board(self), console=self.console, refresh_per_second=self._refresh,
                    transient=False, redirect_stdout=False, redirect_stderr=False,
                )  # fmt: skip
                self._live.start()
            if event.kind in _PRINTED:
                self._line(event)
            elif event.kind == "done" and event.host == CLUSTER:
                # what the operator-side steps did: verify's result, how to reach the cluster
                self.console.print(f"{escape(event.prefix())} {escape(event.message)}")
            elif event.kind == "summary":
                self._summary(event)
            elif not self.live_mode:
                self._plain(event)

    def _line(self, event: Event) -> None:
        style = "yellow" if event.kind == "warning" else "red"
        text = f"{escape(event.prefix())} {escape(event.message)}".strip()
        self.console.print(f"[{style}]{text}[/]")

    def _plain(self, event: Event) -> None:
        """CI mode: one line per stage and phase, when its last host is done (a phase still
        busy after a minute is named by the engine's ``still running`` warnings)."""
        name = event.phase
        if event.kind == "end" and name not in self._ended:
            state = self.record.phases.get(name)
            if state is not None and state.finished:
                self._ended.add(name)
                self.console.print(escape(_phase_line(state, self.record)), highlight=False)

    def _summary(self, event: Event) -> None:
        what = event.data.get("of")
        if what == "apply":
            self._stop()
            self.console.print(f"[bold]{escape(event.message)}[/]")
            self._table()
            self._summarized = True
            return
        if what == "plan":
            self._plan_lines()
        self.console.print(f"[bold]{escape(event.message)}[/]")

    def _plan_lines(self) -> None:
        """The plan in brief: per phase, the changes it predicts and on how many hosts."""
        with self.record.lock:
            rows = [
                (p.name, sum(p.planned.values()), len(p.planned))
                for p in self.record.phases.values()
                if p.planned
            ]
        for name, changes, hosts in rows:
            line = f"  [{name}] {changes} change(s) on {hosts} host(s)"
            self.console.print(escape(line), highlight=False)

    # -- the end --------------------------------------------------------------------------------

    def _stop(self) -> None:
        if self._live is not None:
            if not self.record.applied:
                # nothing was applied (nothing to change, or a refusal): the lines printed
                # say it all, the board of connecting and planning goes
                self._live.transient = True
            self._live.stop()
            self._live = None

    def close(self) -> None:
        """End the display; after a failed apply, show the table and what failed."""
        with self._lock:
            self._stop()
            if self.record.applied and not self._summarized:
                self._summarized = True
                self._table()
            self._failures()

    def _table(self) -> None:
        self.console.print(summary_table(self.record))

    def _failures(self) -> None:
        for failure in self.record.failures:
            where = f"{failure.host} [{failure.phase}]"
            if failure.operation:
                where += f" {failure.operation}"
            self.console.print(f"[bold red]FAILED[/] {escape(where)}")
            for line in failure.message.splitlines() or [""]:
                self.console.print(f"  {escape(line)}", highlight=False)
            self.console.print(f"[yellow]hint: {escape(failure.hint or DEFAULT_HINT)}[/]")


def _interactive(console: Console) -> bool:
    """A live display only on a real interactive terminal: ``FORCE_COLOR`` in a CI job makes
    rich treat a pipe as a terminal (for colours), but a log cannot redraw lines."""
    isatty = getattr(console.file, "isatty", None)
    return console.is_interactive and bool(isatty and isatty())


def _phase_line(state: PhaseState, record: RunRecord) -> str:
    """``[phase] 3/3 hosts, 12 changed, 4.1s: what the phase does`` (CI mode)."""
    hosts = f"{state.done}/{state.total} hosts" if state.total else "(cluster)"
    parts = [f"[{state.name}] {hosts}"]
    if state.changed:
        parts.append(f"{state.changed} changed")
    if state.failed:
        parts.append(f"{state.failed} failed")
    parts.append(_seconds(state.elapsed(record.now())))
    line = ", ".join(parts)
    return f"{line}: {state.summary}" if state.summary else line


def summary_table(record: RunRecord) -> Table:
    """Per host: operations changed, already in place, failed, and time busy."""
    table = Table(box=box.SIMPLE_HEAD, title=None, show_edge=False, pad_edge=False)
    for column in ("host", "changed", "ok", "failed", "time"):
        table.add_column(column, justify="left" if column == "host" else "right")
    with record.lock:
        names = [h for h in record.hosts if h in record.tallies]
        for host in names:
            t = record.tallies[host]
            failed = f"[red]{t.failed}[/]" if t.failed else "0"
            table.add_row(escape(host), str(t.changed), str(t.ok), failed, _seconds(t.seconds))
    return table


class _Board:
    """The live display's content, rebuilt at each refresh from the record."""

    def __init__(self, reporter: ProgressReporter) -> None:
        self.reporter = reporter

    def __rich__(self) -> RenderableType:
        record = self.reporter.record
        with record.lock:
            now = record.now()
            grid = Table.grid(padding=(0, 2))
            for _ in range(5):
                grid.add_column()
            for state in record.phases.values():
                grid.add_row(*self._row(state, now, record))
            hosts = len([h for h in record.hosts if h != CLUSTER]) or max(
                (p.total or 0 for p in record.phases.values()), default=0
            )
        header = Text(f"{self.reporter.title}: {hosts} host(s), {_seconds(now)}", style="bold")
        return Group(header, grid)

    def _row(self, state: PhaseState, now: float, record: RunRecord) -> list[RenderableType]:
        total = state.total
        name = Text(state.name)
        if state.started is None and not state.spans:
            return [
                Text("·", style="dim"),
                Text(state.name, style="dim"),
                Text("pending", style="dim"),
                Text(""),
                Text(""),
            ]
        if state.failed:
            mark: RenderableType = Text("✗", style="red")
        elif state.finished:
            mark = Text("✓", style="green")
        else:
            mark = self._spinner(state.name)
        if total == 0 and state.after:
            count = Text("(cluster)")  # an operator-side step only, e.g. verify
        else:
            count = Text(f"{state.done}/{total if total is not None else '?'} hosts")
        slow = _slow_hosts(state, now, record.doing)
        return [mark, name, count, Text(_seconds(state.elapsed(now))), Text(slow, style="yellow")]

    def _spinner(self, name: str) -> Spinner:
        spinners = self.reporter._spinners
        if name not in spinners:
            spinners[name] = Spinner("dots", style="cyan")
        return spinners[name]


def _clip(text: str) -> str:
    return text if len(text) <= OP_WIDTH else text[: OP_WIDTH - 1] + "…"


def _slow_hosts(state: PhaseState, now: float, doing: dict[str, tuple[str, str, float]]) -> str:
    slow = sorted(
        ((host, op, now - since) for host, (phase, op, since) in doing.items()
         if phase == state.name and now - since >= SLOW),
        key=lambda item: -item[2],
    )  # fmt: skip
    shown = [f"{host}: {_clip(op)} ({_seconds(took)})" for host, op, took in slow[:SHOWN_SLOW]]
    if len(slow) > SHOWN_SLOW:
        shown.append(f"+{len(slow) - SHOWN_SLOW} more")
    return "; ".join(shown)
