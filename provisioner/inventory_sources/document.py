"""Build a Cluster document from a plain list of hosts (what every inventory source produces).

Role defaults, when a source gives none: the hosts named as control planes (or else the first
host) get ``control-plane``; every other host gets ``worker``; a cluster of control-plane hosts
only lets them run workloads too. More than one control-plane host selects the etcd datastore.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from provisioner.spec.model import API_VERSION, CONTROL_PLANE, KIND, WORKER


@dataclass(frozen=True)
class HostEntry:
    """One host as an inventory source reports it."""

    name: str
    address: str
    roles: tuple[str, ...] = ()
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    ssh_address: str | None = None  # when SSH goes elsewhere (a NAT port forward)
    labels: dict[str, str] = field(default_factory=dict)


def assign_roles(
    hosts: Sequence[HostEntry], control_planes: Collection[str] = ()
) -> list[tuple[str, ...]]:
    """The roles of each host: its own, or the defaults described in the module docstring."""
    chosen = set(control_planes) or ({hosts[0].name} if hosts else set())
    roles: list[tuple[str, ...]] = []
    everyone_controls = all(h.roles == () and h.name in chosen for h in hosts)
    for host in hosts:
        if host.roles:
            roles.append(host.roles)
        elif host.name in chosen:
            roles.append((CONTROL_PLANE, WORKER) if everyone_controls else (CONTROL_PLANE,))
        else:
            roles.append((WORKER,))
    return roles


def build_document(
    name: str,
    hosts: Sequence[HostEntry],
    *,
    control_planes: Collection[str] = (),
    user: str | None = None,
    identity_file: str | None = None,
    known_hosts_file: str | None = None,
    host_key_policy: str = "strict",
) -> dict[str, Any]:
    """A Cluster document (plain data, camelCase keys) for ``hosts``.

    SSH settings shared by every host move up to ``spec.ssh``; the rest stay per host.
    """
    roles = assign_roles(hosts, control_planes)
    shared_user = user or _shared(h.user for h in hosts)
    shared_key = identity_file or _shared(h.identity_file for h in hosts)
    ssh: dict[str, Any] = {"user": shared_user or "root"}
    if shared_key:
        ssh["identityFile"] = shared_key
    if known_hosts_file:
        ssh["knownHostsFile"] = known_hosts_file
    ssh["hostKeyPolicy"] = host_key_policy
    host_docs: list[dict[str, Any]] = []
    for host, host_roles in zip(hosts, roles, strict=True):
        doc: dict[str, Any] = {
            "name": host.name,
            "address": host.address,
            "roles": list(host_roles),
        }
        if host.labels:
            doc["labels"] = dict(host.labels)
        overrides: dict[str, Any] = {}
        if host.ssh_address and host.ssh_address != host.address:
            overrides["address"] = host.ssh_address
        if host.port and host.port != 22:
            overrides["port"] = host.port
        if host.user and host.user != ssh["user"]:
            overrides["user"] = host.user
        if host.identity_file and host.identity_file != shared_key:
            overrides["identityFile"] = host.identity_file
        if overrides:
            doc["ssh"] = overrides
        host_docs.append(doc)
    control_plane_count = sum(CONTROL_PLANE in r for r in roles)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {
            "ssh": ssh,
            "hosts": host_docs,
            "datastore": {"type": "etcd" if control_plane_count > 1 else "sqlite"},
        },
    }


def _shared(values: Any) -> str | None:
    distinct = set(values)
    if len(distinct) == 1:
        only = distinct.pop()
        return only if isinstance(only, str) else None
    return None
