"""The one readiness judgement shared by upgrade's gate, certs renew and verify."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from provisioner.clusterapi import (
    admin_kubeconfig_path,
    condition,
    is_ready,
    node_not_ready,
    parse_time,
)
from provisioner.state import ClusterState

SWITCH = dt.datetime(2026, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def _node(status: str | None, beat: str | None = "2026-05-01T12:00:05Z") -> dict[str, Any]:
    conditions: list[dict[str, Any]] = [{"type": "MemoryPressure", "status": "False"}]
    if status is not None:
        conditions.append({"type": "Ready", "status": status, "lastHeartbeatTime": beat})
    return {"metadata": {"name": "w1"}, "status": {"conditions": conditions}}


@pytest.mark.parametrize(
    ("node", "reason"),
    [
        (None, "missing"),
        (_node(None), "no-condition"),
        (_node("False"), "not-ready"),
        (_node("Unknown"), "not-ready"),
        (_node("True", "2026-05-01T11:59:59Z"), "stale"),
        (_node("True", None), "stale"),
        (_node("True", "yesterday"), "stale"),
        (_node("True", "2026-05-01T12:00:00Z"), None),
        (_node("True"), None),
    ],
)
def test_node_not_ready_names_why(node: dict[str, Any] | None, reason: str | None) -> None:
    found = node_not_ready(node, since=SWITCH)
    assert (found.reason if found else None) == reason


def test_a_not_ready_verdict_carries_the_condition_for_messages() -> None:
    found = node_not_ready(_node("False"), since=SWITCH)
    assert found is not None
    assert found.ready is not None
    assert found.ready["status"] == "False"


def test_timestamps_without_a_zone_are_utc_and_junk_is_none() -> None:
    assert parse_time("2026-05-01T12:00:00") == SWITCH
    assert parse_time("2026-05-01T14:00:00+02:00") == SWITCH
    assert parse_time(17) is None
    assert parse_time("") is None


def test_ready_of_pods_and_nodes_ignores_other_conditions() -> None:
    assert is_ready(_node("True"))
    assert not is_ready(_node(None))
    assert not is_ready({"status": {"conditions": ["junk", {"type": "Ready"}]}})
    assert condition({"status": None}, "Ready") is None


def test_the_admin_kubeconfig_lives_in_the_states_kubeconfig_dir(tmp_path: Path) -> None:
    state = ClusterState(tmp_path / "c")
    assert admin_kubeconfig_path(state) == state.kubeconfig_dir / "admin.conf"
