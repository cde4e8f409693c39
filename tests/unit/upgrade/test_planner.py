"""The order of a rolling upgrade."""

from __future__ import annotations

import pytest

from provisioner.upgrade.planner import PlannedHost, describe_plan, plan_batches

HOSTS = [
    PlannedHost("w1", False),
    PlannedHost("cp1", True),
    PlannedHost("w2", False),
    PlannedHost("cp2", True),
    PlannedHost("w3", False),
    PlannedHost("cp3", True),
]
OLD, NEW = "0.1.0-aaaaaaaaaaaa", "0.2.0-bbbbbbbbbbbb"


def test_control_plane_one_at_a_time_then_workers_in_batches() -> None:
    running: dict[str, str | None] = dict.fromkeys([h.name for h in HOSTS], OLD)
    batches = plan_batches(HOSTS, running=running, target=NEW, max_unavailable=2)
    assert batches == [["cp1"], ["cp2"], ["cp3"], ["w1", "w2"], ["w3"]]
    one = plan_batches(HOSTS, running=running, target=NEW, max_unavailable=1)
    assert one[3:] == [["w1"], ["w2"], ["w3"]]


def test_hosts_on_the_target_are_left_out() -> None:
    running: dict[str, str | None] = {
        "cp1": NEW, "cp2": OLD, "cp3": OLD, "w1": NEW, "w2": OLD, "w3": OLD,
    }  # fmt: skip
    batches = plan_batches(HOSTS, running=running, target=NEW, max_unavailable=5)
    assert batches == [["cp2"], ["cp3"], ["w2", "w3"]]
    done: dict[str, str | None] = dict.fromkeys(running, NEW)
    assert plan_batches(HOSTS, running=done, target=NEW, max_unavailable=1) == []
    assert describe_plan([], target=NEW) == [f"every host already runs {NEW}; nothing to upgrade"]


def test_max_unavailable_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_batches(HOSTS, running={}, target=NEW, max_unavailable=0)
