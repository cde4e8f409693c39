"""Which backends are up: rise/fall counting over health results, and round-robin picking.

Pure state (no I/O), so the failover rules are unit-tested without sockets. A backend starts
up (the first connections must not wait for a first check); ``fall`` consecutive failed checks
take it down, ``rise`` consecutive passed checks bring it back. A failed connect from the proxy
counts as a full fall at once: the proxy has just seen the backend refuse a real client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from berth.lb.config import Backend

Listener = Callable[[Backend, bool], None]
"""Called with ``(backend, up)`` whenever a backend changes state."""


@dataclass
class BackendState:
    up: bool = True
    passes: int = 0
    failures: int = 0
    last_error: str = ""


class BackendPool:
    """Backend states (see the module docstring)."""

    def __init__(self, backends: Iterable[Backend], *, rise: int = 1, fall: int = 2) -> None:
        self.backends = tuple(backends)
        if not self.backends:
            raise ValueError("a pool needs at least one backend")
        self.rise = rise
        self.fall = fall
        self.states = {b: BackendState() for b in self.backends}
        self._next = 0
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def is_up(self, backend: Backend) -> bool:
        return self.states[backend].up

    def healthy(self) -> tuple[Backend, ...]:
        return tuple(b for b in self.backends if self.states[b].up)

    def record(self, backend: Backend, ok: bool, error: str = "") -> None:
        """Count one health-check result."""
        state = self.states[backend]
        if ok:
            state.passes += 1
            state.failures = 0
            if not state.up and state.passes >= self.rise:
                self._set(backend, up=True)
        else:
            state.failures += 1
            state.passes = 0
            state.last_error = error
            if state.up and state.failures >= self.fall:
                self._set(backend, up=False)

    def connect_failed(self, backend: Backend, error: str) -> None:
        """A client connection could not reach ``backend``: down now, until checks pass."""
        state = self.states[backend]
        state.failures = max(state.failures, self.fall)
        state.passes = 0
        state.last_error = error
        if state.up:
            self._set(backend, up=False)

    def candidates(self) -> list[Backend]:
        """Backends to try for one new connection: the healthy ones in round-robin order,
        then the down ones (a last resort when every check failed, e.g. all restarting)."""
        start = self._next % len(self.backends)
        self._next += 1
        rotated = [*self.backends[start:], *self.backends[:start]]
        return [b for b in rotated if self.states[b].up] + [
            b for b in rotated if not self.states[b].up
        ]

    def _set(self, backend: Backend, *, up: bool) -> None:
        self.states[backend].up = up
        for listener in self._listeners:
            listener(backend, up)
