"""The pod manager test rig shared by the agent's pod tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from berth.agent.pods import PodManager
from berth.agent.simulated import SimulatedRuntime
from berth.agent.withdrawal import EndpointWithdrawal
from berth.api.resources import EVENTS, PODS
from berth.client.interface import Obj
from berth.client.keys import ObjectKey
from berth.machinery.clock import Clock, FakeClock
from berth.machinery.events import EventRecorder
from berth.machinery.informer import Informer
from tests.harness.fake_client import FakeClient

KEY = ObjectKey("default/p")


class Rig:
    """One node's PodManager on the simulated runtime, a fake API and a fake clock; the pod
    under test is ``default/p`` on node n1."""

    def __init__(
        self,
        *,
        start_delay: float = 0.0,
        withdrawal: Callable[[Clock], EndpointWithdrawal] | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.view = withdrawal(self.clock) if withdrawal is not None else None
        self.api = FakeClient(now=self.clock.now)
        self.runtime = SimulatedRuntime(self.clock, start_delay=start_delay)
        self.pods = Informer(self.api, PODS, clock=self.clock)
        recorder = EventRecorder(self.api, self.clock, component="kubelet", host="n1")
        self.manager = self._agent(recorder=lambda _n: recorder, withdrawal=self.view)

    def restart_agent(self) -> PodManager:
        """A new agent process: the same runtime state and API, empty memory (no event
        recorder, no withdrawal view); it becomes the rig's manager."""
        self.manager = self._agent()
        return self.manager

    def _agent(self, **extra: Any) -> PodManager:
        return PodManager(
            self.api,
            self.clock,
            self.runtime,
            pods=self.pods,
            node_address=lambda n: "192.0.2.10" if n == "n1" else None,
            node_cidr=lambda _n: "10.244.3.0/24",
            **extra,
        )

    def events(self) -> list[str]:
        return [e["reason"] for e in self.api.objects(EVENTS)]

    def add(self, **spec: Any) -> None:
        body: Obj = {
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "web:1"}], **spec},
        }
        self.api.seed(PODS, body)

    async def started(self, **spec: Any) -> None:
        """Seeds ``default/p`` (:meth:`add`) and syncs once, so its containers start."""
        self.add(**spec)
        await self.sync()

    async def exit(self, code: int) -> None:
        """Ends the ``app`` container of ``default/p`` with ``code`` (or records the code of an
        exit :meth:`exit_unrecorded` left without one) and syncs."""
        self.runtime.exit("default", "p", "app", code=code)
        await self.sync()

    async def exit_unrecorded(self) -> None:
        """Ends the ``app`` container of ``default/p`` without a recorded exit code yet, and
        syncs."""
        self.runtime.exit_unrecorded("default", "p", "app")
        await self.sync()

    async def sync(self) -> None:
        await self.pods.relist()
        await self.manager.reconcile(KEY)
        await self.pods.relist()

    async def delete(self, grace: int) -> None:
        await self.api.delete(PODS, "p", namespace="default", grace_period_seconds=grace)

    def gone(self) -> bool:
        return self.api.stored(PODS, "default/p") is None

    def status(self) -> Obj:
        pod = self.api.stored(PODS, "default/p")
        assert pod is not None
        result: Obj = pod["status"]
        return result

    def container(self, name: str = "app") -> Obj:
        return next(c for c in self.status()["containerStatuses"] if c["name"] == name)

    def cond(self, type_: str) -> str:
        return str(next(c for c in self.status()["conditions"] if c["type"] == type_)["status"])


def run(coro: Any) -> None:
    asyncio.run(coro)
