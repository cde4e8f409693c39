"""The record of a run, kept from the engine's events: when each host started and ended each
stage or phase, the operation each host is in, and per host how many operations changed
something, were already in place, or failed.

:class:`RunRecord` is itself a :class:`~provisioner.reporting.Reporter`: it timestamps events as
they arrive (emitting is synchronous, so arrival is when they happened). The progress display
reads it while the run goes on; the timeline is drawn from it when the run is over.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from provisioner.reporting import Event

CLUSTER = "(cluster)"
"""The pseudo host of operator-side steps (as in the engine's reports)."""


@dataclass
class Span:
    """One host's turn in one stage or phase, in seconds since the record began."""

    phase: str
    host: str
    start: float
    end: float | None = None
    ok: bool = True

    def seconds(self, now: float) -> float:
        return (self.end if self.end is not None else now) - self.start


@dataclass
class Tally:
    """Per host: operations changed, already in place (ok), failed; seconds busy."""

    changed: int = 0
    ok: int = 0
    failed: int = 0
    seconds: float = 0.0


@dataclass
class Failure:
    """A host that failed a phase: the operation it was in, what went wrong, what to do."""

    host: str
    phase: str
    operation: str | None
    message: str
    hint: str | None


@dataclass
class PhaseState:
    """A stage (connecting, preflight, plan) or a phase of the run, as far as it got."""

    name: str
    summary: str = ""
    total: int | None = None
    started: float | None = None
    spans: dict[str, Span] = field(default_factory=dict)
    """Each host's latest turn (what the counts are of)."""
    turns: list[Span] = field(default_factory=list)
    """Every turn, in order (a host may take several: an upgrade gates a host again after
    rolling it back)."""
    planned: dict[str, int] = field(default_factory=dict)
    """Changes the plan predicted, per host (the plan's ``change`` events)."""
    changed: int = 0
    """Operations that changed something, on all hosts (the apply's ``done`` events)."""
    after: bool = False
    """The phase ends with an operator-side step (a ``(cluster)`` turn after the hosts')."""

    @property
    def done(self) -> int:
        """Hosts done (the operator-side step is not a host)."""
        return sum(1 for h, s in self.spans.items() if s.end is not None and h != CLUSTER)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.spans.values() if s.end is not None and not s.ok)

    @property
    def finished(self) -> bool:
        if self.total is None or (self.total == 0 and not self.after):
            return False
        if self.after:
            step = self.spans.get(CLUSTER)
            if step is None or step.end is None:
                return False
        return self.done >= self.total

    def elapsed(self, now: float) -> float:
        if not self.spans:
            return 0.0
        first = min(s.start for s in self.spans.values())
        ends = [s.end for s in self.spans.values()]
        last = now if any(e is None for e in ends) else max(e for e in ends if e is not None)
        return last - first


class RunRecord:
    """Timing and tallies of one run (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.began = clock()
        self.phases: dict[str, PhaseState] = {}
        self.hosts: list[str] = []
        self.tallies: dict[str, Tally] = {}
        self.doing: dict[str, tuple[str, str, float]] = {}
        """host -> (phase, operation, since): the operation each host is in now."""
        self.failures: list[Failure] = []
        self.applied = False
        """An apply started (a ``run`` event): the summary table is worth showing."""
        self.lock = threading.Lock()

    def now(self) -> float:
        return self._clock() - self.began

    def phase(self, name: str) -> PhaseState:
        if name not in self.phases:
            self.phases[name] = PhaseState(name)
        return self.phases[name]

    def _host(self, name: str) -> Tally:
        if name not in self.tallies:
            self.tallies[name] = Tally()
            if name not in self.hosts:
                self.hosts.append(name)
        return self.tallies[name]

    def emit(self, event: Event) -> None:
        with self.lock:
            self._take(event, self.now())

    def _take(self, event: Event, now: float) -> None:
        kind, host = event.kind, event.host
        if kind == "run":
            self.applied = True
            # run order: the stages so far, then the phases as the apply will take them (the
            # plan's events met them in another order)
            phases = [str(name) for name in event.data.get("phases", [])]
            before = [n for n, p in self.phases.items() if p.spans and n not in phases]
            rest = [n for n in self.phases if n not in before and n not in phases]
            for name in phases:
                self.phase(name)
            for name in event.data.get("after", []):
                self.phase(str(name)).after = True
            self.phases = {n: self.phases[n] for n in [*before, *phases, *rest]}
            listed = [str(name) for name in event.data.get("hosts", [])]
            for name in listed:
                self._host(name)
            # inventory order, not the order hosts happened to finish connecting in
            self.hosts = listed + [h for h in self.hosts if h not in listed]
        elif kind in ("stage", "phase"):
            state = self.phase(event.phase or event.message)
            state.total = int(event.data.get("total", 0))
            state.after = state.after or (kind == "phase" and state.total == 0)
            state.summary = event.message if kind == "phase" else ""
            state.started = now
        elif kind == "start" and host:
            state = self.phase(event.phase)
            state.spans[host] = Span(event.phase, host, now)
            state.turns.append(state.spans[host])
        elif kind == "end" and host:
            state = self.phase(event.phase)
            span = state.spans.get(host)
            if span is None or span.end is not None:  # an end without its start
                span = state.spans[host] = Span(event.phase, host, now)
                state.turns.append(span)
            span.end, span.ok = now, bool(event.data.get("ok", True))
            self._host(host).seconds += span.end - span.start
            if self.doing.get(host, ("",))[0] == event.phase:
                del self.doing[host]
        elif kind == "running" and host:
            self.doing[host] = (event.phase, event.message, now)
        elif kind == "change" and host:
            planned = self.phase(event.phase).planned
            planned[host] = planned.get(host, 0) + 1
        elif kind == "done" and host:
            self._host(host).changed += 1
            self.phase(event.phase).changed += 1
        elif kind == "noop" and host and event.phase in self.phases:
            # a plan's no-ops are predictions; count those of phases being applied only
            if self.phases[event.phase].spans:
                self._host(host).ok += 1
        elif kind == "error" and host:
            self._host(host).failed += 1
            op = event.data.get("op")
            hint = event.data.get("hint")
            self.failures.append(
                Failure(host, event.phase, str(op) if op else None, event.message,
                        str(hint) if hint else None)
            )  # fmt: skip

    def spans(self) -> list[Span]:
        """Every span, in the order the phases came."""
        with self.lock:
            return [s for p in self.phases.values() for s in p.turns]

    def phase_names(self) -> list[str]:
        """Phases and stages that had at least one host turn, in run order."""
        with self.lock:
            return [p.name for p in self.phases.values() if p.spans]

    def host_names(self) -> list[str]:
        """Hosts in the order they were first seen (inventory order for an apply)."""
        with self.lock:
            seen = list(self.hosts)
            for phase in self.phases.values():
                seen += [h for h in phase.spans if h not in seen]
            return seen
