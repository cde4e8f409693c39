"""One process, many nodes: a :class:`Fleet` runs a :class:`~berth.agent.node.NodeAgent` per
configured node, one shared pod informer (a field selector when there is a single node), one
:class:`~berth.agent.pods.PodManager` and one log server — so hundreds of simulated nodes cost
one watch, not hundreds.

Concurrency contract: everything runs on one loop; pod events and runtime changes only enqueue
pod keys; node agents run as independent heartbeat tasks.

Container exits reach the pod manager one of three ways, cheapest first: the runtime calls
back (:class:`NotifiesEndedContainers`: simulated; runc, through a pidfd per container shim);
the runtime is polled for what ended (:class:`ReportsEndedContainers`, runc: a stat per
container, every 0.5 s when nothing calls back, every 5 s as a safety net when something
does, with a slow full relist besides); or every pod is re-reconciled each second (any other
runtime).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from aiohttp import web

from berth.agent.authz import AgentAuthorizer, subject_access_reviewer
from berth.agent.config import POD_WORKERS, NodeConfig, ServerConfig
from berth.agent.node import NodeAgent
from berth.agent.pods import PodManager
from berth.agent.runtime import Runtime, SandboxConfig
from berth.agent.server import make_app, serve, tls_context
from berth.agent.simulated import SimulatedRuntime
from berth.agent.volumes import LocalVolumes
from berth.agent.withdrawal import EndpointWithdrawal
from berth.api.resources import PODS
from berth.client import errors
from berth.client.interface import ApiClient
from berth.machinery.clock import Clock
from berth.machinery.events import EventRecorder
from berth.machinery.informer import Handlers, Informer
from berth.machinery.objects import Frozen, key_of, meta
from berth.runtime import timeline

log = logging.getLogger(__name__)

# Polled runtimes: how often to ask what ended, and how often to re-reconcile every pod anyway.
CHANGE_POLL_PERIOD = 0.5
# ... when the runtime also calls back on each exit (the poll only catches what a callback
# could not watch, e.g. a container adopted without a recorded shim).
NOTIFIED_POLL_PERIOD = 5.0
RESYNC_PERIOD = 10.0
# Runtimes that report nothing: every pod is re-reconciled this often.
RELIST_PERIOD = 1.0


@runtime_checkable
class ReportsEndedContainers(Protocol):
    """A runtime that can say cheaply which pods' containers ended since it was last asked."""

    def poll_changes(self) -> list[SandboxConfig]: ...


@runtime_checkable
class NotifiesEndedContainers(Protocol):
    """A runtime that calls ``on_change`` callbacks with a pod's sandbox when a container
    of that pod ended."""

    on_change: list[Callable[[SandboxConfig], None]]


LOCAL_VOLUME_SWEEP = 5.0
"""Seconds between two looks for deleted local volumes whose directory is still here."""


