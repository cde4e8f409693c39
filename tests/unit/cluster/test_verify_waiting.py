"""verify's one wait loop (``provisioner.verify.waiting``): it asks again while the check
fails, stops at the deadline with the last failure, never pauses past the deadline, and stops
at once when waiting cannot help. The synchronous and the event-loop variant behave alike."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from provisioner.verify.waiting import Deadline, ask_until, ask_until_async
from tests.harness.verify_clock import FakeClock

Asker = Callable[..., int]
"""``ask_until``'s signature, on ``int`` answers."""


def _on_the_loop(attempt: Callable[[], int], *args: Any, **kwargs: Any) -> int:
    """``ask_until_async`` run like ``ask_until``."""

    async def attempt_async() -> int:
        return attempt()

    answer: int = asyncio.run(ask_until_async(attempt_async, *args, **kwargs))
    return answer


@pytest.fixture(params=[ask_until, _on_the_loop], ids=["sync", "async"])
def ask(request: pytest.FixtureRequest) -> Asker:
    asker: Asker = request.param
    return asker


class Numbered:
    """Each ask answers the next number (1, 2, ...) and notes when it was asked."""

    def __init__(self, clock: FakeClock, *, takes: float = 0.0) -> None:
        self.clock = clock
        self.takes = takes
        self.asked_at: list[float] = []

    def __call__(self) -> int:
        self.asked_at.append(self.clock.now)
        self.clock.advance(self.takes)
        return len(self.asked_at)


def test_it_asks_again_while_the_check_fails_and_returns_the_answer_that_holds(
    ask: Asker,
) -> None:
    clock = FakeClock()
    attempt = Numbered(clock)
    answer = ask(attempt, lambda n: n == 4, Deadline.after(60.0, clock), pause=0.5)
    assert answer == 4
    assert attempt.asked_at == [0.0, 0.5, 1.0, 1.5]


def test_a_check_that_holds_at_once_is_asked_once_without_a_pause(ask: Asker) -> None:
    clock = FakeClock()
    attempt = Numbered(clock)
    assert ask(attempt, lambda _: True, Deadline.after(60.0, clock), pause=0.5) == 1
    assert clock.pauses == []


def test_it_stops_at_the_deadline_with_the_last_failure_never_pausing_past_it(
    ask: Asker,
) -> None:
    clock = FakeClock()
    attempt = Numbered(clock)
    answer = ask(attempt, lambda _: False, Deadline.after(1.0, clock), pause=0.375)
    # asked at 0, 0.375, 0.75, then the last pause is cut to what was left: asked at 1.0
    assert attempt.asked_at == [0.0, 0.375, 0.75, 1.0]
    assert clock.pauses == [0.375, 0.375, 0.25]
    assert answer == 4  # the last ask's answer
    assert clock.now == 1.0


def test_a_slow_ask_that_ends_past_the_deadline_is_the_last(ask: Asker) -> None:
    clock = FakeClock()
    attempt = Numbered(clock, takes=0.625)  # e.g. a connect that times out
    answer = ask(attempt, lambda _: False, Deadline.after(1.0, clock), pause=0.5)
    # asked at 0 (done at 0.625, 0.375 left: the pause is cut to it), at 1.0 (done at 1.625,
    # past the deadline): no pause after it
    assert attempt.asked_at == [0.0, 1.0]
    assert clock.pauses == [0.375]
    assert answer == 2


def test_a_zero_deadline_asks_once(ask: Asker) -> None:
    clock = FakeClock()
    attempt = Numbered(clock)
    assert ask(attempt, lambda _: False, Deadline.after(0.0, clock), pause=0.5) == 1
    assert clock.pauses == []


def test_it_stops_at_once_when_waiting_cannot_help(ask: Asker) -> None:
    clock = FakeClock()
    attempt = Numbered(clock)
    consulted: list[int] = []

    def worth_waiting(answer: int) -> bool:
        consulted.append(answer)
        return answer < 3  # e.g. the host checks found the unit stopped by the third ask

    answer = ask(
        attempt,
        lambda _: False,
        Deadline.after(60.0, clock),
        pause=0.5,
        worth_waiting=worth_waiting,
    )
    assert answer == 3
    assert consulted == [1, 2, 3]  # given each failed answer
    assert clock.now == 1.0  # no pause after the answer it gave up on


def test_worth_waiting_is_not_consulted_when_the_check_holds(ask: Asker) -> None:
    clock = FakeClock()
    consulted: list[int] = []

    def worth_waiting(answer: int) -> bool:
        consulted.append(answer)
        return False

    assert ask(
        Numbered(clock),
        lambda _: True,
        Deadline.after(60.0, clock),
        pause=0.5,
        worth_waiting=worth_waiting,
    )
    assert consulted == []


def test_waits_sharing_a_deadline_end_together(ask: Asker) -> None:
    clock = FakeClock()
    deadline = Deadline.after(2.0, clock)
    first = Numbered(clock)
    ask(first, lambda _: False, deadline, pause=0.5)
    assert clock.now == 2.0
    second = Numbered(clock)
    ask(second, lambda _: False, deadline, pause=0.5)  # started at the deadline: asked once
    assert second.asked_at == [2.0]
