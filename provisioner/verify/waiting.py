"""How ``berth verify`` waits for what may still be starting.

An apply verifies right after it started the units, so a port, berth-dns's first zone, a
component's ``/metrics``, a Node's Ready, the ingress controller's listeners and the smoke pods
may each be a few seconds from ready. Every such check is asked again, ``pause`` seconds apart,
until it holds or its deadline passed, through :func:`ask_until` (or :func:`ask_until_async`
on the event loop): one loop, one set of rules:

* asked at least once; a check that holds at the first look costs one ask;
* a failed ask is followed by another until the deadline; the answer returned is the last one
  (the failure's reason as of the deadline);
* a pause never runs past the deadline (it is cut to the time left, then the last ask);
* ``worth_waiting`` (asked only after a failed ask) ends the wait at once when it says no: the
  unit behind the check is not running, so no wait would help (see
  :class:`~provisioner.verify.units.UnitStates`).

A wait may be *patient* (:class:`Patience`): past its first ``within`` seconds it goes on,
another ``within`` at a time up to ``at_most``, while the component demonstrably still starts
(its unit active, with the same main process as at the previous look: not crash-looping, see
:class:`~provisioner.verify.units.UnitWatch`). A slow host (an emulated VM, a loaded machine)
is waited for as long as it converges; a component that crashed or restarts is reported after
``within`` as before.

Time comes from an injectable :class:`Clock`, so tests run these loops on a fake one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block this thread for ``seconds``."""
        ...

    async def sleep_async(self, seconds: float) -> None:
        """Pause this task for ``seconds`` (the event loop runs others meanwhile)."""
        ...


class SystemClock:
    """The real time."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    async def sleep_async(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


@dataclass(frozen=True)
class Deadline:
    """A moment on ``clock``: several waits may share one (checks asked side by side)."""

    at: float
    clock: Clock = SYSTEM_CLOCK

    @classmethod
    def after(cls, seconds: float, clock: Clock = SYSTEM_CLOCK) -> Deadline:
        return cls(clock.monotonic() + seconds, clock)

    def pause(self, most: float) -> float | None:
        """How long to pause before the next ask: ``most``, cut to the time left; None once
        the deadline has passed (no further ask)."""
        left = self.at - self.clock.monotonic()
        return None if left <= 0 else min(most, left)


class Patience:
    """A deadline ``within`` seconds away that moves ``within`` further each time it is reached
    while ``progressing()`` says yes, up to ``at_most`` seconds from now (see the module
    docstring). ``progressing`` is asked only when the deadline is reached (it may cost a
    command on a host). Not shared between waits: each keeps its own."""

    def __init__(
        self,
        within: float,
        progressing: Callable[[], bool],
        *,
        at_most: float,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.clock = clock
        now = clock.monotonic()
        self._within = within
        self._at = now + within
        self._limit = now + max(within, at_most)
        self._progressing = progressing
        self.extensions = 0

    def pause(self, most: float) -> float | None:
        """Like :meth:`Deadline.pause`; at the deadline, pushed back while progressing."""
        now = self.clock.monotonic()
        if now >= self._at:
            if now >= self._limit or not self._progressing():
                return None
            now = self.clock.monotonic()  # the look may have taken a while
            self._at = min(now + self._within, self._limit)
            self.extensions += 1
        left = self._at - now
        return None if left <= 0 else min(most, left)


Timeline = Deadline | Patience
"""What a wait stops at: a fixed deadline, or a patient one."""


def ask_until(
    attempt: Callable[[], T],
    holds: Callable[[T], bool],
    deadline: Timeline,
    *,
    pause: float,
    worth_waiting: Callable[[T], bool] | None = None,
) -> T:
    """``attempt()`` until ``holds`` its answer, ``deadline`` passed, or ``worth_waiting``
    (given the failed answer) says no; the last answer (see the module docstring)."""
    while True:
        answer = attempt()
        wait = _next_pause(answer, holds, deadline, pause, worth_waiting)
        if wait is None:
            return answer
        deadline.clock.sleep(wait)


async def ask_until_async(
    attempt: Callable[[], Awaitable[T]],
    holds: Callable[[T], bool],
    deadline: Timeline,
    *,
    pause: float,
    worth_waiting: Callable[[T], bool] | None = None,
) -> T:
    """:func:`ask_until` for an ``attempt`` on the event loop."""
    while True:
        answer = await attempt()
        wait = _next_pause(answer, holds, deadline, pause, worth_waiting)
        if wait is None:
            return answer
        await deadline.clock.sleep_async(wait)


def _next_pause(
    answer: T,
    holds: Callable[[T], bool],
    deadline: Timeline,
    pause: float,
    worth_waiting: Callable[[T], bool] | None,
) -> float | None:
    """How long to pause before asking again after ``answer``; None: stop with it."""
    if holds(answer) or (worth_waiting is not None and not worth_waiting(answer)):
        return None
    return deadline.pause(pause)
