"""NodeAgent: registration (capacity, labels, taints, addresses, daemon endpoint) and Lease
heartbeat in kube-node-lease; recovery of Ready after the controller marked it Unknown; the
room for local volumes published on the Node."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from berth.agent.config import NodeConfig
from berth.agent.node import NodeAgent
from berth.agent.volumes import LocalVolumes
from berth.api.resources import LEASES, NODES
from berth.machinery.clock import FakeClock
from tests.harness.fake_client import FakeClient


def agent() -> tuple[FakeClock, FakeClient, NodeAgent]:
    clock = FakeClock()
    api = FakeClient(now=clock.now)
    cfg = NodeConfig(
        name="n1",
        address="192.0.2.7",
        labels={"zone": "a"},
        taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}],
        capacity={"cpu": "2", "memory": "4Gi", "pods": "20"},
    )
    return clock, api, NodeAgent(api, clock, cfg, runtime_name="simulated", daemon_port=10250)


def test_registers_node_with_status_and_renews_lease() -> None:
    async def body() -> None:
        clock, api, a = agent()
        task = asyncio.create_task(a.run())
        await clock.step(0)
        node = api.stored(NODES, "n1")
        assert node is not None
        assert node["metadata"]["labels"]["zone"] == "a"
        assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "n1"
        assert node["spec"]["taints"][0]["key"] == "dedicated"
        st = node["status"]
        assert st["allocatable"] == {"cpu": "2", "memory": "4Gi", "pods": "20"}
        assert {"type": "InternalIP", "address": "192.0.2.7"} in st["addresses"]
        assert st["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250
        ready = next(c for c in st["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
        lease = api.stored(LEASES, "kube-node-lease/n1")
        assert lease is not None
        first = lease["spec"]["renewTime"]
        assert lease["spec"]["leaseDurationSeconds"] == 40
        assert lease["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]
        await clock.step(10)
        lease = api.stored(LEASES, "kube-node-lease/n1")
        assert lease is not None
        assert lease["spec"]["renewTime"] > first
        assert a.heartbeats == 2
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(body())


def test_agent_restores_ready_after_controller_marked_unknown() -> None:
    async def body() -> None:
        clock, api, a = agent()
        task = asyncio.create_task(a.run())
        await clock.step(0)
        node = api.stored(NODES, "n1")
        assert node is not None
        for c in node["status"]["conditions"]:
            if c["type"] == "Ready":
                c["status"] = "Unknown"
        await api.update(NODES, node, subresource="status")
        await clock.step(10)
        node = api.stored(NODES, "n1")
        assert node is not None
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(body())


def test_a_status_post_keeps_the_conditions_other_writers_own() -> None:
    """The agent writes the condition list whole: the conditions it does not own stay, also
    one written between its read of the Node and its write (the write then reads again)."""

    async def body() -> None:
        clock, api, a = agent()
        task = asyncio.create_task(a.run())
        await clock.step(0)
        network = {"type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated"}
        problem = {"type": "example.com/KernelDeadlock", "status": "False", "reason": "Fine"}

        async def add(condition: dict[str, str]) -> None:
            node = api.stored(NODES, "n1")
            assert node is not None
            patch = {"status": {"conditions": [*node["status"]["conditions"], condition]}}
            await api.patch(NODES, "n1", patch, subresource="status")

        await add(network)
        reads = 0
        get = api.get

        async def get_then_write(*args: Any, **kwargs: Any) -> Any:
            nonlocal reads
            node = await get(*args, **kwargs)
            reads += 1
            if reads == 1:  # another writer, between the agent's read and its write
                await add(problem)
            return node

        api.get = get_then_write  # type: ignore[method-assign]
        assert await a.post_status()
        node = api.stored(NODES, "n1")
        assert node is not None
        by_type = {c["type"]: c for c in node["status"]["conditions"]}
        assert by_type["NetworkUnavailable"] == network
        assert by_type["example.com/KernelDeadlock"] == problem
        assert by_type["Ready"]["status"] == "True"
        assert reads == 2
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(body())


def test_the_local_volumes_room_is_published_on_the_node_when_it_moves() -> None:
    async def body() -> None:
        clock = FakeClock()
        api = FakeClient(now=clock.now)
        cfg = NodeConfig(name="n1", address="192.0.2.7", capacity={"cpu": "2"})
        gib = 1 << 30
        room = [(100 * gib, 40 * gib)]
        a = NodeAgent(
            api, clock, cfg, runtime_name="runc", daemon_port=10250, volume_room=lambda: room[0]
        )
        await a.register()

        def annotations() -> dict[str, str]:
            node = api.stored(NODES, "n1")
            assert node is not None
            return dict(node["metadata"].get("annotations") or {})

        assert annotations() == {
            "berth.io/local-volumes-capacity": "102400Mi",
            "berth.io/local-volumes-available": "40960Mi",
        }
        writes = len(api.actions)
        room[0] = (100 * gib, 40 * gib - (100 << 20))  # less than 1% of the disk: not told
        await a.post_status()
        assert annotations()["berth.io/local-volumes-available"] == "40960Mi"
        assert len(api.actions) == writes + 1  # the status patch only
        room[0] = (100 * gib, 30 * gib)
        await a.post_status()
        assert annotations()["berth.io/local-volumes-available"] == "30720Mi"

    asyncio.run(body())


def test_local_volumes_room_is_the_filesystem_of_the_nearest_existing_directory(
    tmp_path: Path,
) -> None:
    volumes = LocalVolumes(tmp_path / "not" / "yet", "n1")
    size, free = volumes.room() or (0, 0)
    fs = os.statvfs(tmp_path)
    assert size == fs.f_blocks * fs.f_frsize
    assert 0 < free <= size


def test_registration_outlasts_a_node_that_keeps_changing_under_its_status_posts() -> None:
    """A starting runc agent registers before anything else (berth.agent.__main__): a Node
    changed between each of the status post's reads and writes (podCIDR, labels, taints
    written by others as it appears) used to end the agent with a Conflict, and systemd's
    restart left a window where verify found the agent not running. It retries instead."""

    async def body() -> None:
        clock, api, a = agent()
        get = api.get
        reads = 0

        async def get_then_write(*args: Any, **kwargs: Any) -> Any:
            nonlocal reads
            node = await get(*args, **kwargs)
            reads += 1
            if reads <= 4:  # more changes in a row than one status post reads again
                await api.patch(NODES, "n1", {"metadata": {"labels": {"seen": str(reads)}}})
            return node

        api.get = get_then_write  # type: ignore[method-assign]
        task = asyncio.create_task(a.register_retrying())
        for _ in range(20):
            await clock.step(1)
            if task.done():
                break
        assert task.done(), "registered once the Node stopped changing"
        await task  # no exception
        node = api.stored(NODES, "n1")
        assert node is not None
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
        assert node["metadata"]["labels"]["seen"] == "4"
        assert reads == 5

    asyncio.run(body())
