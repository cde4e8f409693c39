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
