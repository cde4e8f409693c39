"""A pod's eth0 on the node bridge, made in-process: what the CNI ``bridge`` plugin (with
``host-local`` IPAM) does for berth's network, without its two Go processes per pod.

ADD: an address from host-local's own store (:mod:`berth.network.hostlocal`), a veth pair
whose host end (``veth`` + 8 hex digits of a hash of the pod's id) is up, a port of the
bridge with hairpin mode, and whose other end is created as ``eth0`` right in the pod's
namespace, with the address (and its broadcast), then up (announcing the address: the
plugin's gratuitous ARP, through ``arp_notify``), and a default route via the bridge's
address. DEL: ``eth0`` deleted in the pod's namespace (its host end goes with it), then the
address released (by owner, as host-local does). Both are what the plugins leave and
expect, so the plugins can undo a pod made here and the other way round.

The bridge itself is the plugin's to make: until it exists, is up and carries the gateway
address, and IP forwarding is on (a node's first pod), :meth:`VethBridge.add` declines
(:class:`VethError`, nothing done) and the caller runs the plugins, which set that up.

Namespaces are entered per thread, so each operation runs in a thread started for it and
ended after it (see :mod:`berth.runtime.netns`), never in a pooled one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from berth.network import netlink
from berth.network.hostlocal import HostLocalStore, IpamError, check_id

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
T = TypeVar("T")


class VethError(Exception):
    """The in-process path could not do it (the caller falls back to the plugins)."""


def host_veth_name(container_id: str) -> str:
    """The host end's name: ``veth`` + 8 hex digits of a hash of the id, whatever the id
    holds (a valid link name by construction, and the plugin's naming pattern)."""
    return "veth" + hashlib.sha256(container_id.encode()).hexdigest()[:8]


async def in_own_thread(work: Callable[[], T]) -> T:
    """Run ``work`` in a thread started for it (it may enter namespaces) and await it."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, exc: BaseException | None) -> None:
        if done.cancelled():
            return
        if exc is not None:
            done.set_exception(exc)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = work()
        except BaseException as exc:  # handed to the awaiting coroutine
            loop.call_soon_threadsafe(settle, None, exc)
            return
        loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=run, name="veth-bridge", daemon=True).start()
    # shielded: a cancelled caller still waits for the thread to finish what it started
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await done
        raise


class VethBridge:
    """eth0 of pods on ``bridge`` for one pod subnet."""

    def __init__(
        self,
        *,
        bridge: str,
        subnet: str,
        gateway: str,
        ipam: HostLocalStore,
        mtu: int | None = None,
        host_netns: Path | None = None,
        ifname: str = "eth0",
    ) -> None:
        self.bridge = netlink.check_ifname(bridge)
        self.ifname = netlink.check_ifname(ifname)
        self.net = ipaddress.IPv4Network(subnet, strict=True)
        self.gateway = str(ipaddress.IPv4Address(gateway))
        self.ipam = ipam
        self.mtu = mtu
        # tests: the namespace standing in for the node's (None: the caller's own)
        self.host_netns = host_netns

    # ---- what the plugins must have set up first -------------------------------------------

    def _bridge_ready(self, nl: netlink.Netlink) -> netlink.Link | None:
        link = nl.link(self.bridge)
        if link is None or not link.up:
            return None
        addresses = nl.ipv4_addresses(link.index)
        if (self.gateway, self.net.prefixlen) not in addresses:
            return None
        if self.host_netns is None:
            with contextlib.suppress(OSError):
                if IP_FORWARD.read_text().strip() != "1":
                    return None
        return link

    @contextlib.contextmanager
    def _host(self) -> Any:
        """A netlink socket of the node's namespace (or the test's stand-in)."""
        if self.host_netns is None:
            with netlink.Netlink() as nl:
                yield nl
            return
        fd = os.open(self.host_netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            sock = netlink.socket_in(fd, socket.AF_NETLINK, socket.SOCK_RAW, 0)
        finally:
            os.close(fd)
        with netlink.Netlink(sock) as nl:
            yield nl

    # ---- ADD / DEL --------------------------------------------------------------------------

    def add(self, container_id: str, netns: str, requested_ip: str | None = None) -> dict[str, Any]:
        """ADD (blocking; run in a thread of its own). Returns a CNI 1.0 result. Raises
        :class:`VethError` when the bridge is not ready (nothing was done) and undoes its
        own work before raising anything else."""
        try:
            check_id(container_id, self.ifname)
        except IpamError as exc:
            raise VethError(str(exc)) from exc
        with self._host() as host:
            bridge = self._bridge_ready(host)
            if bridge is None:
                raise VethError(f"bridge {self.bridge} is not set up yet")
            try:
                ip = self.ipam.allocate(container_id, self.ifname, requested_ip)
            except IpamError as exc:
                raise VethError(str(exc)) from exc
            try:
                return self._plug(host, bridge, container_id, netns, ip)
            except BaseException:
                with contextlib.suppress(Exception):
                    self._unplug(netns)
                with contextlib.suppress(Exception):
                    self.ipam.release(container_id, self.ifname, ip)
                raise

    def _plug(
        self,
        host: netlink.Netlink,
        bridge: netlink.Link,
        container_id: str,
        netns: str,
        ip: str,
    ) -> dict[str, Any]:
        veth = host_veth_name(container_id)
        pod_fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            host.add_veth(
                veth, self.ifname, peer_netns_fd=pod_fd, master=bridge.index, mtu=self.mtu
            )
            host_link = host.link(veth)
            if host_link is None:
                raise VethError(f"{veth} vanished after it was made")
            host.set_hairpin(host_link.index)
            pod_sock = netlink.socket_in(pod_fd, socket.AF_NETLINK, socket.SOCK_RAW, 0)
        finally:
            os.close(pod_fd)
        with netlink.Netlink(pod_sock) as pod:
            eth0 = pod.link(self.ifname)
            if eth0 is None:
                raise VethError(f"{self.ifname} is not in {netns} after it was made")
            broadcast = str(self.net.broadcast_address)
            pod.add_ipv4_address(eth0.index, ip, self.net.prefixlen, broadcast)
            # addressed before it comes up: coming up, it announces the address (the
            # plugin's gratuitous ARP)
            pod.set_arp_notify(eth0.index)
            pod.set_up(eth0.index)
            pod.add_default_route(eth0.index, self.gateway)
        # as the plugin: the bridge's MAC may change when a port is added
        bridge = host.link(self.bridge) or bridge
        return {
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": self.bridge, "mac": bridge.mac},
                {"name": veth, "mac": host_link.mac},
                {"name": self.ifname, "mac": eth0.mac, "sandbox": netns},
            ],
            "ips": [
                {"interface": 2, "address": f"{ip}/{self.net.prefixlen}", "gateway": self.gateway}
            ],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {},
        }

    def _unplug(self, netns: str) -> None:
        """Delete eth0 in ``netns`` (its host end goes with it); gone already is fine."""
        if not netns or not os.path.exists(netns):
            return
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            sock = netlink.socket_in(fd, socket.AF_NETLINK, socket.SOCK_RAW, 0)
        finally:
            os.close(fd)
        with netlink.Netlink(sock) as pod:
            pod.delete_link(self.ifname)

    def delete(self, container_id: str, netns: str, ip_hint: str | None = None) -> None:
        """DEL (blocking; run in a thread of its own): eth0 deleted, the address released.
        Idempotent; ``netns`` "" (gone) releases the address only, like the plugin."""
        try:
            check_id(container_id, self.ifname)
        except IpamError as exc:
            raise VethError(str(exc)) from exc
        # eth0 first: its address is free for another pod only once nothing carries it
        self._unplug(netns)
        self.ipam.release(container_id, self.ifname, ip_hint)
