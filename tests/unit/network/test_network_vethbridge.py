"""A pod's eth0 made in-process, on the real kernel, next to the real CNI plugins: same
address, broadcast, route, link flags and host-local files; either side releases the
other's pods; nothing left behind. Everything happens in namespaces made for the test (a
stand-in for the node's, with its own ``cni0``), never in the machine's. Needs root and
containernetworking-plugins in /usr/lib/cni, as the node agent does."""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from berth.network import netlink
from berth.network.cni import CniError, CniInvoker
from berth.network.command import Completed, SubprocessRunner
from berth.network.podnet import PodNetwork, node_conflist, veth_bridge
from berth.network.vethbridge import VethError, host_veth_name, in_own_thread
from berth.runtime.netns import MNT_DETACH, KernelNamespaces

PLUGINS = Path("/usr/lib/cni")
pytestmark = pytest.mark.skipif(
    not (PLUGINS / "bridge").exists(), reason="containernetworking-plugins not installed"
)


class InNamespace:
    """Runs the plugins in the stand-in node namespace (``nsenter --net``)."""

    def __init__(self, netns: Path) -> None:
        self.netns = netns
        self.inner = SubprocessRunner()
        self.calls: list[str] = []

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        time_limit: float = 60.0,
    ) -> Completed:
        self.calls.append(Path(argv[0]).name)
        wrapped = ["nsenter", f"--net={self.netns}", *argv]
        return await self.inner.run(wrapped, stdin=stdin, env=env, time_limit=time_limit)


def ip_json(netns: Path, *args: str) -> Any:
    argv = ["nsenter", f"--net={netns}", "ip", "-j", "-d", *args]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout
    return json.loads(out or "[]")


def tcp_in(netns: Path) -> socket.socket:
    fd = os.open(netns, os.O_RDONLY)
    try:
        box: list[socket.socket] = []
        thread = threading.Thread(
            target=lambda: box.append(netlink.socket_in(fd, socket.AF_INET, socket.SOCK_STREAM, 0))
        )
        thread.start()
        thread.join()
        return box[0]
    finally:
        os.close(fd)


def reaches(client_ns: Path, server_ns: Path, address: str) -> None:
    """A TCP connection from ``client_ns`` to ``address`` served in ``server_ns``."""
    with tcp_in(server_ns) as server, tcp_in(client_ns) as client:
        server.bind((address, 0))
        server.listen()
        client.settimeout(5)
        client.connect((address, server.getsockname()[1]))
        conn, _ = server.accept()
        conn.close()


def sh(netns: Path, *args: str) -> None:
    subprocess.run(["nsenter", f"--net={netns}", *args], check=True, timeout=60)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[dict[str, Any]]:
    maker = KernelNamespaces()
    nsdir = tmp_path / "netns"
    node = nsdir / "node"
    asyncio.run(maker.add_netns(node))
    conflist = node_conflist(pod_cidr="10.244.1.0/24")
    conflist["plugins"][0]["ipam"]["dataDir"] = str(tmp_path / "ipam")
    runner = InNamespace(node)
    invoker = CniInvoker(runner, plugin_dirs=[PLUGINS], cache_dir=tmp_path / "cache")
    net = PodNetwork(invoker, conflist, in_process=veth_bridge(conflist, host_netns=node))
    plugins_only = PodNetwork(invoker, conflist)
    pods: list[Path] = []

    def pod(name: str) -> Path:
        path = nsdir / name
        asyncio.run(maker.add_netns(path))
        pods.append(path)
        return path

    yield {
        "node": node,
        "net": net,
        "plugins": plugins_only,
        "runner": runner,
        "pod": pod,
        "ipam": tmp_path / "ipam" / "berth",
        "cache": tmp_path / "cache",
    }
    for path in [*pods, node]:
        maker.delete_netns(path)
    ctypes.CDLL(None, use_errno=True).umount2(str(nsdir).encode(), MNT_DETACH)


def attach(net: PodNetwork, uid: str, netns: Path, requested: str | None = None) -> str:
    address = asyncio.run(
        net.attach(
            sandbox_id=uid, netns=str(netns), namespace="default", name=uid, requested_ip=requested
        )
    )
    assert address.gateway == "10.244.1.1"
    return address.ip


def detach(net: PodNetwork, uid: str, netns: Path | str, ip: str | None = None) -> None:
    asyncio.run(net.detach(sandbox_id=uid, netns=str(netns), ip=ip))