class Fleet:
    def __init__(
        self,
        client: ApiClient,
        clock: Clock,
        runtime: Runtime,
        *,
        nodes: Sequence[NodeConfig],
        server: ServerConfig | None = None,
        lease_duration: int = 40,
        renew_interval: float = 10.0,
        status_report_interval: float = 60.0,
        status_check_interval: float | None = None,
        workers: int = POD_WORKERS,
        node_clients: Mapping[str, ApiClient] | None = None,
        relist_period: float | None = None,
        change_poll_period: float | None = None,
        events: bool = True,
        withdrawal: EndpointWithdrawal | None = None,
        local_volumes: LocalVolumes | None = None,
    ) -> None:
        """``client`` watches pods; each node writes with ``node_clients[name]`` when given
        (its own identity, as the API server's node restriction requires), else ``client``."""
        self.client = client
        self.clock = clock
        self.runtime = runtime
        self.server = server
        port = server.port if server else 10250
        self.node_clients = dict(node_clients or {})
        self._recorders: dict[str, EventRecorder] = {}
        # Exits reach the pod manager by callback (simulated), by polling what ended, or by
        # re-reconciling every pod (see the module docstring). A full relist forks the
        # runtime's status command per container: at 1 s it was CPU taken from starting pods.
        notifies = isinstance(runtime, NotifiesEndedContainers)
        if change_poll_period is None:
            change_poll_period = NOTIFIED_POLL_PERIOD if notifies else CHANGE_POLL_PERIOD
        self.change_poll_period = (
            change_poll_period if isinstance(runtime, ReportsEndedContainers) else None
        )
        if relist_period is not None or isinstance(runtime, SimulatedRuntime):
            self.relist_period = relist_period
        elif self.change_poll_period:
            self.relist_period = RESYNC_PERIOD
        else:
            self.relist_period = RELIST_PERIOD
        self.agents = {
            n.name: NodeAgent(
                self.node_clients.get(n.name, client),
                clock,
                n,
                runtime_name=runtime.name,
                daemon_port=port,
                lease_duration=lease_duration,
                renew_interval=renew_interval,
                status_report_interval=status_report_interval,
                status_check_interval=status_check_interval,
                # the host's local volumes are its first node's (a runc agent runs one node)
                volume_room=local_volumes.room
                if local_volumes is not None and n.name == local_volumes.node
                else None,
            )
            for n in nodes
        }
        selector = f"spec.nodeName={nodes[0].name}" if len(nodes) == 1 else None
        self.pods = Informer(client, PODS, clock=clock, field_selector=selector)
        self.manager = PodManager(
            client,
            clock,
            runtime,
            pods=self.pods,
            node_address=self._address,
            node_cidr=self._cidr,
            workers=workers,
            node_client=lambda node: self.node_clients.get(node, client),
            recorder=self._recorder if events else None,
            withdrawal=withdrawal,
            local_volumes=local_volumes,
        )
        self.local_volumes = local_volumes
        self.pods.add_handlers(
            Handlers(
                on_add=self._pod_event,
                on_update=self._pod_updated,
                on_delete=self._pod_event,
            )
        )
        if isinstance(runtime, NotifiesEndedContainers):
            runtime.on_change.append(self.manager.on_sandbox_change)
        self._tasks: list[asyncio.Task[None]] = []
        self._node_tasks: dict[str, asyncio.Task[None]] = {}
        self._runner: web.AppRunner | None = None

    def _recorder(self, node: str) -> EventRecorder:
        if node not in self._recorders:
            self._recorders[node] = EventRecorder(
                self.node_clients.get(node, self.client), self.clock, component="kubelet", host=node
            )
        return self._recorders[node]

    def _address(self, node: str) -> str | None:
        agent = self.agents.get(node)
        return agent.config.address if agent is not None else None

    def _cidr(self, node: str) -> str:
        agent = self.agents.get(node)
        return agent.pod_cidr if agent is not None else ""

    def _pod_updated(self, old: Frozen, new: Frozen) -> None:
        # The watch bringing back the agent's own status write: a reconcile would find
        # nothing to do (it re-read every container's state from the runtime to learn so).
        if not self.manager.is_status_echo(old, new):
            self._pod_event(new)

    def _pod_event(self, pod: Frozen) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if node in self.agents or key_of(pod) in self.manager.records:
            if node in self.agents:
                timeline.stamp(str(meta(pod).get("uid") or ""), "seen")
                self.manager.observe(pod)
            self.manager.enqueue(key_of(pod))

    async def start(self) -> None:
        if self.server is not None:
            ctx = (
                tls_context(
                    cert_file=self.server.cert_file,
                    key_file=self.server.key_file,
                    client_ca_file=self.server.client_ca_file,
                )
                if self.server.cert_file
                else None
            )
            authorizer = AgentAuthorizer(self.clock, subject_access_reviewer(self.client))
            app = make_app(
                self.manager,
                self.runtime,
                authorizer=authorizer,
                default_node=next(iter(self.agents)),
            )
            self._runner = await serve(
                app,
                address=self.server.address,
                port=self.server.port,
                ssl_context=ctx,
            )
        for agent in self.agents.values():
            task = asyncio.create_task(agent.run(), name=f"node-{agent.name}")
            self._node_tasks[agent.name] = task
            self._tasks.append(task)
        await asyncio.gather(*(a.registered.wait() for a in self.agents.values()))
        adopted = await self.manager.recover(set(self.agents))
        if adopted:
            log.info(
                "adopted %d pod(s) still running in the %s runtime", adopted, self.runtime.name
            )
        self._tasks.append(asyncio.create_task(self.pods.run(), name="agent-pod-informer"))
        await self.pods.wait_synced()
        self._tasks.append(asyncio.create_task(self.manager.controller.run(), name="agent-pods"))
        if self.relist_period:
            self._tasks.append(asyncio.create_task(self._relist_loop(self.relist_period)))
        if self.change_poll_period and isinstance(self.runtime, ReportsEndedContainers):
            poll = self._poll_loop(self.runtime, self.change_poll_period)
            self._tasks.append(asyncio.create_task(poll, name="agent-runtime-changes"))
        if self.local_volumes is not None:
            sweep = self._sweep_loop(self.local_volumes)
            self._tasks.append(asyncio.create_task(sweep, name="agent-local-volumes"))

    async def _sweep_loop(self, local: LocalVolumes) -> None:
        """Remove the directories of deleted local volumes (see berth.agent.volumes)."""
        client = self.node_clients.get(local.node, self.client)
        while True:
            try:
                await local.sweep(client)
            except (errors.ApiError, OSError) as exc:
                log.warning("local volume cleanup failed: %s", exc)
            await self.clock.sleep(LOCAL_VOLUME_SWEEP)

    async def _relist_loop(self, period: float) -> None:
        while True:
            await self.clock.sleep(period)
            self.manager.relist()

    async def _poll_loop(self, runtime: ReportsEndedContainers, period: float) -> None:
        while True:
            await self.clock.sleep(period)
            for sandbox in runtime.poll_changes():
                self.manager.on_sandbox_change(sandbox)

    async def stop_node(self, node: str) -> None:
        """Simulate a node dying: its heartbeats stop and its pods are no longer managed
        (nothing is reported or deleted on its behalf; the runtime forgets its containers)."""
        agent = self.agents.pop(node, None)
        task = self._node_tasks.pop(node, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if agent is not None:
            for key, rec in list(self.manager.records.items()):
                if rec.node == node:
                    self.manager.enqueue(key)

    def stop_reconciling(self) -> None:
        """Stop every pod-side task (informer, reconcile workers, polls) but the node
        heartbeats: nothing restarts a container from now on (graceful node shutdown)."""
        self.manager.queue.shutdown()
        heartbeats = set(self._node_tasks.values())
        for t in self._tasks:
            if t not in heartbeats:
                t.cancel()

    async def stop(self) -> None:
        self.manager.queue.shutdown()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
