"""Choosing a lab's private /24: free on this machine and not claimed by another lab."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from pathlib import Path

from provisioner.errors import LabError
from provisioner.lab.system import run

POOL = ipaddress.IPv4Network("10.231.0.0/16")
FIRST_HOST_OFFSET = 10  # n1 is .11, n2 .12, ...; .1 is the bridge (the machine's side)


def host_address(subnet: ipaddress.IPv4Network, index: int) -> ipaddress.IPv4Address:
    """The address of the ``index``-th host (1-based) in the lab's subnet."""
    return subnet.network_address + FIRST_HOST_OFFSET + index


def gateway_address(subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """The bridge's address: the machine's side of the lab network."""
    return subnet.network_address + 1


def choose_free(
    used: Iterable[ipaddress.IPv4Network], pool: ipaddress.IPv4Network = POOL
) -> ipaddress.IPv4Network:
    """The first /24 of ``pool`` overlapping none of ``used``.

    The pool's first /24 is skipped: ad-hoc lab scripts conventionally take 10.231.0.0/24.
    """
    taken = list(used)
    for candidate in list(pool.subnets(new_prefix=24))[1:]:
        if not any(candidate.overlaps(net) for net in taken):
            return candidate
    raise LabError(f"no free /24 left in {pool}", hint="tear down unused labs: berth lab list")


def parse_subnet(text: str, *, hosts: int) -> ipaddress.IPv4Network:
    """Validate a ``--subnet`` given by the user: private IPv4, big enough for ``hosts``."""
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise LabError(
            f"invalid subnet {text!r}: {exc}", hint="e.g. --subnet 10.231.7.0/24"
        ) from exc
    if not net.is_private:
        raise LabError(f"subnet {net} is not a private range", hint="use e.g. 10.231.7.0/24")
    if net.num_addresses < FIRST_HOST_OFFSET + hosts + 2:
        raise LabError(f"subnet {net} is too small for {hosts} hosts", hint="use a /24")
    return net


def networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the machine has an address in or a route to (default route excluded)."""
    found: list[ipaddress.IPv4Network] = []
    for entry in json.loads(run(["ip", "-j", "-4", "addr", "show"]) or "[]"):
        for info in entry.get("addr_info", []):
            found.append(
                ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False)
            )
    for route in json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]) or "[]"):
        dst = route.get("dst", "default")
        if dst != "default":
            found.append(ipaddress.IPv4Network(dst, strict=False))
    return found


def networks_claimed(labs_root: Path, *, except_lab: str) -> list[ipaddress.IPv4Network]:
    """Subnets recorded by other labs' state files (claimed before their bridge exists)."""
    claimed: list[ipaddress.IPv4Network] = []
    for state_file in labs_root.glob("*/state.json"):
        if state_file.parent.name == except_lab:
            continue
        try:
            subnet = json.loads(state_file.read_text()).get("subnet", "")
        except (OSError, ValueError):
            continue  # a lab being written right now; its bridge will show in networks_in_use
        if subnet:
            claimed.append(ipaddress.IPv4Network(subnet))
    return claimed


def check_free(net: ipaddress.IPv4Network, used: Iterable[ipaddress.IPv4Network]) -> None:
    """Refuse a user-chosen subnet that overlaps something already on the machine."""
    clash = sorted({str(u) for u in used if net.overlaps(u)})
    if clash:
        raise LabError(
            f"address range {net} is in use on this machine (overlaps {', '.join(clash)})",
            hint="choose another --subnet, or leave it out to pick a free one automatically",
        )
