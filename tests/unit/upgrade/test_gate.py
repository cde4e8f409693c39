"""The node health gate's evaluation."""

from __future__ import annotations

import datetime as dt
from typing import Any

from provisioner.upgrade.gate import GateFailure, HostObservation, evaluate, node_ready_failure

SWITCH = dt.datetime(2026, 11, 22, 1, 0, 0, 400000, tzinfo=dt.UTC)
NEW = "0.2.0-bbbbbbbbbbbb"


def node(status: str = "True", beat: str = "2026-11-22T01:00:05Z", **extra: Any) -> Any:
    cond = {"type": "Ready", "status": status, "lastHeartbeatTime": beat, **extra}
    return {"metadata": {"name": "w1"}, "status": {"conditions": [cond]}}


def test_ready_after_the_switch_passes() -> None:
    assert node_ready_failure(node(), since=SWITCH) is None
    # heartbeats have whole seconds: the switch's own second counts
    assert node_ready_failure(node(beat="2026-11-22T01:00:00Z"), since=SWITCH) is None


def test_a_ready_left_over_from_the_old_agent_does_not_count() -> None:
    failure = node_ready_failure(node(beat="2026-11-22T00:59:50Z"), since=SWITCH)
    assert failure is not None
    assert failure.check == "node-ready"
    assert "stale" in failure.detail
    assert "00:59:50" in failure.detail


def test_not_ready_names_the_reason_and_message() -> None:
    failure = node_ready_failure(
        node("False", reason="KubeletNotReady", message="runtime down"), since=SWITCH
    )
    assert failure == GateFailure("node-ready", "Ready=False (KubeletNotReady: runtime down)")
    assert node_ready_failure(None, since=SWITCH) == GateFailure(
        "node-ready", "the Node object does not exist"
    )


def test_units_bundles_and_readyz_are_all_checked() -> None:
    seen = HostObservation(
        unit_states={"berth-apiserver.service": "active", "berth-agent.service": "failed"},
        unit_bundles={
            "berth-apiserver.service": frozenset({"0.1.0-aaaaaaaaaaaa"}),
            "berth-agent.service": frozenset(),
        },
        node=node(),
        readyz=(500, "[-]datastore failed"),
    )
    failures = evaluate(seen, bundle=NEW, since=SWITCH, control_plane=True)
    assert [str(f) for f in failures] == [
        "units: berth-agent.service is failed",
        f"bundle: berth-apiserver.service runs 0.1.0-aaaaaaaaaaaa, not {NEW}",
        "apiserver-readyz: HTTP 500: [-]datastore failed",
    ]


def test_a_healthy_worker_passes() -> None:
    seen = HostObservation(
        unit_states={"berth-agent.service": "active"},
        unit_bundles={"berth-agent.service": frozenset({NEW})},
        node=node(),
    )
    assert evaluate(seen, bundle=NEW, since=SWITCH, control_plane=False) == []
    assert [f.check for f in evaluate(seen, bundle=NEW, since=SWITCH, control_plane=True)] == [
        "apiserver-readyz"
    ]
