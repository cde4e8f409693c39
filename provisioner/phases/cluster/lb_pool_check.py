"""Preflight for ``network.loadBalancerPool``: every node may have to hold a pool address and
answer ARP for it, so every block of the pool must lie inside the subnet of one interface of
every runc host (the same rule the agent's speaker applies when it adds an address,
:mod:`berth.agent.lbspeaker`). The spec alone cannot tell: it has the hosts' addresses, not
their prefixes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from berth.api.loadbalancers import parse_block
from berth.vip.addresses import subnet_interface
from provisioner.connectors.base import Connector, HostName, HostTarget
from provisioner.facts.base import Fact
from provisioner.phases.cluster.vip_check import Ipv4Addresses
from provisioner.workflow import Phase, PhaseData


def _pool(data: PhaseData) -> list[str]:
    spec = data.spec
    if spec is None or spec.spec.runtime != "runc":
        return []
    return list(spec.spec.network.load_balancer_pool)


def pool_problems(pool: Sequence[str], addresses: Sequence[tuple[str, str]]) -> list[str]:
    """What keeps one host from holding the pool's addresses (its addresses as ``ip`` lists
    them)."""
    problems = []
    found = [(dev, cidr) for dev, cidr in addresses if not cidr.endswith("/32")]
    for index, entry in enumerate(pool):
        block = parse_block(entry)
        first = subnet_interface(str(block.first), found)
        last = subnet_interface(str(block.last), found)
        if first is None or first != last:
            seen = ", ".join(f"{dev} {cidr}" for dev, cidr in found) or "none"
            problems.append(
                f"network.loadBalancerPool[{index}] {entry} is not inside the subnet of one of "
                f"this host's interfaces ({seen}): the pool must be free addresses of the "
                "hosts' own subnet, as a node answers ARP for the ones it holds"
            )
    return problems


def with_lb_pool_check(preflight: Phase) -> Phase:
    """``preflight`` plus the pool's check on every host (nothing without a pool)."""

    def facts(data: PhaseData, host: HostTarget) -> Sequence[Fact[Any]]:
        base = tuple(preflight.facts(data, host)) if preflight.facts else ()
        if not _pool(data) or Ipv4Addresses() in base:
            return base
        return (*base, Ipv4Addresses())

    def check(data: PhaseData, live: Mapping[HostName, Connector]) -> list[str]:
        problems = preflight.check(data, live) if preflight.check else []
        pool = _pool(data)
        if not pool:
            return problems
        for host in data.inventory.hosts:
            if host.name not in live:
                continue
            found = data.host_facts(host.name, facts(data, host))
            addresses: tuple[tuple[str, str], ...] = found.get(Ipv4Addresses())
            problems += [f"{host.name}: {p}" for p in pool_problems(pool, addresses)]
        return problems

    return dataclasses.replace(preflight, facts=facts, check=check)
