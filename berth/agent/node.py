"""One node's identity and heartbeat: register the Node, renew its Lease in
``kube-node-lease``, and report its status (capacity, allocatable, addresses, conditions,
daemon endpoint, node info).

Concurrency contract: :meth:`NodeAgent.run` is one task per node; it only writes the Node and
its Lease, never pods. Writes are retried with backoff on the clock; a failed heartbeat is
logged and retried at the next interval (the node lifecycle controller decides what a
missed heartbeat means).
"""

from __future__ import annotations

import asyncio
import logging
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

from berth import __version__
from berth.agent.config import NodeConfig
from berth.api import storage as st
from berth.api.meta import format_micro_time, format_time
from berth.api.resources import LEASES, NODES
from berth.client import errors
from berth.client.interface import ApiClient, Obj
from berth.machinery.clock import Clock

log = logging.getLogger(__name__)

NODE_LEASE_NAMESPACE = "kube-node-lease"
# kubectl shows kubeletVersion in its VERSION column: the Kubernetes API level berth speaks, with
# the berth release as semver build metadata, so `kubectl get nodes` tells which release a node
# runs (upgrades are visible there too).
KUBELET_VERSION = f"v1.20.0+berth.{__version__}"
SHUTTING_DOWN = "node is shutting down"  # the Ready condition's message (as the kubelet's)
STALE_ATTEMPTS = 3
"""Reads of the Node a status post makes at most when it keeps changing under the write."""
ROOM_STEP = 64 << 20


def os_image(os_release: Path = Path("/etc/os-release")) -> str:
    """The host's PRETTY_NAME (what kubelet reports as osImage), or a plain fallback."""
    try:
        for line in os_release.read_text().splitlines():
            key, _, value = line.partition("=")
            if key == "PRETTY_NAME":
                return value.strip().strip('"') or "Linux"
    except OSError:
        pass
    return "Linux"


