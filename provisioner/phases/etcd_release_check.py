"""Preflight's check of berth's etcd policy: one etcd release per cluster.

Debian 12 packages etcd 3.4 and Debian 13 etcd 3.5; etcd lets members of two minor versions
share a cluster only for the length of a rolling upgrade, one member at a time. Each member runs
its own release's package, so the etcd members (the control-plane hosts of an etcd cluster) must
all be on releases packaging the same etcd minor. Workers may mix releases freely. Refused in
preflight, before anything changes (the etcd phase checks again when it plans).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from provisioner import platforms
from provisioner.connectors.base import Connector, HostName
from provisioner.facts.system import OsRelease, PythonVersion
from provisioner.workflow import Phase, PhaseData


def etcd_release_problems(found: Mapping[str, platforms.Platform]) -> list[str]:
    """``found``: each etcd member's platform."""
    if len({p.etcd for p in found.values()}) <= 1:
        return []
    listing = ", ".join(f"{name} ({p.name}: etcd {p.etcd})" for name, p in sorted(found.items()))
    return [
        f"the etcd members run different etcd releases: {listing}; berth keeps one etcd"
        " release per cluster: put every control-plane host on the same Debian release"
    ]


def with_etcd_release_check(preflight: Phase) -> Phase:
    """``preflight`` plus the policy above (nothing unless the datastore is etcd)."""

    def check(data: PhaseData, live: Mapping[HostName, Connector]) -> list[str]:
        problems = preflight.check(data, live) if preflight.check else []
        spec = data.spec
        if spec is None or not spec.uses_etcd:
            return problems
        found: dict[str, platforms.Platform] = {}
        for host in spec.control_plane_hosts:
            if host.name not in live:
                continue
            facts = data.host_facts(HostName(host.name), (OsRelease(), PythonVersion()))
            os_info, python = facts.get(OsRelease()), facts.get(PythonVersion())
            if os_info is None:
                continue  # preflight names it already
            try:
                found[host.name] = platforms.match(
                    os_info.id,
                    os_info.version_id,
                    os_info.codename,
                    python.version if python is not None else None,
                )
            except platforms.UnsupportedPlatform:
                continue  # preflight names it already
        return problems + etcd_release_problems(found)

    return dataclasses.replace(preflight, check=check)
