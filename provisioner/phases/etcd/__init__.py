"""The etcd phase: a mutual-TLS etcd cluster on the control-plane hosts, one member at a time.

``etcd/install`` (every control-plane host at once): Debian's ``etcd-server`` and
``etcd-client`` from shipped ``.deb`` files, the same on every member (those of the members'
release with the newest etcd: see :mod:`provisioner.phases.etcd_release_check`; Debian's own
``etcd.service`` masked first, so the package never starts an unconfigured etcd), the member's
credentials owned by the ``etcd`` user, its environment file and the ``berth-etcd.service``
unit (templates under ``templates/etcd/``).

``etcd/members`` (first control-plane host): members whose host left the spec — or is no
control-plane host any more — are removed, before the ``nodes`` phase destroys those hosts.

``etcd/retire`` (every other host): a host that is no control-plane host has no etcd member:
its unit is stopped and removed with the member's data and config (nothing to do on a host
that never had one).

``etcd/join-1`` … ``etcd/join-7`` (the k-th control-plane host of the spec, one phase each, so
one host at a time): the member is added through the running members (``etcdctl member add``),
``bootstrap.env`` gets the member list etcd then has with ``initial-cluster-state=existing``
(the first host of a new cluster bootstraps with ``new``), the service starts (or restarts when
its config or credentials changed) and the phase waits until the member is healthy before the
next host's turn. Every operation yields nothing when the host is already right.

Integration: put :func:`etcd_phase` after the ``pki`` phase and before the API servers; give
them :func:`apiserver_datastore` as their datastore config. ``berth destroy`` should stop
:data:`UNIT` and remove :data:`PATHS`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from provisioner import footprint
from provisioner.artifacts.debs import DEB_ARCH, DebCache
from provisioner.connectors.base import HostName, HostTarget
from provisioner.errors import PhaseError
from provisioner.facts.base import Fact
from provisioner.facts.packages import Packages
from provisioner.facts.system import Machine, OsRelease, PythonVersion
from provisioner.operations.base import Operation
from provisioner.operations.files import Absent, Directory, File, Symlink
from provisioner.operations.packages import DebPackages
from provisioner.operations.systemd import UNIT_DIR, Service, UnitAbsent, UnitFile
from provisioner.phases.etcd import layout
from provisioner.phases.etcd.created import record_created, was_created
from provisioner.phases.etcd.layout import PATHS, UNIT
from provisioner.phases.etcd.ops import (
    BootstrapFile,
    HealthyAfterStart,
    MemberJoined,
    MembersRemoved,
    OwnedStateFile,
    Peer,
)
from provisioner.phases.etcd_release_check import (
    SERVER_PACKAGE,
    cluster_etcd,
    etcd_release_problems,
)
from provisioner.phases.host_platform import host_platform
from provisioner.pki import REMOTE_PKI, ensure, files_for_host
from provisioner.platforms import Platform
from provisioner.spec import ClusterSpec
from provisioner.spec.model import Host
from provisioner.state import ClusterState
from provisioner.templating import render
from provisioner.workflow import Phase, PhaseData

__all__ = ["PATHS", "UNIT", "apiserver_datastore", "etcd_endpoints", "etcd_phase"]


def etcd_endpoints(spec: ClusterSpec) -> list[str]:
    """Client URLs of every member (one per control-plane host, in spec order)."""
    return [layout.client_url(h.address) for h in spec.control_plane_hosts]


def apiserver_datastore(spec: ClusterSpec, host: str | None = None) -> dict[str, Any]:
    """The API server's ``datastore`` config for an etcd cluster (credentials from the pki
    phase's files, see :func:`provisioner.pki.files_for_host`). With ``host``, that host's own
    member comes first: the client sticks to the first member that answers, so each API
    server reads from its local member while it is up."""
    endpoints = etcd_endpoints(spec)
    if host is not None:
        mine = layout.client_url(spec.host(host).address)
        endpoints = [mine, *(e for e in endpoints if e != mine)]
    return {
        "type": "etcd",
        "endpoints": endpoints,
        "caFile": f"{REMOTE_PKI}/etcd-ca.crt",
        "certFile": f"{REMOTE_PKI}/apiserver-etcd-client.crt",
        "keyFile": f"{REMOTE_PKI}/apiserver-etcd-client.key",
    }


def _members(spec: ClusterSpec) -> list[Host]:
    members = spec.control_plane_hosts
    if len(members) > layout.MAX_MEMBERS:
        raise PhaseError(
            "etcd",
            f"{len(members)} control-plane hosts: berth runs at most {layout.MAX_MEMBERS} "
            "etcd members",
            hint="keep 3 or 5 control-plane hosts",
        )
    return members


def _cluster_etcd(data: PhaseData, spec: ClusterSpec) -> tuple[dict[str, Platform], Platform]:
    """Each member's platform and the release whose etcd packages every member installs.

    The policy (:mod:`provisioner.phases.etcd_release_check`): one etcd release shipped to
    every member, the newest etcd of the members' releases. etcd lets members of two minors
    share a cluster only for the length of a rolling upgrade, which is not a state to
    bootstrap or to keep; a member whose release cannot run that etcd, or a member already
    running another etcd minor, is refused (preflight says the same first)."""
    members = _members(spec)
    found = {h.name: host_platform(data, HostName(h.name), "etcd") for h in members}
    installed = {
        h.name: data.host_facts(HostName(h.name), (Packages(),)).get(Packages()).get(SERVER_PACKAGE)
        for h in members
    }
    for problem in etcd_release_problems(found, installed):
        raise PhaseError("etcd", problem, hint="see berth preflight")
    return found, cluster_etcd(found)


def _peer(host: Host) -> Peer:
    return Peer(host.name, layout.peer_url(host.address))


def _etcd_spec(data: PhaseData) -> ClusterSpec | None:
    spec = data.spec
    if spec is None:
        raise PhaseError("etcd", "the etcd phase needs a cluster spec (berth apply -i SPEC)")
    return spec if spec.uses_etcd else None


def state_of(data: PhaseData, spec: ClusterSpec) -> ClusterState:
    """The cluster state (``--state-dir`` when the run context carries one)."""
    return ClusterState.for_spec(spec, state_dir=data.state_dir)


def _install_facts(data: PhaseData, host: HostTarget) -> Sequence[Fact[Any]]:
    # the members' releases pick the cluster's etcd packages (_cluster_etcd)
    return (Packages(), Machine(), OsRelease(), PythonVersion())


def _credentials(data: PhaseData, spec: ClusterSpec, host: HostTarget) -> list[OwnedStateFile]:
    files = files_for_host(spec, state_of(data, spec), host.name)
    sources = {f.remote_path: f.source for f in files}
    return [
        OwnedStateFile(path, sources[remote], mode, owner)
        for path, (remote, mode, owner) in layout.SOURCES.items()
    ]


def _context(data: PhaseData, host: Host) -> dict[str, Any]:
    return {
        "cluster": data.inventory.cluster,
        "name": host.name,
        "user": layout.USER,
        "data_dir": layout.DATA,
        "client_url": layout.client_url(host.address),
        "client_port": layout.CLIENT_PORT,
        "peer_url": layout.peer_url(host.address),
        "ca": layout.CA,
        "server_cert": layout.SERVER_CERT,
        "server_key": layout.SERVER_KEY,
        "peer_cert": layout.PEER_CERT,
        "peer_key": layout.PEER_KEY,
        "env_file": layout.ENV_FILE,
        "bootstrap_file": layout.BOOTSTRAP_FILE,
    }


def install_ops(data: PhaseData, host: HostTarget) -> Sequence[Operation]:
    """Packages, credentials, config and unit (nothing is started here)."""
    spec = _etcd_spec(data)
    if spec is None:
        return ()
    _members(spec)
    member = spec.host(host.name)
    facts = data.host_facts(host.name, _install_facts(data, host))
    machine = facts.get(Machine()).arch
    found, source = _cluster_etcd(data, spec)
    cache = DebCache(data.cache_dir / "debs", release=source.codename)
    installed = facts.get(Packages())
    wanted = cache.resolve(layout.PACKAGES, installed)
    lacking = [name for name in wanted if name not in layout.PACKAGES]
    if source.codename != found[host.name].codename and lacking:
        # another release's etcd: its own .debs only, never that release's libraries
        raise PhaseError(
            "etcd",
            f"{host.name} ({found[host.name].name}) lacks {', '.join(lacking)}, needed by"
            f" {source.name}'s etcd {source.etcd} that every member runs",
            hint=f"install {', '.join(lacking)} on {host.name} from its own release",
        )
    debs = cache.fetch(wanted, arch=DEB_ARCH.get(machine, machine))
    context = _context(data, member)
    return (
        # masked before the package lands: Debian's unit would start etcd on the default ports
        Symlink(f"{UNIT_DIR}/{layout.DEBIAN_UNIT}", "/dev/null"),
        DebPackages(debs, record=footprint.PACKAGES),  # destroy removes what was not there
        Directory(layout.ETC, mode=0o755),
        Directory(layout.PKI, mode=0o750, owner="root", group=layout.USER),
        *_credentials(data, spec, host),
        Directory(layout.DATA, mode=0o700, owner=layout.USER, group=layout.USER),
        File(layout.ENV_FILE, render("etcd/etcd.env.j2", context).encode(), mode=0o644),
        UnitFile(layout.UNIT, render("etcd/berth-etcd.service.j2", context).encode()),
    )


def prune_ops(data: PhaseData, host: HostTarget) -> Sequence[Operation]:
    """On the first control-plane host: remove members whose host left the spec."""
    spec = _etcd_spec(data)
    if spec is None:
        return ()
    members = _members(spec)
    if host.name != members[0].name:
        return ()
    return (MembersRemoved(tuple(map(_peer, members)), tuple(etcd_endpoints(spec))),)


def retire_ops(data: PhaseData, host: HostTarget) -> Sequence[Operation]:
    """On hosts that are no control-plane host: no etcd member (after ``etcd/members``)."""
    spec = _etcd_spec(data)
    if spec is None or _cp(host):
        return ()
    return (
        UnitAbsent(layout.UNIT),
        Absent(layout.DATA, recursive=True),
        Absent(layout.ETC, recursive=True),
    )


def join_ops(data: PhaseData, host: HostTarget, *, rank: int) -> Sequence[Operation]:
    """On the ``rank``-th control-plane host (1-based): join, first start, restart, health."""
    spec = _etcd_spec(data)
    if spec is None:
        return ()
    members = _members(spec)
    if rank > len(members) or members[rank - 1].name != host.name:
        return ()
    member = members[rank - 1]
    endpoints = tuple(etcd_endpoints(spec))
    mine = layout.client_url(member.address)
    peer = _peer(member)
    credentials = tuple(f"file:{path}" for path in layout.SOURCES)
    created = was_created(state_of(data, spec))
    return (
        MemberJoined(
            peer,
            endpoints,
            tuple(e for e in endpoints if e != mine),
            bootstrap=rank == 1 and not created,
            created=created,
        ),
        BootstrapFile(
            peer,
            endpoints,
            bootstrap=rank == 1 and not created,
            earlier=tuple(map(_peer, members[: rank - 1])),
            token=f"berth-{data.inventory.cluster}",
        ),
        Service(layout.UNIT, restart_on=(f"file:{layout.ENV_FILE}", *credentials)),
        HealthyAfterStart(member.name),
    )


def prepare(data: PhaseData) -> None:
    """The etcd credentials exist in the cluster state (the pki phase makes them too)."""
    spec = _etcd_spec(data)
    if spec is None or data.dry_run:
        return
    state = state_of(data, spec)
    with state.lock("berth apply (etcd)"):
        ensure(spec, state)


def _record_created(data: PhaseData, report: Callable[[str], None]) -> int:
    """Operator-side bookkeeping, not a change on any host: reports nothing."""
    spec = _etcd_spec(data)
    if spec is None or data.dry_run:
        return 0
    state = state_of(data, spec)
    if not was_created(state):
        record_created(state, first_member=_members(spec)[0].name)
    return 0


def _cp(host: HostTarget) -> bool:
    return "control-plane" in host.roles


def etcd_phase() -> Phase:
    """``etcd`` with its children (see the module docstring)."""
    joins = tuple(
        Phase(
            f"join-{rank}",
            f"etcd member on control-plane host #{rank}: join, start, wait until healthy",
            operations=functools.partial(join_ops, rank=rank),
            applies_to=_cp,
            # once the first member is healthy, the cluster exists: never bootstrap it again
            after=_record_created if rank == 1 else None,
        )
        for rank in range(1, layout.MAX_MEMBERS + 1)
    )
    return Phase(
        "etcd",
        "etcd cluster on the control-plane hosts (mTLS), one member at a time",
        children=(
            Phase("install", "etcd packages, credentials, config and unit",
                  operations=install_ops, facts=_install_facts, prepare=prepare, applies_to=_cp),
            Phase("members", "Remove members of control-plane hosts that left the spec",
                  operations=prune_ops, applies_to=_cp),
            Phase("retire", "No etcd member on hosts that are no control-plane host",
                  operations=retire_ops, applies_to=lambda host: not _cp(host)),
            *joins,
        ),
    )  # fmt: skip
