"""The lab's network on the machine: a bridge, one netns + veth per host, and network faults.

Hosts get only their /24 (no default route), so nothing they send can leave the machine; the
machine's ``ip_forward`` is never touched. Partitions are drop rules in a bridge-family nftables
table on the machine matching the two hosts' bridge ports, i.e. the "switch" drops traffic between
two hosts, and the hosts' own firewalls stay theirs.
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

from provisioner.errors import LabError
from provisioner.lab.system import run

NETNS_DIR = Path("/run/netns")
SYS_NET = Path("/sys/class/net")


def link_exists(name: str) -> bool:
    """Whether the machine has a network interface called ``name``."""
    return (SYS_NET / name).exists()


def netns_exists(name: str) -> bool:
    """Whether ``ip netns`` knows a namespace called ``name``."""
    return (NETNS_DIR / name).exists()


def create_bridge(name: str, gateway: ipaddress.IPv4Interface) -> None:
    """The lab's switch; its own address is how the machine reaches the hosts."""
    run(["ip", "link", "add", name, "type", "bridge"])
    run(["ip", "addr", "add", str(gateway), "dev", name])
    run(["ip", "link", "set", name, "up"])


def create_netns(name: str) -> None:
    """A network namespace for one host (its ``lo`` up)."""
    run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "lo", "up"])


def plug_host(*, netns: str, veth: str, bridge: str, address: ipaddress.IPv4Interface) -> None:
    """Connect a host's netns to the bridge: ``eth0`` inside with the host's address, no gateway."""
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
    run(["ip", "link", "set", veth, "master", bridge, "up"])
    run(["ip", "-n", netns, "addr", "add", str(address), "dev", "eth0"])
    run(["ip", "-n", netns, "link", "set", "eth0", "up"])


def create_tap(name: str, bridge: str) -> None:
    """A VM's cable: a persistent tap on the bridge, which the VM's QEMU opens by name."""
    run(["ip", "tuntap", "add", "dev", name, "mode", "tap"])
    run(["ip", "link", "set", name, "master", bridge, "up"])


def delete_link(name: str) -> None:
    """Remove an interface if it exists.

    A veth also vanishes on its own, asynchronously, when its peer's namespace is deleted, so
    "Cannot find device" is success, and a link still being torn down gets a moment to go.
    """
    deadline = time.monotonic() + 2.0
    while link_exists(name):
        if time.monotonic() > deadline:
            raise LabError(f"interface {name} cannot be removed", hint=f"ip link del {name}")
        run(["ip", "link", "del", name], check=False)
        time.sleep(0.02)


def delete_netns(name: str) -> None:
    """Remove a namespace if it exists (its veth pair goes with it)."""
    if netns_exists(name):
        run(["ip", "netns", "del", name])


def release_netns_dir() -> None:
    """Undo ``ip netns``' bind mount of /run/netns once no namespace is left in it.

    Call with the machine-wide lab lock held, so no other lab adds a namespace meanwhile.
    """
    if not NETNS_DIR.is_dir() or any(NETNS_DIR.iterdir()):
        return
    while _is_mountpoint(NETNS_DIR):
        run(["umount", str(NETNS_DIR)])
    NETNS_DIR.rmdir()


def _is_mountpoint(path: Path) -> bool:
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    return any(line.split()[4] == str(path) for line in mounts if len(line.split()) > 4)


def set_link(name: str, *, up: bool) -> None:
    """Plug (``up``) or unplug the machine-side end of a host's cable."""
    run(["ip", "link", "set", name, "up" if up else "down"])


def link_is_up(name: str) -> bool:
    """Whether the machine-side end of a cable is administratively up."""
    flags = int((SYS_NET / name / "flags").read_text(), 16)
    return bool(flags & 0x1)  # IFF_UP


def _pair_elements(a: str, b: str) -> str:
    return f'{{ "{a}" . "{b}", "{b}" . "{a}" }}'


def partition(table: str, veth_a: str, veth_b: str) -> None:
    """Drop every frame the bridge would forward between two hosts' ports, both directions
    (IPv4, IPv6 and ARP alike: the switch between them is broken, nothing else)."""
    run(
        ["nft", "-f", "-"],
        input_text=(
            f"table bridge {table} {{\n"
            "  set pairs { type ifname . ifname; }\n"
            "  chain forward {\n"
            "    type filter hook forward priority 0; policy accept;\n"
            "    iifname . oifname @pairs drop\n"
            "  }\n"
            "}\n"
            f"add element bridge {table} pairs {_pair_elements(veth_a, veth_b)}\n"
        ),
    )


def unpartition(table: str, veth_a: str, veth_b: str) -> None:
    """Let frames between the two ports pass again."""
    if table_exists(table):
        elements = _pair_elements(veth_a, veth_b)
        run(["nft", "delete", "element", "bridge", table, "pairs", elements], check=False)


def table_exists(table: str) -> bool:
    """Whether the machine has the bridge-family nftables table ``table``."""
    listing = run(["nft", "list", "tables", "bridge"], check=False)
    return f"table bridge {table}" in listing.splitlines()


def delete_table(table: str) -> None:
    """Remove the lab's partition table if it exists."""
    if table_exists(table):
        run(["nft", "delete", "table", "bridge", table])
