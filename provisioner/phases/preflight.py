"""Preflight: check every host before anything changes, and report every problem at once.

Checks (all hosts concurrently, one round-trip each): reachability over SSH (done by the engine),
a supported platform (the release and its own python3: :mod:`provisioner.platforms`), systemd
as PID 1, free disk, clock skew against this machine and between hosts, required ports free on
hosts not yet managed by berth, and host-to-host TCP reachability on the cluster's ports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from provisioner import platforms
from provisioner.connectors.base import Connector, HostName, HostTarget
from provisioner.facts.base import Fact
from provisioner.facts.files import PathInfo
from provisioner.facts.network import ListeningPorts
from provisioner.facts.reach import TcpReachability
from provisioner.facts.system import Clock, DiskFree, OsRelease, PythonVersion, Systemd
from provisioner.workflow import Phase, PhaseData

MANAGED_MARKER = "/var/lib/berth/cluster"
"""Written by the cluster phases; ports in use on a managed host are berth's own."""

PortsOf = Callable[[PhaseData, HostTarget], Sequence[int]]
"""The TCP ports of a host, given the run's data (its spec)."""


def preflight_phase(
    *,
    min_disk_bytes: int = 1 << 30,
    max_skew_seconds: float = 2.0,
    ports: PortsOf = lambda data, host: (),
    peer_ports: PortsOf = lambda data, host: (host.port,),
) -> Phase:
    """The preflight phase. ``ports``: ports a host must have free; ``peer_ports``: ports every
    other host must be able to reach on it (both may read the spec from the phase data)."""

    def targets(data: PhaseData, host: HostTarget) -> tuple[tuple[str, int], ...]:
        return tuple(
            (peer.address, port)
            for peer in data.inventory.hosts
            if peer.name != host.name
            for port in peer_ports(data, peer)
        )

    def check_facts(data: PhaseData, host: HostTarget) -> Sequence[Fact[Any]]:
        return (
            OsRelease(), PythonVersion(), Systemd(), DiskFree(("/",)), Clock(),
            ListeningPorts(), PathInfo((MANAGED_MARKER,)), TcpReachability(targets(data, host)),
        )  # fmt: skip

    def check(data: PhaseData, live: Mapping[HostName, Connector]) -> list[str]:
        problems: list[str] = []
        offsets: dict[str, float] = {}
        slack: dict[str, float] = {}
        for host in data.inventory.hosts:
            if host.name not in live:
                continue
            facts = data.host_facts(host.name, check_facts(data, host))

            def problem(text: str, name: str = host.name) -> None:
                problems.append(f"{name}: {text}")

            os_info = facts.get(OsRelease())
            python = facts.get(PythonVersion())
            if os_info is None:
                problem("no /etc/os-release: cannot tell the operating system")
            else:
                try:
                    platforms.match(
                        os_info.id,
                        os_info.version_id,
                        os_info.codename,
                        python.version if python is not None else None,
                        pretty_name=os_info.pretty_name,
                    )
                except platforms.UnsupportedPlatform as exc:
                    problem(str(exc))
            if not facts.get(Systemd()).running:
                problem("systemd is not running as PID 1")
            free = facts.get(DiskFree(("/",)))["/"]
            if free is not None and free < min_disk_bytes:
                problem(f"only {free >> 20} MiB free on /, need {min_disk_bytes >> 20} MiB")
            clock = facts.get(Clock())
            sent, received = facts.times.get(Clock().key(), (clock, clock))
            # the reading happened somewhere inside the round-trip: +- half of it
            offsets[host.name] = clock - (sent + received) / 2
            slack[host.name] = (received - sent) / 2
            managed = facts.get(PathInfo((MANAGED_MARKER,)))[MANAGED_MARKER] is not None
            listening = {(s.proto, s.port) for s in facts.get(ListeningPorts())}
            if not managed:
                for port in ports(data, host):
                    if ("tcp", port) in listening:
                        problem(f"port {port}/tcp is already in use")
            for (address, port), status in facts.get(TcpReachability(targets(data, host))).items():
                if status not in ("open", "refused"):
                    peer = next(
                        (p.name for p in data.inventory.hosts if p.address == address), address
                    )
                    problem(f"cannot reach {peer} ({address}) on {port}/tcp: {status}")
        for name, offset in offsets.items():
            if abs(offset) - slack[name] > max_skew_seconds:
                problems.append(
                    f"{name}: clock is {offset:+.1f}s off this machine's "
                    f"(max {max_skew_seconds}s); new certificates would not be valid there"
                )
        skew = max(offsets.values()) - min(offsets.values()) if offsets else 0.0
        if offsets and skew - 2 * max(slack.values()) > max_skew_seconds:
            listing = ", ".join(f"{n} {o:+.1f}s" for n, o in sorted(offsets.items()))
            problems.append(f"clock skew between hosts exceeds {max_skew_seconds}s: {listing}")
        return problems

    return Phase(
        "preflight",
        "Check every host before changing anything",
        check=check,
        facts=check_facts,
    )
