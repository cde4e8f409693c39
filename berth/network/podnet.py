"""The node's pod network: bridge + host-local IPAM + portmap, plus loopback, via CNI."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from berth.network.cni import Attachment, CniError, CniInvoker, first_ipv4

CNI_VERSION = "1.0.0"
NETWORK_NAME = "berth"
BRIDGE = "cni0"
LOOPBACK_CONFLIST: dict[str, Any] = {
    "cniVersion": CNI_VERSION,
    "name": "berth-lo",
    "plugins": [{"type": "loopback"}],
}


def node_conflist(
    *, pod_cidr: str, bridge: str = BRIDGE, mtu: int | None = None, portmap: bool = True
) -> dict[str, Any]:
    """The network-config list for pods on a node owning ``pod_cidr``.

    * ``isGateway``: the bridge holds the subnet's first address and pods route through it;
    * ``hairpinMode``: a pod reaching its own Service may be DNATed back to itself, and the
      reply must be allowed back out of the port it came in on;
    * ``ipMasq: false``: pod traffic keeps its source address between nodes (host-gw); the
      service proxy masquerades where it must;
    * ``portmap`` serves ``hostPort``s (declares the ``portMappings`` capability).
    """
    net = ipaddress.ip_network(pod_cidr, strict=True)
    bridge_conf: dict[str, Any] = {
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "ipMasq": False,
        "hairpinMode": True,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": str(net), "gateway": str(net.network_address + 1)}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "/var/lib/cni/networks",
        },
    }
    if mtu is not None:
        bridge_conf["mtu"] = mtu
    plugins: list[dict[str, Any]] = [bridge_conf]
    if portmap:
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}, "snat": True})
    return {"cniVersion": CNI_VERSION, "name": NETWORK_NAME, "plugins": plugins}


@dataclass(frozen=True)
class PodAddress:
    ip: str
    gateway: str | None


@dataclass(frozen=True)
class HostPort:
    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""

    def as_capability(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol.lower(),
        }
        if self.host_ip:
            doc["hostIP"] = self.host_ip
        return doc


class PodNetwork:
    """Attaches pod network namespaces to the node's pod network (and detaches them)."""

    def __init__(self, invoker: CniInvoker, conflist: Mapping[str, Any]) -> None:
        self.invoker = invoker
        self.conflist = conflist
        # The chain for a pod without hostPorts: portmap left out. Given no port mappings
        # its ADD only passes prevResult on, yet each run is a plugin process (~3 ms CPU
        # ADD, more on DEL, where it looks for chains to remove): most pods have no
        # hostPort. Chosen from the pod's ports on ADD and on DEL alike (they are fixed
        # for a pod's life, and kept in its sandbox record).
        self._portless = {
            **conflist,
            "plugins": [p for p in conflist["plugins"] if p.get("type") != "portmap"],
        }

    def _chain(self, ports: Sequence[HostPort]) -> Mapping[str, Any]:
        return self.conflist if ports else self._portless

    def _attachments(
        self,
        sandbox_id: str,
        netns: str,
        k8s_args: Mapping[str, str],
        ports: Sequence[HostPort],
    ) -> tuple[Attachment, Attachment]:
        lo = Attachment(container_id=sandbox_id, netns=netns, ifname="lo", args=k8s_args)
        eth0 = Attachment(
            container_id=sandbox_id,
            netns=netns,
            ifname="eth0",
            args=k8s_args,
            capability_args={"portMappings": [p.as_capability() for p in ports]} if ports else {},
        )
        return lo, eth0

    async def attach(
        self,
        *,
        sandbox_id: str,
        netns: str,
        namespace: str,
        name: str,
        ports: Sequence[HostPort] = (),
        requested_ip: str | None = None,
    ) -> PodAddress:
        """ADD lo and eth0 (concurrently). A failed ADD is followed by DEL of both (plugins
        leave half-made links).

        ``requested_ip`` asks host-local for that exact address (``CNI_ARGS`` ``IP=``), for
        callers that choose pod IPs themselves."""
        k8s_args = {
            "IgnoreUnknown": "1",
            "K8S_POD_NAMESPACE": namespace,
            "K8S_POD_NAME": name,
            "K8S_POD_INFRA_CONTAINER_ID": sandbox_id,
        }
        if requested_ip:
            k8s_args["IP"] = requested_ip
        lo, eth0 = self._attachments(sandbox_id, netns, k8s_args, ports)
        # Both at once: they touch different interfaces of the netns, and each is a chain of
        # plugin processes a busy node waits for (one after the other, lo's wait was added
        # to every pod's start).
        done = await asyncio.gather(
            self.invoker.add(LOOPBACK_CONFLIST, lo),
            self.invoker.add(self._chain(ports), eth0),
            return_exceptions=True,
        )
        try:
            for outcome in done:
                if isinstance(outcome, BaseException):
                    raise outcome
            ip, gateway = first_ipv4(cast(Mapping[str, Any], done[1]))
        except CniError:
            await self.detach(sandbox_id=sandbox_id, netns=netns, ports=ports)
            raise
        return PodAddress(ip=ip, gateway=gateway)

    async def detach(self, *, sandbox_id: str, netns: str, ports: Sequence[HostPort] = ()) -> None:
        """DEL eth0 and lo (concurrently); safe to repeat and safe after the netns is gone."""
        lo, eth0 = self._attachments(sandbox_id, netns, {"IgnoreUnknown": "1"}, ports)
        # Both at once, as in attach: a failure of one still lets the other finish.
        done = await asyncio.gather(
            self.invoker.delete(self._chain(ports), eth0),
            self.invoker.delete(LOOPBACK_CONFLIST, lo),
            return_exceptions=True,
        )
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome

    async def check(self, *, sandbox_id: str, netns: str) -> None:
        """CHECK the pod's eth0 against its cached ADD result."""
        _, eth0 = self._attachments(sandbox_id, netns, {"IgnoreUnknown": "1"}, ())
        await self.invoker.check(self.conflist, eth0)
