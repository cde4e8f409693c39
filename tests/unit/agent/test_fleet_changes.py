"""How container exits reach the pod manager: a runtime that can say what ended (runc) is
polled for just that, twice a second, and every pod is re-reconciled only as a slow safety
net — not every second, which forked the runtime's status command per pod per second."""

from __future__ import annotations

import asyncio
from pathlib import Path

from berth.agent.config import NodeConfig
from berth.agent.fleet import CHANGE_POLL_PERIOD, NOTIFIED_POLL_PERIOD, RESYNC_PERIOD, Fleet
from berth.agent.runtime import SandboxConfig
from berth.client.keys import make_key
from berth.machinery.clock import FakeClock
from berth.runtime.agent_runtime import RuncAgentRuntime
from berth.runtime.images import ImageService
from berth.runtime.runc import RuncRuntime
from berth.runtime.store import ContentStore
from tests.harness.fake_client import FakeClient


class ScriptedRunc(RuncAgentRuntime):
    """The runc adapter with poll_changes answering from a script (one list per call)."""

    def __init__(self, tmp_path: Path, script: list[list[SandboxConfig]]) -> None:
        runtime = RuncRuntime(
            images=ImageService(ContentStore(tmp_path / "images")),
            network=None,
            state_dir=tmp_path / "state",
            runc_root=tmp_path / "runc",
            enforce=frozenset(),
        )
        super().__init__(runtime)
        self.script = script
        self.polls = 0

    def poll_changes(self) -> list[SandboxConfig]:
        self.polls += 1
        return self.script.pop(0) if self.script else []


def _fleet(runtime: RuncAgentRuntime, clock: FakeClock, relist: float | None = None) -> Fleet:
    api = FakeClient(now=clock.now)
    nodes = [NodeConfig(name="n1")]
    return Fleet(api, clock, runtime, nodes=nodes, events=False, relist_period=relist)


def _sandbox(name: str) -> SandboxConfig:
    return SandboxConfig(namespace="ns", name=name, uid=f"uid-{name}", node="n1", pod_ip="")


def test_runc_is_polled_for_exits_and_relisted_only_as_a_safety_net(tmp_path: Path) -> None:
    clock = FakeClock()
    runtime = ScriptedRunc(tmp_path, [])
    fleet = _fleet(runtime, clock)
    # runc also calls back on each exit (a pidfd per shim): the poll is only a safety net
    assert fleet.change_poll_period == NOTIFIED_POLL_PERIOD
    assert runtime.on_change == [fleet.manager.on_sandbox_change]
    assert fleet.relist_period == RESYNC_PERIOD
    assert RESYNC_PERIOD >= 10 * CHANGE_POLL_PERIOD
    explicit = _fleet(ScriptedRunc(tmp_path, []), clock, relist=2.0)
    assert explicit.relist_period == 2.0


def test_poll_loop_enqueues_only_the_pods_whose_container_ended(tmp_path: Path) -> None:
    async def body() -> None:
        clock = FakeClock()
        runtime = ScriptedRunc(tmp_path, [[_sandbox("a"), _sandbox("b")], [], [_sandbox("c")]])
        fleet = _fleet(runtime, clock)
        queue = fleet.manager.queue
        task = asyncio.create_task(fleet._poll_loop(runtime, CHANGE_POLL_PERIOD))
        await clock.step(CHANGE_POLL_PERIOD / 2)
        assert (runtime.polls, len(queue)) == (0, 0)
        await clock.step(CHANGE_POLL_PERIOD / 2)
        assert runtime.polls == 1
        assert {queue.get_nowait(), queue.get_nowait()} == {
            make_key("ns", "a"),
            make_key("ns", "b"),
        }
        await clock.step(CHANGE_POLL_PERIOD)
        assert (runtime.polls, len(queue)) == (2, 0)
        await clock.step(CHANGE_POLL_PERIOD)
        assert queue.get_nowait() == make_key("ns", "c")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(body())
