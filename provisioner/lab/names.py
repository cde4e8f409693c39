"""Names of everything a lab creates, derived from the lab name alone.

Several labs run on one machine at once (every engineer's test run boots its own), so every
machine-wide name carries the lab's identity: network namespaces and nspawn machine names are
prefixed with the lab name, and interface names (15-character kernel limit) carry a short hash of
it. ``berth lab down`` can therefore find a lab's leftovers from its name even when its state file
is incomplete.
"""

from __future__ import annotations

import hashlib
import re
from typing import NewType

from provisioner.errors import LabError

LabName = NewType("LabName", str)
HostName = NewType("HostName", str)

IFNAME_MAX = 15  # IFNAMSIZ - 1: the kernel rejects longer interface names
MAX_HOSTS = 200  # host addresses are .11 .. .210 of the lab's /24
_LAB_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
_HOST_NAME = re.compile(r"^n([1-9][0-9]{0,2})$")
CGROUP_ROOT = "berth-lab"  # every lab's cgroups live below <hierarchy>/berth-lab/<lab>/


def lab_name(value: str) -> LabName:
    """Validate a lab name: a DNS-1123 label of at most 32 characters."""
    if not _LAB_NAME.match(value):
        raise LabError(
            f"invalid lab name {value!r}",
            hint="use 1-32 lowercase letters, digits and '-', starting and ending alphanumeric",
        )
    return LabName(value)


def host_name(index: int) -> HostName:
    """The in-lab hostname of the ``index``-th host (1-based): n1, n2, ..."""
    return HostName(f"n{index}")


def host_index(host: str) -> int:
    """The 1-based index of a host name such as ``n3``."""
    match = _HOST_NAME.match(host)
    if not match:
        raise LabError(f"invalid lab host name {host!r}", hint="lab hosts are named n1, n2, ...")
    return int(match.group(1))


def iface_tag(lab: LabName) -> str:
    """Seven hex characters identifying the lab in interface names."""
    return hashlib.sha256(lab.encode()).hexdigest()[:7]


def bridge_name(lab: LabName) -> str:
    """The lab's bridge on the machine, e.g. ``bl-3f2a9c1``."""
    return f"bl-{iface_tag(lab)}"


def veth_name(lab: LabName, host: HostName) -> str:
    """The machine-side end of a host's veth pair, e.g. ``vl-3f2a9c1-12``."""
    return f"vl-{iface_tag(lab)}-{host_index(host)}"


def netns_name(lab: LabName, host: HostName) -> str:
    """The host's network namespace (``ip netns``), e.g. ``demo-n1``."""
    return f"{lab}-{host}"


def machine_name(lab: LabName, host: HostName) -> str:
    """The nspawn machine name; unique on the machine because nspawn keys /run paths by it."""
    return f"{lab}-{host}"


def cgroup_relpath(lab: LabName, host: HostName | None = None) -> str:
    """The lab's (or one host's) cgroup directory relative to each hierarchy's root."""
    base = f"{CGROUP_ROOT}/{lab}"
    return base if host is None else f"{base}/{host}"


def nft_table(lab: LabName) -> str:
    """The machine-side nftables table (bridge family) that holds the lab's partitions."""
    return f"berth_lab_{iface_tag(lab)}"
