"""Is a host clean of berth? (after ``berth destroy`` or the removal of a host): no unit, file,
listening port or process, and nothing of a runc node's pods and network (bridge, nftables
table, routes, network namespaces, containers, CNI IP allocations); with the host's footprint
(:mod:`provisioner.footprint`), also none of the packages berth installed and none of the shared
paths and system accounts that were not there before berth, and no mount left in them."""

from __future__ import annotations

from typing import Any

from provisioner import hostlayout as layout
from provisioner.connectors.base import Connector
from provisioner.facts.base import Fact
from provisioner.facts.files import PathInfo
from provisioner.facts.gather import gather
from provisioner.facts.packages import Packages
from provisioner.facts.users import Groups, Users
from provisioner.footprint import HostFootprint, MountPoints, NftTables, footprint_problems
from provisioner.operations.cluster import NODE_LEFTOVER_PROBE
from provisioner.operations.kernel import module_file, sysctl_file
from provisioner.verify.testinfra_backend import testinfra_host


def kernel_files() -> tuple[str, ...]:
    """The files that load a runc node's modules and set its sysctls at boot."""
    modules = tuple(module_file(name) for name, _path in layout.NODE_MODULES)
    return modules + tuple(sysctl_file(key) for key, _value in layout.NODE_SYSCTLS)


def clean_problems(
    connector: Connector,
    *,
    keep_data: bool = False,
    keep_packages: bool = False,
    footprint: HostFootprint | None = None,
) -> list[str]:
    """What berth left on the host (empty when it is clean); ``footprint``: what the host's
    footprint said before the teardown."""
    host = testinfra_host(connector)
    problems: list[str] = []
    for unit in layout.TEARDOWN_UNITS:
        service = host.service(unit)
        if service.is_running:
            problems.append(f"unit {unit} is still running")
        if host.file(f"{layout.UNIT_DIR}/{unit}").exists:
            problems.append(f"unit file {layout.UNIT_DIR}/{unit} is still there")
    for path in layout.INSTALL_PATHS + (() if keep_data else layout.DATA_PATHS) + kernel_files():
        if host.file(path).exists:
            problems.append(f"{path} is still there")
    for port in (layout.API_PORT, layout.AGENT_PORT, *layout.ETCD_PORTS):
        if host.socket(f"tcp://0.0.0.0:{port}").is_listening:
            problems.append(f"port {port}/tcp is still listening")
    for item in host.run(NODE_LEFTOVER_PROBE).stdout.splitlines():
        if item.strip() and not (keep_data and item == f"state {layout.RUNTIME_STATE}"):
            problems.append(f"{item.strip()} still there")
    own = layout.INSTALL_PATHS + (() if keep_data else layout.DATA_PATHS)
    if footprint is not None:
        # what the footprint asks about, read in one round-trip
        tables = NftTables() if footprint.nft_before is not None else None
        paths = PathInfo(footprint.created_paths) if footprint.created_paths else None
        packages = (
            Packages(footprint.packages, unsynced_missing=False) if footprint.packages else None
        )
        accounts = footprint.absent_accounts
        users = Users(accounts) if accounts else None
        groups = Groups(accounts) if accounts else None
        wanted: list[Fact[Any]] = [MountPoints()]
        wanted += [f for f in (tables, paths, packages, users, groups) if f is not None]
        facts = gather(connector, wanted)
        now = facts.get(tables) if tables else None  # None: not recorded, or cannot be read
        problems += footprint_problems(
            footprint,
            packages=facts.get(packages) if packages else {},
            paths=facts.get(paths) if paths else {},
            mounts=facts.get(MountPoints()),
            keep_packages=keep_packages,
            own_paths=own,
            tables=now or (),
            users=facts.get(users) if users else None,
            groups=facts.get(groups) if groups else None,
        )
    leftover = host.run("pgrep -a -f '^/usr/bin/python3 -m berth[.]' || true").stdout.strip()
    if leftover:
        problems.append(f"berth processes still running: {leftover.splitlines()[0]}")
    return problems
