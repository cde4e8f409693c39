"""berth's etcd policy: one etcd release shipped to every member, checked by preflight.

Debian 12 packages etcd 3.4 and Debian 13 etcd 3.5; etcd lets members of two minor versions
share a cluster only for the length of a rolling upgrade, one member at a time. So every etcd
member (the control-plane hosts of an etcd cluster) installs the same ``.deb`` files: those of
the member release whose etcd is newest (:func:`cluster_etcd`). That is allowed only where the
platforms table says the release's etcd packages install (``Platform.etcd_runs_on``); any other
combination is refused. Workers may mix releases freely.

An existing cluster whose members already run another etcd minor than the one the spec now
needs (a Debian 12 cluster on etcd 3.4 gaining a Debian 13 member) is refused too: berth does
not upgrade, nor downgrade, etcd's minor version in place.

Refused in preflight, before anything changes (the etcd phase checks again when it plans).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from provisioner import platforms
from provisioner.connectors.base import Connector, HostName
from provisioner.facts.packages import Packages
from provisioner.facts.system import OsRelease, PythonVersion
from provisioner.workflow import Phase, PhaseData

SERVER_PACKAGE = "etcd-server"


def cluster_etcd(found: Mapping[str, platforms.Platform]) -> platforms.Platform:
    """The release whose etcd every member installs: the members' newest etcd (on a tie, the
    newer release of the platforms table). ``found``: each etcd member's platform."""
    if not found:
        raise ValueError("no etcd members")
    order = {p.codename: i for i, p in enumerate(platforms.SUPPORTED)}
    return max(found.values(), key=lambda p: (p.etcd_version, order.get(p.codename, -1)))


def _minor(debian_version: str) -> str:
    """``3.4`` of a Debian version ``3.4.23-4+b4`` (an epoch ``1:`` is left out)."""
    upstream = debian_version.split(":", 1)[-1]
    return ".".join(upstream.split(".")[:2])


def _hosts(names: list[str]) -> str:
    return ", ".join(sorted(names))


def etcd_release_problems(
    found: Mapping[str, platforms.Platform],
    installed: Mapping[str, str | None] | None = None,
) -> list[str]:
    """The policy's problems. ``found``: each etcd member's platform; ``installed``: the
    ``etcd-server`` version each member has installed (``None``: not installed)."""
    if not found:
        return []
    source = cluster_etcd(found)
    problems = []
    cannot = [name for name, p in found.items() if p.codename not in source.etcd_runs_on]
    if cannot:
        listing = ", ".join(f"{name} ({found[name].name})" for name in sorted(cannot))
        names = {p.codename: p.name for p in platforms.SUPPORTED}
        runs_on = ", ".join(names.get(c, c) for c in source.etcd_runs_on)
        problems.append(
            f"every etcd member runs the newest etcd of the members' releases, {source.name}'s"
            f" etcd {source.etcd}, but its packages are not known to install on {listing}:"
            f" put the control-plane hosts on releases that run it ({runs_on}), or move"
            f" {_hosts(cannot)} off the control plane"
        )
    running = {name: version for name, version in (installed or {}).items() if version is not None}
    other = [name for name, version in running.items() if _minor(version) != source.etcd]
    if other:
        listing = ", ".join(f"{name} (etcd-server {running[name]})" for name in sorted(other))
        newest = [name for name, p in found.items() if p.etcd == source.etcd]
        problems.append(
            f"etcd members already run another etcd minor than the etcd {source.etcd} of"
            f" {source.name} ({_hosts(newest)}) that every member now needs: {listing};"
            " berth does not upgrade or downgrade etcd's minor version in place: keep the"
            " control plane on releases whose etcd is the one running (move"
            f" {_hosts(newest)} off the control plane), or build a new cluster"
        )
    return problems


def with_etcd_release_check(preflight: Phase) -> Phase:
    """``preflight`` plus the policy above (nothing unless the datastore is etcd)."""

    def check(data: PhaseData, live: Mapping[HostName, Connector]) -> list[str]:
        problems = preflight.check(data, live) if preflight.check else []
        spec = data.spec
        if spec is None or not spec.uses_etcd:
            return problems
        found: dict[str, platforms.Platform] = {}
        installed: dict[str, str | None] = {}
        for host in spec.control_plane_hosts:
            if host.name not in live:
                continue
            facts = data.host_facts(HostName(host.name), (OsRelease(), PythonVersion(), Packages()))
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
            installed[host.name] = facts.get(Packages()).get(SERVER_PACKAGE)
        return problems + etcd_release_problems(found, installed)

    return dataclasses.replace(preflight, check=check)
