"""A burst of pods on one node starts together: a pod waiting on its runtime (CNI, shim,
runc) holds one reconcile worker, and the default pool (POD_WORKERS) takes a 30-pod burst at
once, so pod 9 of a burst does not queue behind the first 8 (bench/pods.py --timeline showed
seconds of such waits with 8 workers)."""

from __future__ import annotations

import asyncio

from berth.agent.pods import PodManager
from berth.agent.runtime import SandboxConfig
from berth.agent.simulated import SimulatedRuntime
from berth.api.resources import PODS
from berth.machinery.clock import Clock, FakeClock
from berth.machinery.informer import Informer
from tests.harness.fake_client import FakeClient

BURST = 30  # pods bound to one node at once


class GatedRuntime(SimulatedRuntime):
    """Sandbox creation waits for a gate, as a real one waits for its CNI plugins."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.gate = asyncio.Event()
        self.waiting = 0

    async def create_sandbox(self, config: SandboxConfig) -> str:
        self.waiting += 1
        await self.gate.wait()
        return await super().create_sandbox(config)


def test_every_pod_of_a_burst_reaches_its_runtime_at_once() -> None:
    async def body() -> None:
        clock = FakeClock()
        api = FakeClient(now=clock.now)
        runtime = GatedRuntime(clock)
        pods = Informer(api, PODS, clock=clock)
        manager = PodManager(
            api,
            clock,
            runtime,
            pods=pods,
            node_address=lambda n: "192.0.2.10" if n == "n1" else None,
            node_cidr=lambda _n: "10.244.3.0/24",
        )
        for i in range(BURST):
            api.seed(
                PODS,
                {
                    "metadata": {"name": f"p{i}", "namespace": "default"},
                    "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "web:1"}]},
                },
            )
        await pods.relist()
        for key in list(pods.keys()):
            manager.enqueue(key)
        task = asyncio.create_task(manager.controller.run())
        await clock.step(0)
        assert runtime.waiting == BURST
        runtime.gate.set()
        await clock.step(0)
        assert len(await runtime.list_sandboxes()) == BURST
        manager.queue.shutdown()
        await asyncio.wait_for(task, 5)

    asyncio.run(body())
