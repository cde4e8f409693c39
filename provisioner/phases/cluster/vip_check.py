"""Preflight for ``apiServer.vip``: before anything changes, every control-plane host must have
the VIP inside the subnet of one of its interfaces (or have the interface the spec names), and
no host may already carry the VIP unless berth put it there.

The spec alone cannot tell: it names each host's address, not its prefix. The same rule is
applied again by ``berth-vip`` on the host (:func:`berth.vip.addresses.interface_for`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from berth.vip.addresses import outside_every_subnet, parse_ipv4_addresses, subnet_interface
from provisioner.connectors.base import Connector, HostName, HostTarget
from provisioner.facts.base import Fact
from provisioner.facts.files import PathInfo
from provisioner.phases.preflight import MANAGED_MARKER
from provisioner.spec.model import ClusterSpec
from provisioner.workflow import Phase, PhaseData


@dataclass(frozen=True)
class Ipv4Addresses(Fact[tuple[tuple[str, str], ...]]):
    """``(interface, address/prefix)`` of every IPv4 address on the host."""

    def command(self) -> str:
        return "ip -o -4 addr show 2>/dev/null"

    def parse(self, output: str, exit_code: int) -> tuple[tuple[str, str], ...]:
        return tuple(parse_ipv4_addresses(output)) if exit_code == 0 else ()


def _vip(data: PhaseData) -> str | None:
    spec = data.spec
    return spec.api_vip if spec is not None else None


def vip_problems(
    spec: ClusterSpec, addresses: Sequence[tuple[str, str]], *, managed: bool
) -> list[str]:
    """What keeps one host from holding the VIP (its addresses as ``ip`` lists them)."""
    vip = spec.api_vip
    assert vip is not None
    found = list(addresses)
    problems = []
    wanted = spec.spec.api_server.vip_interface
    if wanted is not None:
        if wanted not in {name for name, _ in found}:
            names = ", ".join(sorted({name for name, _ in found})) or "none"
            problems.append(
                f"apiServer.vipInterface {wanted} has no IPv4 address on this host "
                f"(interfaces with one: {names})"
            )
    elif subnet_interface(vip, found) is None:
        problems.append(outside_every_subnet(vip, found))
    if not managed and any(cidr.split("/")[0] == vip for _, cidr in found):
        problems.append(f"already has the VIP {vip}: the VIP must be an address no host uses")
    return problems


def with_vip_check(preflight: Phase) -> Phase:
    """``preflight`` plus the VIP's checks on control-plane hosts (nothing without a VIP)."""

    def facts(data: PhaseData, host: HostTarget) -> Sequence[Fact[Any]]:
        base = tuple(preflight.facts(data, host)) if preflight.facts else ()
        if _vip(data) is None or "control-plane" not in host.roles:
            return base
        return (*base, Ipv4Addresses(), PathInfo((MANAGED_MARKER,)))

    def check(data: PhaseData, live: Mapping[HostName, Connector]) -> list[str]:
        problems = preflight.check(data, live) if preflight.check else []
        spec = data.spec
        if spec is None or spec.api_vip is None:
            return problems
        for host in data.inventory.hosts:
            if host.name not in live or "control-plane" not in host.roles:
                continue
            found = data.host_facts(host.name, facts(data, host))
            managed = found.get(PathInfo((MANAGED_MARKER,)))[MANAGED_MARKER] is not None
            addresses: tuple[tuple[str, str], ...] = found.get(Ipv4Addresses())
            problems += [
                f"{host.name}: {p}" for p in vip_problems(spec, addresses, managed=managed)
            ]
        return problems

    return dataclasses.replace(preflight, facts=facts, check=check)
