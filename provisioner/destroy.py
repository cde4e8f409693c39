"""``berth destroy``: stop and remove everything berth put on the hosts, then check each host
is clean (testinfra). Idempotent (a second run changes nothing), works on half-installed
clusters (every step tolerates what is already gone), and skips unreachable hosts, naming them.
``keep_data`` keeps ``/var/lib/berth`` (the datastore, and the runtime's image store).
A runc node is torn down with ``python3 -m berth.runtime reset --purge`` after its agent stopped:
every pod (CNI DEL), orphaned runc container, berth's nftables table, host-gw route and the pod
bridge go. Then what the host's footprint (:mod:`provisioner.footprint`, read before anything is
removed) says berth added goes: the packages it installed (unless ``keep_packages``) and the
shared paths that were not there before berth; berth's own paths (with the footprint) go last,
so an interrupted destroy can run again. The clean check proves each of them gone.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner import hostlayout as layout
from provisioner.connectors.base import HostTarget
from provisioner.engine.runner import Engine, RunContext
from provisioner.facts.base import Fact
from provisioner.footprint import CreatedPathAbsent, Footprint, HostFootprint, PackagesPurged
from provisioner.operations.base import Operation
from provisioner.operations.cluster import NodeReset
from provisioner.operations.files import Absent
from provisioner.operations.kernel import SysctlAbsent, module_file
from provisioner.operations.systemd import UnitAbsent
from provisioner.operations.users import GroupAbsent, UserAbsent
from provisioner.reporting import CollectingReporter, Event, Reporter
from provisioner.verify.clean import clean_problems
from provisioner.workflow import Inventory, Phase, PhaseData, select


def teardown_ops(
    keep_data: bool,
    keep_packages: bool = False,
    footprints: dict[str, HostFootprint] | None = None,
) -> Phase:
    """The teardown phase; each host's footprint, as read before the teardown, is put in
    ``footprints`` (the clean check compares the host with it)."""

    def ops(data: PhaseData, host: HostTarget) -> Sequence[Operation]:
        paths = layout.INSTALL_PATHS + (() if keep_data else layout.DATA_PATHS)
        footprint = data.host_facts(host.name, (Footprint(),)).get(Footprint())
        if footprints is not None:
            footprints[host.name] = footprint
        purged = () if keep_packages or not footprint.packages else (footprint.packages,)
        return (
            *(UnitAbsent(unit) for unit in layout.TEARDOWN_UNITS),
            # after the agent stopped, before berth's code goes: pods, routes, nft, bridge
            NodeReset(purge=not keep_data),
            # after the units stopped and the node reset (it needs runc and nft)
            *(PackagesPurged(names) for names in purged),
            # the system users those packages' postinst made (purge leaves them)
            *(
                op
                for name in footprint.absent_accounts
                for op in (UserAbsent(name), GroupAbsent(name))
            ),
            *(CreatedPathAbsent(path) for path in footprint.created_paths),
            # a runc node's kernel settings for the next boot (the running values stay)
            *(Absent(module_file(name)) for name, _path in layout.NODE_MODULES),
            *(SysctlAbsent(key) for key, _value in layout.NODE_SYSCTLS),
            # last: the footprint lives in /var/lib/berth
            *(Absent(path, recursive=True) for path in paths),
        )

    def facts(data: PhaseData, host: HostTarget) -> Sequence[Fact[Any]]:
        return (Footprint(),)

    return Phase(
        "teardown", "Stop and remove berth's units, files and data", operations=ops, facts=facts
    )


@dataclass
class DestroyResult:
    """Per host: changes made, problems left (not clean), or why it was skipped."""

    changed: dict[str, int] = field(default_factory=dict)
    dirty: dict[str, list[str]] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.dirty and not self.unreachable

    def lines(self) -> list[str]:
        out = []
        for name, count in sorted(self.changed.items()):
            problems = self.dirty.get(name)
            if problems:
                out += [f"{name}: NOT clean: {p}" for p in problems]
            else:
                what = f"{count} change(s)" if count else "nothing to remove"
                out.append(f"{name}: {what}; verified clean")
        out += [f"{n}: skipped, unreachable: {why}" for n, why in sorted(self.unreachable.items())]
        return out


def destroy_hosts(
    cluster: str,
    targets: Sequence[HostTarget],
    *,
    cache_dir: Path,
    keep_data: bool = False,
    keep_packages: bool = False,
    reporter: Reporter | None = None,
    parallel: int = 16,
) -> DestroyResult:
    """Tear berth down on ``targets`` and verify each reachable host is clean."""
    ctx = RunContext(inventory=Inventory(cluster, tuple(targets)), cache_dir=cache_dir)
    result = DestroyResult()
    counting = _CountingReporter(reporter or CollectingReporter())
    footprints: dict[str, HostFootprint] = {}
    phases = select([teardown_ops(keep_data, keep_packages, footprints)])
    with Engine(
        ctx, phases, reporter=counting, parallel=parallel, allow_unreachable=True
    ) as engine:
        engine.connect_all()
        result.unreachable = {str(k): v for k, v in engine.unreachable.items()}
        engine.apply()
        hosts = engine.hosts
        for host in hosts:
            result.changed[host.name] = counting.done.get(host.name, 0)

        def check(host: HostTarget) -> list[str]:
            return clean_problems(
                engine.connector(host.name),
                keep_data=keep_data,
                keep_packages=keep_packages,
                footprint=footprints.get(host.name),
            )

        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(hosts)))) as pool:
            for host, problems in zip(hosts, pool.map(check, hosts), strict=True):
                if problems:
                    result.dirty[host.name] = problems
    return result


def remove_hosts(cluster: str, targets: Sequence[HostTarget], cache_dir: Path) -> DestroyResult:
    """:data:`~provisioner.workflow.RemoveHostsFn` for ``berth apply``: a host that left the spec
    is destroyed with its data (it is no longer part of the cluster)."""
    return destroy_hosts(cluster, targets, cache_dir=cache_dir, keep_data=False)


class _CountingReporter:
    """Forwards events and counts the changes made per host."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner
        self.done: dict[str, int] = {}

    def emit(self, event: Event) -> None:
        if event.kind == "done" and event.host:
            self.done[event.host] = self.done.get(event.host, 0) + 1
        self.inner.emit(event)
