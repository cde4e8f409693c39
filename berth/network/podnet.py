"""The node's pod network: bridge + host-local IPAM + portmap, via CNI.

The pod's ``lo`` is not CNI's: the runtime brings it up when it makes the namespace
(:mod:`berth.runtime.netns`), one plugin process less per pod start and stop.

A pod without hostPorts (nearly all) gets its eth0 in-process (:mod:`berth.network.vethbridge`,
the same veth, address, routes and host-local files as the plugins'), once the node's first
pod has had the ``bridge`` plugin make the bridge; the plugins stay for hostPort pods
(``portmap``) and as the fallback whenever the in-process path cannot do it."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berth.network.cni import Attachment, CniError, CniInvoker, first_ipv4
from berth.network.hostlocal import HostLocalStore
from berth.network.vethbridge import VethBridge, VethError, in_own_thread

log = logging.getLogger(__name__)

CNI_VERSION = "1.0.0"
NETWORK_NAME = "berth"
BRIDGE = "cni0"
_OLD_LOOPBACK_NETWORK = "berth-lo"  # lo was an attachment of this CNI network in earlier versions


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


def veth_bridge(conflist: Mapping[str, Any], *, host_netns: Path | None = None) -> VethBridge:
    """The in-process equivalent of ``conflist``'s bridge plugin (and its host-local IPAM)."""
    (conf,) = [p for p in conflist["plugins"] if p.get("type") == "bridge"]
    ipam = conf["ipam"]
    if ipam.get("type") != "host-local" or not conf.get("isGateway") or conf.get("ipMasq"):
        raise ValueError("only a gateway bridge with host-local IPAM and no ipMasq is done here")
    ((first_range,),) = ipam["ranges"]
    subnet = str(first_range["subnet"])
    gateway = str(first_range["gateway"])
    store = HostLocalStore(Path(ipam["dataDir"]), str(conflist["name"]), subnet, gateway)
    return VethBridge(
        bridge=str(conf["bridge"]),
        subnet=subnet,
        gateway=gateway,
        ipam=store,
        mtu=conf.get("mtu"),
        host_netns=host_netns,
    )


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

    def __init__(
        self,
        invoker: CniInvoker,
        conflist: Mapping[str, Any],
        *,
        in_process: VethBridge | None = None,
    ) -> None:
        self.invoker = invoker
        self.conflist = conflist
        # eth0 of pods without hostPorts, without the plugins' processes (None: plugins only)
        self.in_process = in_process
        self._fallbacks: set[str] = set()  # why the in-process path was not taken (logged once)
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

    def _attachment(
        self,
        sandbox_id: str,
        netns: str,
        k8s_args: Mapping[str, str],
        ports: Sequence[HostPort],
    ) -> Attachment:
        return Attachment(
            container_id=sandbox_id,
            netns=netns,
            ifname="eth0",
            args=k8s_args,
            capability_args={"portMappings": [p.as_capability() for p in ports]} if ports else {},
        )

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
        """ADD eth0. A failed ADD is followed by a DEL (plugins leave half-made links).

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
        eth0 = self._attachment(sandbox_id, netns, k8s_args, ports)
        if self.in_process is not None and not ports:
            veth = self.in_process
            try:
                result = await in_own_thread(lambda: veth.add(sandbox_id, netns, requested_ip))
            except (VethError, OSError) as exc:
                # nothing of it left (it undoes its own work): the plugins do it instead
                self._fell_back(f"ADD: {exc}")
            else:
                self.invoker.remember(str(self.conflist["name"]), eth0, result)
                ip, gateway = first_ipv4(result)
                return PodAddress(ip=ip, gateway=gateway)
        try:
            result = await self.invoker.add(self._chain(ports), eth0)
            ip, gateway = first_ipv4(result)
        except CniError:
            await self.detach(sandbox_id=sandbox_id, netns=netns, ports=ports)
            raise
        return PodAddress(ip=ip, gateway=gateway)

    def _fell_back(self, why: str) -> None:
        if why not in self._fallbacks and len(self._fallbacks) < 100:
            self._fallbacks.add(why)
            log.info("pod network: CNI plugins used (%s)", why)

    async def detach(
        self,
        *,
        sandbox_id: str,
        netns: str,
        ports: Sequence[HostPort] = (),
        ip: str | None = None,
    ) -> None:
        """DEL eth0; safe to repeat and safe after the netns is gone. ``ip``: the address the
        pod is recorded with (found faster; the store is searched by owner anyway)."""
        eth0 = self._attachment(sandbox_id, netns, {"IgnoreUnknown": "1"}, ports)
        done = False
        if self.in_process is not None and not ports:
            veth = self.in_process
            try:
                await in_own_thread(lambda: veth.delete(sandbox_id, netns, ip))
            except (VethError, OSError) as exc:
                self._fell_back(f"DEL: {exc}")
            else:
                self.invoker.forget(str(self.conflist["name"]), eth0)
                done = True
        if not done:
            await self.invoker.delete(self._chain(ports), eth0)
        # A pod made before lo left CNI has the loopback plugin's cached ADD result: its
        # namespace (and lo) go with the sandbox, the cache file must not stay behind.
        (self.invoker.cache_dir / f"{_OLD_LOOPBACK_NETWORK}-{sandbox_id}-lo").unlink(
            missing_ok=True
        )

    async def check(self, *, sandbox_id: str, netns: str) -> None:
        """CHECK the pod's eth0 against its cached ADD result."""
        eth0 = self._attachment(sandbox_id, netns, {"IgnoreUnknown": "1"}, ())
        await self.invoker.check(self.conflist, eth0)
