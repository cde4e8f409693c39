"""Guard rails with the whole control plane (controllers, scheduler and simulated nodes, each
under its own RBAC identity): the resourcequota controller gives usage back when pods go,
and the scheduler preempts a lower-priority pod for a higher-priority one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from berth.api.resources import DEPLOYMENTS, PODS, PRIORITYCLASSES, RESOURCEQUOTAS
from berth.client import errors
from berth.client.interface import Obj
from tests.harness.apiserver import ServerHandle

from .cluster import control_plane, deployment, wait_until


def run(coro: Any) -> None:
    asyncio.run(coro)


def _pod(name: str, *, cpu: str = "100m", priority_class: str = "") -> Obj:
    spec: dict[str, Any] = {
        "containers": [
            {"name": "app", "image": "busybox:1", "resources": {"requests": {"cpu": cpu}}}
        ],
        "terminationGracePeriodSeconds": 1,
    }
    if priority_class:
        spec["priorityClassName"] = priority_class
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec}


def test_quota_usage_is_given_back_when_pods_go(server: ServerHandle, tmp_path: Path) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path, nodes=1) as c:
            await c.kubectl("create", "quota", "two", "--hard=pods=2")

            async def counted(n: str) -> bool:
                q = await c.api.get(RESOURCEQUOTAS, "two", namespace="default")
                return bool((q.get("status") or {}).get("used", {}).get("pods") == n)

            await wait_until(lambda: counted("0"), what="the controller filling status")
            for name in ("a", "b"):
                await c.api.create(PODS, _pod(name), namespace="default")
            with pytest.raises(errors.Forbidden, match="exceeded quota: two, requested: pods=1"):
                await c.api.create(PODS, _pod("c"), namespace="default")
            await c.kubectl("delete", "pod", "a", "--wait=true", "--timeout=30s")
            await wait_until(lambda: counted("1"), what="usage given back")
            await c.api.create(PODS, _pod("c"), namespace="default")
            out = await c.kubectl("describe", "quota", "two")
            assert ["pods", "2", "2"] in [line.split() for line in out.splitlines()]

    run(body())


def test_a_high_priority_pod_preempts_a_low_priority_one(
    server: ServerHandle, tmp_path: Path
) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path, nodes=1) as c:
            await c.api.create(PRIORITYCLASSES, {"metadata": {"name": "high"}, "value": 1000})
            filler = deployment("filler", replicas=1)
            filler["spec"]["template"]["spec"]["containers"][0]["resources"] = {
                "requests": {"cpu": "3"}
            }
            await c.api.create(DEPLOYMENTS, filler, namespace="default")

            async def filler_running() -> list[Obj] | None:
                pods = await c.pods(selector="app=filler")
                ok = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
                return ok or None

            (victim,) = await wait_until(filler_running, what="the filler pod running")
            await c.api.create(
                PODS, _pod("vip", cpu="2", priority_class="high"), namespace="default"
            )

            async def vip_running() -> Obj | None:
                p = await c.api.get(PODS, "vip", namespace="default")
                return p if (p.get("status") or {}).get("phase") == "Running" else None

            vip = await wait_until(vip_running, within=30, what="the high-priority pod running")
            assert vip["spec"]["priority"] == 1000
            assert vip["status"].get("nominatedNodeName") == "node-0"
            assert vip["spec"]["nodeName"] == "node-0"

            async def victim_gone() -> bool:
                try:
                    await c.api.get(PODS, victim["metadata"]["name"], namespace="default")
                except errors.NotFound:
                    return True
                return False

            await wait_until(victim_gone, what="the preempted pod gone")
            # its replacement waits: it does not fit beside the high-priority pod
            pending = [
                p
                for p in await c.pods(selector="app=filler")
                if not p["metadata"].get("deletionTimestamp")
            ]
            assert all(not p["spec"].get("nodeName") for p in pending)

    run(body())
