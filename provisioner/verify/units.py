"""What each host's unit check found, shared with the cluster checks' waits.

``berth verify`` runs the host checks and the cluster checks side by side. A cluster check
that waits for a component still starting (its ``/metrics``, a Node's Ready, a smoke pod) waits
only while the unit behind it may still bring it up: once a host's unit check has found that
unit not running, the wait ends at once and the check fails naming the unit, as the host
check of a port does (``hosts.port_listens``). A stopped unit is already a failed check of its
own, so ending the wait never changes whether verify passes; it only stops verify from
spending a minute (or two: node Ready, then /metrics) to report it. Verify of a 2-host lab
with one agent just stopped, alternating the old and this code at load 56-76: 65-67 s -> 13-21 s
(the same failed checks); once its Node went Unknown: 125 s -> 11 s.

Until a host's unit check has run (or when the host cannot be reached) nothing is known, and
the waits go on as before: the unit may be starting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from provisioner.verify.waiting import SYSTEM_CLOCK, Clock, Deadline, Patience, Timeline


class UnitStates:
    """Units found running or not, per host. Written by the host checks' threads, read by
    the cluster checks' (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[tuple[str, str], bool] = {}

    def found(self, host: str, unit: str, *, running: bool) -> None:
        with self._lock:
            self._running[host, unit] = running

    def stopped(self, host: str, unit: str) -> bool:
        """Whether ``unit`` was found not running on ``host`` (False while not looked at)."""
        with self._lock:
            return self._running.get((host, unit)) is False

    def why_not_waited(self, host: str, unit: str) -> str:
        """A failed check's note when ``unit`` on ``host`` was found stopped (else "")."""
        return f"{unit} is not running on {host}" if self.stopped(host, unit) else ""


UnitLook = Callable[[str, str], "tuple[str, str] | None"]
"""``(host, unit)`` -> the unit's ``(ActiveState, ExecMainPID)`` on the host now, or None when
the host cannot be asked."""

PATIENT_AT_MOST = 900.0
"""Seconds a wait for a component still starting may last in all while its unit stays active
with the same process (:class:`~provisioner.verify.waiting.Patience`): a 3-VM cluster under
TCG on a loaded 2-core machine converged minutes after an apply's units started, a healthy
native one in seconds."""


class UnitWatch:
    """Whether the units a wait depends on still demonstrably start: each looked at on its
    host (one command) when the wait's deadline is reached. A unit progresses while it is
    active with the same main process as at the previous look; the first look needs it active
    only. Anything else (stopped, failed, auto-restarting, a new process: it crashed since)
    ends the patience, and a host that cannot be asked does too."""

    def __init__(self, look: UnitLook) -> None:
        self._look = look
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], str] = {}

    def progressing(self, targets: Iterable[tuple[str, str]]) -> bool:
        """Whether every ``(host, unit)`` of ``targets`` progresses (none: False)."""
        targets = list(targets)
        if not targets:
            return False
        for host, unit in targets:
            state = self._look(host, unit)
            if state is None:
                return False
            active, pid = state
            with self._lock:
                before = self._seen.get((host, unit))
                self._seen[host, unit] = pid
            if active != "active" or pid in ("", "0") or before not in (None, pid):
                return False
        return True


def deadline_for(
    watch: UnitWatch | None,
    within: float,
    targets: Callable[[], Iterable[tuple[str, str]]],
    clock: Clock = SYSTEM_CLOCK,
) -> Timeline:
    """A patient deadline when ``watch`` can look at units, else a fixed one."""
    if watch is None:
        return Deadline.after(within, clock)
    return Patience(
        within, lambda: watch.progressing(targets()), at_most=PATIENT_AT_MOST, clock=clock
    )
