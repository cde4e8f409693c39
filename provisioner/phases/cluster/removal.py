"""Hosts that left the spec: remembered from the last apply, so the next one can clean them.

``<state>/hosts.json`` records how each host of the last successful apply was reached. When a
host is no longer in the spec, the ``nodes`` phase drains and deletes its Node, then removes
everything berth installed there (the same steps as ``berth destroy``) and forgets it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from provisioner.connectors.base import HostKeyPolicy, HostName, HostTarget
from provisioner.phases.cluster.context import spec_of, state_of
from provisioner.spec import ClusterSpec
from provisioner.state import ClusterState
from provisioner.workflow import PhaseData
from provisioner.workflow.inventory import inventory_from_spec

RECORD = "hosts.json"


def _record_path(state: ClusterState) -> Path:
    return state.root / RECORD


def recorded_hosts(state: ClusterState) -> dict[str, HostTarget]:
    """The hosts of the last apply, as they were reached (empty before the first apply)."""
    try:
        raw: dict[str, dict[str, Any]] = json.loads(_record_path(state).read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for name, item in raw.items():
        out[name] = HostTarget(
            name=HostName(name),
            address=item["address"],
            port=int(item["port"]),
            user=item["user"],
            identity_file=Path(item["identity_file"]) if item.get("identity_file") else None,
            known_hosts=Path(item["known_hosts"]) if item.get("known_hosts") else None,
            host_key_policy=HostKeyPolicy(item.get("host_key_policy", "strict")),
            connect_timeout=float(item.get("connect_timeout", 10.0)),
            retries=int(item.get("retries", 3)),
            roles=tuple(item.get("roles", ())),
        )
    return out


def _write(state: ClusterState, hosts: dict[str, HostTarget]) -> None:
    data = {
        name: {
            "address": t.address,
            "port": t.port,
            "user": t.user,
            "identity_file": str(t.identity_file) if t.identity_file else None,
            "known_hosts": str(t.known_hosts) if t.known_hosts else None,
            "host_key_policy": str(t.host_key_policy),
            "connect_timeout": t.connect_timeout,
            "retries": t.retries,
            "roles": list(t.roles),
        }
        for name, t in sorted(hosts.items())
    }
    state.write_private(_record_path(state), (json.dumps(data, indent=1) + "\n").encode())


def record_hosts(state: ClusterState, spec: ClusterSpec) -> None:
    """Remember every host of ``spec`` (after a successful apply), plus hosts that left the
    spec but could not be cleaned yet (the next apply tries again)."""
    inventory = inventory_from_spec(spec, known_hosts=state.known_hosts)
    hosts = {name: t for name, t in recorded_hosts(state).items() if name not in spec_names(spec)}
    hosts.update({str(h.name): h for h in inventory.hosts})
    _write(state, hosts)


def spec_names(spec: ClusterSpec) -> set[str]:
    return {h.name for h in spec.hosts}


def forget_host(state: ClusterState, name: str) -> None:
    hosts = recorded_hosts(state)
    hosts.pop(name, None)
    _write(state, hosts)


def remove_host(data: PhaseData, name: str, report: Callable[[str], None]) -> bool:
    """Clean host ``name`` (from the record) like ``berth destroy`` would; whether it is now
    clean (an unreachable host stays recorded, and the next apply tries again)."""
    target = recorded_hosts(state_of(data)).get(name)
    if target is None:
        report(f"host {name}: no record of how to reach it; clean it with `berth destroy`")
        return True
    if data.remove_hosts is None:
        report(f"host {name}: this run cannot remove hosts; clean it with `berth destroy`")
        return False
    result = data.remove_hosts(spec_of(data, "nodes").name, [target], data.cache_dir)
    for line in result.lines():
        report(f"host {name}: {line}")
    return result.ok
