"""verify's patient waits: past its first ``within`` a wait goes on while the unit behind the
component demonstrably starts (active, the same main process as at the previous look), up to a
limit; a unit that stopped, auto-restarts or crashed in between ends it, as does a host that
cannot be asked. A slow host (a VM under TCG) is waited for; a broken component is reported
after ``within`` as before."""

from __future__ import annotations

from provisioner.verify.units import PATIENT_AT_MOST, UnitWatch, deadline_for
from provisioner.verify.waiting import Deadline, Patience, ask_until
from tests.harness.verify_clock import FakeClock


class Looks:
    """A UnitLook answering from a script (the last answer repeats); notes each look."""

    def __init__(self, *answers: tuple[str, str] | None) -> None:
        self.answers = list(answers)
        self.looked: list[tuple[str, str]] = []

    def __call__(self, host: str, unit: str) -> tuple[str, str] | None:
        self.looked.append((host, unit))
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def _wait(clock: FakeClock, deadline: Deadline | Patience, ready_at: float) -> float:
    """Wait (0.5 s pauses) for a check that holds from ``ready_at``; when the wait ended."""
    ask_until(lambda: clock.now >= ready_at, bool, deadline, pause=0.5)
    return clock.now


def test_a_wait_goes_on_past_its_minute_while_the_unit_runs_the_same_process() -> None:
    clock = FakeClock()
    looks = Looks(("active", "812"))
    watch = UnitWatch(looks)
    deadline = deadline_for(watch, 60.0, lambda: [("n1", "berth-ingress.service")], clock)
    assert _wait(clock, deadline, ready_at=200.0) == 200.0
    # looked at when each minute was up: at 60 (the first look), 120, 180
    assert looks.looked == [("n1", "berth-ingress.service")] * 3


def test_without_a_watch_the_wait_ends_after_its_minute_as_before() -> None:
    clock = FakeClock()
    assert _wait(clock, deadline_for(None, 60.0, lambda: [], clock), ready_at=200.0) == 60.0


def test_a_unit_whose_process_changed_crashed_meanwhile_and_ends_the_wait() -> None:
    clock = FakeClock()
    watch = UnitWatch(Looks(("active", "812"), ("active", "950")))
    deadline = deadline_for(watch, 60.0, lambda: [("n1", "berth-agent.service")], clock)
    assert _wait(clock, deadline, ready_at=500.0) == 120.0


def test_a_unit_not_active_or_a_host_that_cannot_be_asked_ends_the_wait_at_its_minute() -> None:
    for answer in (("activating", "0"), ("failed", "0"), ("inactive", "0"), None):
        clock = FakeClock()
        watch = UnitWatch(Looks(answer))
        deadline = deadline_for(watch, 60.0, lambda: [("n2", "berth-agent.service")], clock)
        assert _wait(clock, deadline, ready_at=500.0) == 60.0, answer


def test_every_unit_the_wait_depends_on_must_progress() -> None:
    clock = FakeClock()
    answers = {"n1": ("active", "5"), "n2": ("failed", "0")}
    watch = UnitWatch(lambda host, _unit: answers[host])
    targets = [("n1", "berth-agent.service"), ("n2", "berth-agent.service")]
    assert _wait(clock, deadline_for(watch, 60.0, lambda: targets, clock), ready_at=500.0) == 60.0
    clock = FakeClock()
    assert _wait(clock, deadline_for(watch, 60.0, lambda: [], clock), ready_at=500.0) == 60.0


def test_a_unit_that_runs_but_never_gets_there_is_given_up_at_the_limit() -> None:
    clock = FakeClock()
    watch = UnitWatch(Looks(("active", "812")))
    deadline = deadline_for(watch, 60.0, lambda: [("n1", "berth-ingress.service")], clock)
    assert _wait(clock, deadline, ready_at=10 * PATIENT_AT_MOST) == PATIENT_AT_MOST


def test_patience_asks_progress_only_when_its_deadline_is_reached() -> None:
    clock = FakeClock()
    asked: list[float] = []

    def progressing() -> bool:
        asked.append(clock.now)
        return len(asked) < 3

    patience = Patience(10.0, progressing, at_most=100.0, clock=clock)
    assert _wait(clock, patience, ready_at=1000.0) == 30.0
    assert asked == [10.0, 20.0, 30.0]
    assert patience.extensions == 2
