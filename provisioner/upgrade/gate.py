"""The health gate a node passes after its switch to a new bundle (a subset of ``berth verify``).

A node passes when, within the gate timeout:

* ``units``: every berth unit of the host is ``active`` under systemd;
* ``bundle``: every one of those processes actually runs the expected bundle (the real paths of
  the files it mapped, from ``/proc/<pid>/maps``, lie under ``/opt/berth/versions/<bundle>/``),
  so a unit that did not restart, or restarted into the old tree, is caught;
* ``node-ready``: its Node is ``Ready=True`` with a heartbeat posted after the switch, so an
  old ``Ready`` left over from before the restart does not count;
* ``apiserver-readyz`` (control-plane hosts): its API server answers ``/readyz`` with 200.

The evaluation of each observation is pure (this module); gathering them is the cluster
adapter's job (:mod:`provisioner.upgrade.cluster`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provisioner.clusterapi import node_not_ready

Obj = dict[str, Any]


@dataclass(frozen=True)
class GateFailure:
    """One failed check: its name and what was seen."""

    check: str
    detail: str

    def __str__(self) -> str:
        return f"{self.check}: {self.detail}"


@dataclass(frozen=True)
class HostObservation:
    """What the gate saw on one host at one moment."""

    unit_states: Mapping[str, str]
    """unit -> ``systemctl is-active`` answer"""
    unit_bundles: Mapping[str, frozenset[str]]
    """unit -> bundle ids its main process has files mapped from"""
    node: Obj | None
    readyz: tuple[int, str] | None = None
    """(HTTP status, body) of the host's API server ``/readyz``; None when not a control plane"""


def node_ready_failure(node: Obj | None, *, since: dt.datetime) -> GateFailure | None:
    """Why ``node`` does not count as Ready *after* ``since`` (None when it does)."""
    # heartbeats carry whole seconds: allow the second the switch happened in
    problem = node_not_ready(node, since=since.replace(microsecond=0))
    if problem is None:
        return None
    ready = problem.ready or {}
    if problem.reason == "missing":
        return GateFailure("node-ready", "the Node object does not exist")
    if problem.reason == "no-condition":
        return GateFailure("node-ready", "the Node has no Ready condition")
    if problem.reason == "not-ready":
        reason = ready.get("reason") or "no reason given"
        message = ready.get("message") or ""
        return GateFailure(
            "node-ready",
            f"Ready={ready.get('status')} ({reason}{': ' + message if message else ''})",
        )
    return GateFailure(
        "node-ready",
        f"Ready=True is stale (last heartbeat {ready.get('lastHeartbeatTime')}, "
        f"switch at {since.isoformat(timespec='seconds')}): the new agent has not reported",
    )


def evaluate(
    seen: HostObservation, *, bundle: str, since: dt.datetime, control_plane: bool
) -> list[GateFailure]:
    """Every failed check of one observation (empty: the host passes)."""
    failures = []
    for unit, state in sorted(seen.unit_states.items()):
        if state != "active":
            failures.append(GateFailure("units", f"{unit} is {state}"))
    for unit, bundles in sorted(seen.unit_bundles.items()):
        if seen.unit_states.get(unit) != "active":
            continue
        if bundles != frozenset({bundle}):
            runs = ", ".join(sorted(bundles)) or "no berth bundle"
            failures.append(GateFailure("bundle", f"{unit} runs {runs}, not {bundle}"))
    ready = node_ready_failure(seen.node, since=since)
    if ready is not None:
        failures.append(ready)
    if control_plane:
        if seen.readyz is None:
            failures.append(GateFailure("apiserver-readyz", "no answer from /readyz"))
        elif seen.readyz[0] != 200:
            status, body = seen.readyz
            failures.append(GateFailure("apiserver-readyz", f"HTTP {status}: {body[:200]}"))
    return failures