def eth0_shape(netns: Path) -> dict[str, Any]:
    """What must be the same whoever made it (the address and MAC aside)."""
    (link,) = ip_json(netns, "link", "show", "dev", "eth0")
    (addr,) = ip_json(netns, "-4", "addr", "show", "dev", "eth0")
    (info,) = addr["addr_info"]
    routes = ip_json(netns, "-4", "route", "show")
    return {
        "flags": sorted(link["flags"]),
        "mtu": link["mtu"],
        "kind": link["linkinfo"]["info_kind"],
        "prefixlen": info["prefixlen"],
        "broadcast": info.get("broadcast"),
        "scope": info["scope"],
        "routes": sorted(
            (r["dst"], r.get("gateway", ""), r["dev"], r.get("protocol", ""), r.get("scope", ""))
            for r in routes
        ),
    }


def host_port(node: Path, name: str) -> dict[str, Any]:
    (link,) = ip_json(node, "link", "show", "dev", name)
    return {
        "master": link.get("master"),
        "up": "UP" in link["flags"],
        "mtu": link["mtu"],
        "hairpin": link["linkinfo"]["info_slave_data"]["hairpin"],
    }


def host_veths(node: Path) -> list[str]:
    return sorted(link["ifname"] for link in ip_json(node, "link", "show", "type", "veth"))


def test_in_process_eth0_matches_the_plugins_and_each_undoes_the_other(
    lab: dict[str, Any],
) -> None:
    node, net, plugins, runner = lab["node"], lab["net"], lab["plugins"], lab["runner"]
    # the node's first pod: no bridge yet, so the plugins make it (and the pod's eth0)
    a = lab["pod"]("a")
    assert attach(net, "pod-a", a) == "10.244.1.2"
    assert runner.calls == ["bridge"]
    # from then on in-process: no plugin runs, the next address in host-local's order
    b = lab["pod"]("b")
    assert attach(net, "pod-b", b) == "10.244.1.3"
    assert runner.calls == ["bridge"], "no plugin ran for pod b"
    assert eth0_shape(b) == eth0_shape(a)
    # eth0 announces its address whenever it comes up (the plugin's gratuitous ARP)
    notify = "/proc/sys/net/ipv4/conf/eth0/arp_notify"
    argv = ["nsenter", f"--net={b}", "cat", notify]
    assert subprocess.run(argv, capture_output=True, text=True, check=True).stdout == "1\n"
    shape = eth0_shape(b)
    assert shape["broadcast"] == "10.244.1.255"
    assert ("default", "10.244.1.1", "eth0", "boot", "global") in shape["routes"]
    (a_port,) = [v for v in host_veths(node) if v != host_veth_name("pod-b")]
    assert host_port(node, host_veth_name("pod-b")) == host_port(node, a_port)
    assert host_port(node, a_port) == {"master": "cni0", "up": True, "mtu": 1500, "hairpin": True}
    # the same host-local files, owner line and round-robin marker
    assert (lab["ipam"] / "10.244.1.3").read_bytes() == b"pod-b\r\neth0"
    assert (lab["ipam"] / "10.244.1.2").read_bytes() == b"pod-a\r\neth0"
    assert (lab["ipam"] / "last_reserved_ip.0").read_text() == "10.244.1.3"
    # pod b reaches the gateway and pod a across the bridge
    reaches(b, node, "10.244.1.1")
    reaches(b, a, "10.244.1.2")
    # the plugins' CHECK accepts the pod made in-process (its cached result is theirs)
    asyncio.run(plugins.check(sandbox_id="pod-b", netns=str(b)))

    # rolled back to the plugins: their DEL undoes the in-process pod
    detach(plugins, "pod-b", b)
    assert not (lab["ipam"] / "10.244.1.3").exists()
    assert host_veths(node) == [a_port]
    # and the in-process DEL undoes the plugins' pod
    calls = len(runner.calls)
    detach(net, "pod-a", a, ip="10.244.1.2")
    assert len(runner.calls) == calls, "no plugin ran"
    assert host_veths(node) == []
    assert sorted(p.name for p in lab["ipam"].iterdir()) == ["last_reserved_ip.0", "lock"]
    assert sorted(lab["cache"].iterdir()) == []
    detach(net, "pod-a", a)  # again: nothing there is not an error
    # round-robin continues where the plugins and this left it, and a freed address waits
    c = lab["pod"]("c")
    assert attach(net, "pod-c", c) == "10.244.1.4"
    assert attach(plugins, "pod-d", lab["pod"]("d")) == "10.244.1.5"
    detach(net, "pod-c", "")  # namespace gone: the address is released all the same
    assert not (lab["ipam"] / "10.244.1.4").exists()


