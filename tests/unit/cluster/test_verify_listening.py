"""verify's host check of a port that must listen waits for it to start listening (an apply
verifies right after its agents phase; an agent registers its Node before it listens)."""

from __future__ import annotations

from collections.abc import Callable

from provisioner.verify.hosts import holds_within, port_listens


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_port_that_starts_listening_late_passes() -> None:
    clock = FakeClock()
    answers = iter([False, False, False, True])
    assert holds_within(lambda: next(answers), 60.0, clock=clock.monotonic, sleep=clock.sleep)
    assert clock.now == 1.5  # asked four times, half a second apart


def test_a_port_that_never_listens_fails_at_the_deadline() -> None:
    clock = FakeClock()
    asked = []

    def never() -> bool:
        asked.append(clock.now)
        return False

    assert not holds_within(never, 60.0, clock=clock.monotonic, sleep=clock.sleep)
    assert clock.now <= 60.0
    assert len(asked) == 121  # every half second from 0 to 60 s


def test_a_listening_port_is_seen_at_the_first_look() -> None:
    clock = FakeClock()
    assert holds_within(lambda: True, 60.0, clock=clock.monotonic, sleep=clock.sleep)
    assert clock.now == 0.0


def test_only_a_port_whose_unit_runs_is_waited_for() -> None:
    waited: list[bool] = []

    def wait(listening: Callable[[], bool]) -> bool:
        waited.append(True)
        return True  # the port came up while we waited

    closed = lambda: False  # noqa: E731 - a probe that finds nothing listening
    # the unit runs: its port may still be starting
    assert port_listens(closed, should=True, unit_running=True, wait=wait)
    assert waited == [True]
    # the unit is stopped: looked at once, reported at once (the unit check says why)
    assert not port_listens(closed, should=True, unit_running=False, wait=wait)
    # a port that must stay closed is never waited for
    assert not port_listens(closed, should=False, unit_running=True, wait=wait)
    assert waited == [True]
