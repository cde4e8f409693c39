"""A deterministic rig for controller unit tests: fake API, fake clock, informers fed by
explicit relists, and a pretend kubelet that moves pods along by hand."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

from berth.api.meta import format_time
from berth.api.resources import PODS
from berth.client.interface import Obj
from berth.controllers.context import Context
from berth.machinery.clock import FakeClock
from berth.machinery.controller import Controller
from berth.machinery.events import EventRecorder
from berth.machinery.informer import InformerFactory, Transform
from berth.machinery.objects import cache_view
from tests.harness.fake_client import FakeClient

T = TypeVar("T")


def run(fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(fn())


class Harness:
    def __init__(
        self,
        api: Callable[[Callable[[], datetime]], FakeClient] = FakeClient,
        transform: Transform = cache_view,
    ) -> None:
        """``api`` makes the fake API from a clock; ``transform``: what informers cache."""
        self.clock = FakeClock()
        self.api = api(self.clock.now)
        self.informers = InformerFactory(self.api, clock=self.clock, transform=transform)
        self.recorder = EventRecorder(self.api, self.clock, component="test")
        self.ctx = Context(self.api, self.informers, self.clock, self.recorder)

    async def sync(self) -> None:
        """Bring every informer cache up to date with the fake API (handlers fire)."""
        for inf in self.informers.all():
            await inf.relist()

    async def converge(
        self,
        *controllers: Controller,
        rounds: int = 30,
        kubelet: bool = True,
        ready: Callable[[Obj], bool] = lambda _p: True,
    ) -> None:
        """sync → reconcile everything queued → kubelet step, until nothing changes."""
        for _ in range(rounds):
            before = len(self.api.actions)
            await self.sync()
            for c in controllers:
                await c.drain()
            if kubelet:
                await self.kubelet_step(ready=ready)
            if len(self.api.actions) == before:
                return
        raise AssertionError("controllers did not converge")

    async def kubelet_step(self, *, ready: Callable[[Obj], bool] = lambda _p: True) -> None:
        """Schedule pods onto ``node-1``, mark them Running (and Ready if ``ready(pod)``), and
        finish graceful deletions."""
        for pod in self.api.objects(PODS):
            meta = pod["metadata"]
            ns, name = meta["namespace"], meta["name"]
            if meta.get("deletionTimestamp"):
                await self.api.delete(PODS, name, namespace=ns, grace_period_seconds=0)
                continue
            if not pod["spec"].get("nodeName"):
                await self.api.create_subresource(
                    PODS,
                    name,
                    "binding",
                    body={"target": {"kind": "Node", "name": pinned_node(pod) or "node-1"}},
                    namespace=ns,
                )
            want_ready = "True" if ready(pod) else "False"
            status = pod.get("status") or {}
            conds = {c["type"]: c["status"] for c in status.get("conditions") or []}
            if status.get("phase") == "Running" and conds.get("Ready") == want_ready:
                continue
            stamp = format_time(self.clock.now())
            await self.api.patch(
                PODS,
                name,
                {
                    "status": {
                        "phase": "Running",
                        "conditions": [
                            {"type": "PodScheduled", "status": "True"},
                            {"type": "Ready", "status": want_ready, "lastTransitionTime": stamp},
                        ],
                    }
                },
                namespace=ns,
                subresource="status",
            )


def pinned_node(pod: Obj) -> str | None:
    """The node a DaemonSet pod is pinned to through node affinity, if any."""
    affinity = (pod["spec"].get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    for term in required.get("nodeSelectorTerms") or []:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name":
                return str(field["values"][0])
    return None


def pod_template(labels: dict[str, str], image: str = "nginx:1") -> Obj:
    return {
        "metadata": {"labels": dict(labels)},
        "spec": {"containers": [{"name": "c", "image": image}]},
    }