def test_taken_addresses_are_never_handed_out_twice(lab: dict[str, Any]) -> None:
    net = lab["net"]
    attach(net, "first", lab["pod"]("first"))  # the plugins make the bridge
    # eight pods at once, each in its own thread, through the one lock
    pods = [(f"p{i}", lab["pod"](f"p{i}")) for i in range(8)]

    async def all_of_them() -> list[str]:
        return [
            a.ip
            for a in await asyncio.gather(
                *(
                    net.attach(sandbox_id=uid, netns=str(ns), namespace="d", name=uid)
                    for uid, ns in pods
                )
            )
        ]

    ips = asyncio.run(all_of_them())
    assert len(set(ips)) == 8
    assert sorted(ips) == sorted(f"10.244.1.{i}" for i in range(3, 11))
    for (uid, _), ip in zip(pods, ips, strict=True):
        assert (lab["ipam"] / ip).read_bytes() == f"{uid}\r\neth0".encode()
    # an address held by a pod the plugins made is refused when asked for by name
    with pytest.raises(CniError, match="not available"):
        attach(net, "other", lab["pod"]("other"), requested="10.244.1.2")
    assert (lab["ipam"] / "10.244.1.2").read_bytes() == b"first\r\neth0"
    assert not any(
        link["ifname"] == host_veth_name("other") for link in ip_json(lab["node"], "link", "show")
    )


def test_a_failed_add_leaves_nothing_and_the_plugins_take_over(lab: dict[str, Any]) -> None:
    net, node = lab["net"], lab["node"]
    attach(net, "first", lab["pod"]("first"))
    # a link already has pod x's host-end name: the in-process ADD fails half-way (after
    # its address was taken), undoes itself, and the plugins make the pod (random name)
    sh(node, "ip", "link", "add", host_veth_name("x"), "type", "bridge")
    calls = len(lab["runner"].calls)
    x = lab["pod"]("x")
    ip = attach(net, "x", x)
    assert lab["runner"].calls[calls:] == ["bridge"]
    assert ip == "10.244.1.4", "the in-process attempt's address (.3) was released, not reused"
    assert not (lab["ipam"] / "10.244.1.3").exists()
    assert (lab["ipam"] / ip).read_bytes() == b"x\r\neth0"
    (eth0,) = ip_json(x, "link", "show", "dev", "eth0")
    assert eth0["operstate"] in ("UP", "UNKNOWN", "LOWERLAYERDOWN")


@pytest.mark.parametrize(
    "uid",
    ["../../etc/passwd", "a\r\nb", "x" * 300, "a/b", "", "pod\0id", "über"],
)
def test_ids_that_would_break_a_file_or_link_name_never_reach_the_kernel_or_disk(
    lab: dict[str, Any], uid: str
) -> None:
    veth = veth_bridge(node_conflist(pod_cidr="10.244.1.0/24"), host_netns=lab["node"])
    with pytest.raises(VethError, match="not a safe IPAM owner"):
        asyncio.run(in_own_thread(lambda: veth.add(uid, "/nonexistent")))
    with pytest.raises(VethError, match="not a safe IPAM owner"):
        asyncio.run(in_own_thread(lambda: veth.delete(uid, "/nonexistent")))
    name = host_veth_name(uid)
    assert netlink.check_ifname(name) == name
    assert len(name) == 12
    assert name.startswith("veth")


def test_a_crash_half_way_through_add_is_undone_by_the_records_teardown(
    lab: dict[str, Any],
) -> None:
    """The agent died after the address was taken and the veth made, before the address
    was set or the record got the IP: the restarted agent's DEL (no IP known) undoes it."""
    net, node = lab["net"], lab["node"]
    attach(net, "first", lab["pod"]("first"))
    veth = net.in_process
    assert veth is not None
    crashed = lab["pod"]("crashed")
    ip = veth.ipam.allocate("crashed", "eth0")

    def half_add() -> None:
        node_fd = os.open(node, os.O_RDONLY)
        pod_fd = os.open(crashed, os.O_RDONLY)
        try:
            sock = netlink.socket_in(node_fd, socket.AF_NETLINK, socket.SOCK_RAW, 0)
            with netlink.Netlink(sock) as host:
                bridge = host.link("cni0")
                assert bridge is not None
                name = host_veth_name("crashed")
                host.add_veth(name, "eth0", peer_netns_fd=pod_fd, master=bridge.index, mtu=None)
        finally:
            os.close(node_fd)
            os.close(pod_fd)

    asyncio.run(in_own_thread(half_add))
    assert host_veth_name("crashed") in host_veths(node)
    detach(net, "crashed", crashed)  # the record had no IP yet
    assert host_veth_name("crashed") not in host_veths(node)
    assert not (lab["ipam"] / ip).exists()
    # and the pod can be made again from scratch (the next address: round-robin)
    assert ip == "10.244.1.3"
    assert attach(net, "crashed", crashed) == "10.244.1.4"
