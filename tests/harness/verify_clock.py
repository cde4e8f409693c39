"""A fake :class:`provisioner.verify.waiting.Clock` for verify's waits: sleeping moves time at
once (no real wait), and every pause is recorded."""

from __future__ import annotations

import threading


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []
        self._lock = threading.Lock()  # verify asks some checks side by side, in threads

    def monotonic(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        """Time passing while something works (an ask that takes a while)."""
        with self._lock:
            self.now += seconds

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.pauses.append(seconds)
            self.now += seconds

    async def sleep_async(self, seconds: float) -> None:
        self.sleep(seconds)