class NodeAgent:
    def __init__(
        self,
        client: ApiClient,
        clock: Clock,
        config: NodeConfig,
        *,
        runtime_name: str,
        daemon_port: int,
        lease_duration: int = 40,
        renew_interval: float = 10.0,
        status_report_interval: float = 60.0,
        status_check_interval: float | None = None,
        volume_room: Callable[[], tuple[int, int] | None] | None = None,
    ) -> None:
        self.client = client
        self.clock = clock
        self.config = config
        self.runtime_name = runtime_name
        self.daemon_port = daemon_port
        self.lease_duration = lease_duration
        self.renew_interval = renew_interval
        self.status_interval = status_report_interval
        self.check_interval = (
            renew_interval if status_check_interval is None else status_check_interval
        )
        self.node_uid = ""
        self.pod_cidr = ""
        self.registered = asyncio.Event()
        self.heartbeats = 0
        # Set when the host shuts down (berth.agent.shutdown): Ready=False from then on.
        self.shutting_down = False
        # (size, free) of the local volumes' filesystem, published with each status report
        self.volume_room = volume_room
        self._room_told: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        return self.config.name

    def _status(self) -> Obj:
        now = format_time(self.clock.now())
        cap = dict(self.config.capacity)

        def cond(type_: str, status: str, reason: str, *, message: str) -> Obj:
            return {
                "type": type_,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }

        return {
            "capacity": cap,
            "allocatable": cap,
            "addresses": [
                {"type": "InternalIP", "address": self.config.address},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.daemon_port}},
            "nodeInfo": {
                "machineID": self.name,
                "systemUUID": self.name,
                "bootID": self.name,
                "kernelVersion": platform.release(),
                "osImage": os_image(),
                "containerRuntimeVersion": f"{self.runtime_name}://{__version__}",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "conditions": [
                cond(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    message="sufficient memory",
                ),
                cond(
                    "DiskPressure", "False", "KubeletHasNoDiskPressure", message="no disk pressure"
                ),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", message="sufficient PID"),
                cond("Ready", "False", "KubeletNotReady", message=SHUTTING_DOWN)
                if self.shutting_down
                else cond(
                    "Ready", "True", "KubeletReady", message="berth agent is posting ready status"
                ),
            ],
        }

    async def register(self) -> None:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            **self.config.labels,
        }
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": labels},
            "spec": {"taints": list(self.config.taints)} if self.config.taints else {},
        }
        try:
            node = await self.client.create(NODES, body)
        except errors.AlreadyExists:
            node = await self.client.get(NODES, self.name)
        self.node_uid = str(node["metadata"].get("uid", ""))
        self.pod_cidr = str((node.get("spec") or {}).get("podCIDR") or "")
        await self.post_status()
        self.registered.set()

    async def post_status(self, *, only_if_not_ready: bool = False) -> bool:
        """Post status (fetching the Node first, as the kubelet does). With
        ``only_if_not_ready``, post only when the server's Ready is not True — e.g. after the
        node lifecycle controller marked it Unknown. Returns whether it posted."""
        for _attempt in range(STALE_ATTEMPTS):
            try:
                return await self._post_status(only_if_not_ready=only_if_not_ready)
            except errors.Conflict:
                continue  # the Node changed between our read and write: read it again
        raise errors.Conflict(409, "Conflict", f"node {self.name} kept changing")

    async def _post_status(self, *, only_if_not_ready: bool) -> bool:
        status = self._status()
        node = await self.client.get(NODES, self.name)
        if only_if_not_ready:
            ready = [
                c
                for c in (node.get("status") or {}).get("conditions") or []
                if c.get("type") == "Ready"
            ]
            if ready and ready[0].get("status") == "True":
                self.pod_cidr = str((node.get("spec") or {}).get("podCIDR") or "")
                return False
        self.pod_cidr = str((node.get("spec") or {}).get("podCIDR") or "")
        old = {c.get("type"): c for c in (node.get("status") or {}).get("conditions") or []}
        for c in status["conditions"]:
            prev = old.get(c["type"])
            if prev is not None and prev.get("status") == c["status"]:
                c["lastTransitionTime"] = prev.get("lastTransitionTime", c["lastTransitionTime"])
        # The list is written whole: the conditions other writers own (NetworkUnavailable, a
        # problem detector's) are carried along, over the version they were read from.
        ours = {c["type"] for c in status["conditions"]}
        status["conditions"] += [dict(c) for t, c in old.items() if t not in ours]
        patch: Obj = {"status": status}
        version = (node.get("metadata") or {}).get("resourceVersion")
        if version:
            patch["metadata"] = {"resourceVersion": version}
        await self.client.patch(NODES, self.name, patch, subresource="status")
        await self.report_room(node)
        return True

    async def report_room(self, node: Obj) -> None:
        """Publish the local volumes' room on the Node (annotations, see
        :data:`berth.api.storage.LOCAL_AVAILABLE_ANNOTATION`) when it moved by more than
        1% of the filesystem (at least 64 MiB) since last told: not a write per heartbeat."""
        if self.volume_room is None:
            return
        room = await asyncio.to_thread(self.volume_room)
        if room is None:
            return
        size, free = room
        annotations = (node.get("metadata") or {}).get("annotations") or {}
        told = self._room_told
        if told is None and annotations.get(st.LOCAL_AVAILABLE_ANNOTATION) == st.room_text(free):
            told = room  # already on the Node (an agent restart)
        step = max(size // 100, ROOM_STEP)
        if told is not None and told[0] == size and abs(told[1] - free) < step:
            return
        patch = {
            "metadata": {
                "annotations": {
                    st.LOCAL_CAPACITY_ANNOTATION: st.room_text(size),
                    st.LOCAL_AVAILABLE_ANNOTATION: st.room_text(free),
                }
            }
        }
        await self.client.patch(NODES, self.name, patch)
        self._room_told = room

    async def renew_lease(self) -> None:
        now = format_micro_time(self.clock.now())
        spec: dict[str, Any] = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": self.lease_duration,
            "renewTime": now,
        }
        try:
            await self.client.patch(
                LEASES, self.name, {"spec": spec}, namespace=NODE_LEASE_NAMESPACE
            )
        except errors.NotFound:
            body: Obj = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.name,
                    "namespace": NODE_LEASE_NAMESPACE,
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "Node",
                            "name": self.name,
                            "uid": self.node_uid,
                        }
                    ]
                    if self.node_uid
                    else [],
                },
                "spec": spec,
            }
            await self.client.create(LEASES, body, namespace=NODE_LEASE_NAMESPACE)
        self.heartbeats += 1

    async def register_retrying(self) -> None:
        """Register, retrying with backoff until it succeeds: an API server still starting,
        or a Node that kept changing under the first status post (the IPAM controller's
        podCIDR, the nodes phase's labels, taints: each a Conflict), is no reason to exit."""
        delay = 0.2
        while True:
            try:
                await self.register()
                return
            except (errors.ApiError, OSError) as exc:
                log.warning("node %s: registration failed: %s", self.name, exc)
                await self.clock.sleep(delay)
                delay = min(delay * 2, 7.0)

    async def run(self) -> None:
        """Register, then heartbeat (Lease) and report status until cancelled."""
        await self.register_retrying()
        last_status = last_check = self.clock.monotonic()
        while True:
            try:
                await self.renew_lease()
                now = self.clock.monotonic()
                if now - last_status >= self.status_interval:
                    await self.post_status()
                    last_status = last_check = now
                elif now - last_check >= self.check_interval:
                    last_check = now
                    if await self.post_status(only_if_not_ready=True):
                        last_status = now
            except (errors.ApiError, OSError) as exc:
                log.warning("node %s: heartbeat failed: %s", self.name, exc)
            await self.clock.sleep(self.renew_interval)
