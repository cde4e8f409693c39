"""verify's host checks wait for what is still starting (a port that must listen, berth-dns's
first zone) only while the unit behind it runs (an apply verifies right after its agents
phase; an agent registers its Node before it listens), and record what the unit checks find
for the cluster checks' waits."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import testinfra.host

from provisioner import hostlayout as layout
from provisioner.connectors.base import HostName, HostTarget
from provisioner.verify.hosts import (
    HostExpectations,
    holds_while_running,
    port_listens,
    unit_checks,
)
from provisioner.verify.units import UnitStates
from tests.harness.verify_clock import FakeClock


class Probe:
    """Answers False until its ``n``-th ask; notes when it was asked."""

    def __init__(self, clock: FakeClock, yes_from: int | None) -> None:
        self.clock = clock
        self.yes_from = yes_from
        self.asked_at: list[float] = []

    def __call__(self) -> bool:
        self.asked_at.append(self.clock.now)
        return self.yes_from is not None and len(self.asked_at) >= self.yes_from


def test_a_port_that_starts_listening_late_passes() -> None:
    clock = FakeClock()
    probe = Probe(clock, yes_from=4)
    assert port_listens(probe, should=True, unit_running=True, clock=clock)
    assert probe.asked_at == [0.0, 0.5, 1.0, 1.5]  # asked four times, half a second apart


def test_a_port_that_never_listens_fails_at_the_deadline() -> None:
    clock = FakeClock()
    probe = Probe(clock, yes_from=None)
    assert not port_listens(probe, should=True, unit_running=True, clock=clock)
    assert clock.now == 60.0
    assert len(probe.asked_at) == 121  # every half second from 0 to 60 s


def test_a_listening_port_is_seen_at_the_first_look() -> None:
    clock = FakeClock()
    probe = Probe(clock, yes_from=1)
    assert port_listens(probe, should=True, unit_running=True, clock=clock)
    assert probe.asked_at == [0.0]


def test_a_stopped_units_port_is_looked_at_once() -> None:
    clock = FakeClock()
    probe = Probe(clock, yes_from=2)  # it would listen at the second look: never taken
    assert not port_listens(probe, should=True, unit_running=False, clock=clock)
    assert probe.asked_at == [0.0]
    assert clock.pauses == []


def test_a_port_that_must_stay_closed_is_looked_at_once() -> None:
    clock = FakeClock()
    probe = Probe(clock, yes_from=2)
    assert not port_listens(probe, should=False, unit_running=True, clock=clock)
    assert probe.asked_at == [0.0]


def test_dns_is_asked_again_only_while_berth_dns_runs() -> None:
    clock = FakeClock()
    probe = Probe(clock, yes_from=3)  # SERVFAIL until its first zone
    assert holds_while_running(probe, unit_running=True, clock=clock)
    assert len(probe.asked_at) == 3
    stopped = Probe(clock, yes_from=3)
    assert not holds_while_running(stopped, unit_running=False, clock=clock)
    assert len(stopped.asked_at) == 1


def _host(running: set[str]) -> testinfra.host.Host:
    """A host whose berth units are all enabled; ``running`` run."""

    def service(unit: str) -> SimpleNamespace:
        return SimpleNamespace(is_running=unit in running, is_enabled=True)

    return cast(testinfra.host.Host, SimpleNamespace(service=service))


def test_the_unit_checks_tell_the_cluster_checks_what_they_found() -> None:
    want = HostExpectations(
        target=HostTarget(name=HostName("n2"), address="10.0.0.12", roles=("worker",)),
        files=(),
        bundle_id="b",
        sans=(),
    )
    units = UnitStates()
    results, running = unit_checks(_host({layout.DNS}), want, units)  # a worker, its agent stopped
    failed = {r.name: r.detail for r in results if not r.ok}
    assert failed == {f"unit {layout.AGENT} active+enabled": "NOT active, enabled"}
    assert layout.AGENT not in running
    assert layout.DNS in running
    assert units.stopped("n2", layout.AGENT)
    assert units.why_not_waited("n2", layout.AGENT) == f"{layout.AGENT} is not running on n2"
    assert not units.stopped("n2", layout.DNS)
    assert not units.stopped("n1", layout.AGENT)  # not looked at (yet): it may be starting
    assert units.why_not_waited("n1", layout.AGENT) == ""
