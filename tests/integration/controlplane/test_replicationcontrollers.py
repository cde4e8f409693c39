"""ReplicationControllers end to end with kubectl: ``kubectl create -f rc.yaml``, ``kubectl
get rc``, ``kubectl scale rc``; the controller (the ReplicaSet controller's loop over the
map selector) makes and removes the pods, reports status, and the garbage collector deletes
the pods with their RC."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

from berth.api.resources import REPLICATIONCONTROLLERS
from berth.client.interface import Obj
from tests.harness.apiserver import ServerHandle

from .cluster import Cluster, control_plane, wait_until

RC_YAML = {
    "apiVersion": "v1",
    "kind": "ReplicationController",
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 2,
        # no selector: defaulted from the template's labels, as upstream
        "template": {
            "metadata": {"labels": {"app": "web-rc"}},
            "spec": {
                "containers": [{"name": "app", "image": "nginx"}],
                "terminationGracePeriodSeconds": 1,
            },
        },
    },
}


def run(coro: Any) -> None:
    asyncio.run(coro)


async def running(c: Cluster, n: int) -> list[Obj]:
    async def check() -> list[Obj] | None:
        pods = [
            p
            for p in await c.pods("default", "app=web-rc")
            if not p["metadata"].get("deletionTimestamp")
        ]
        ok = [p for p in pods if p["status"].get("phase") == "Running"]
        return pods if len(ok) == n == len(pods) else None

    return await wait_until(check, what=f"{n} running pods of rc/web")


async def ready(c: Cluster, n: int) -> None:
    async def check() -> bool | None:
        rc = await c.api.get(REPLICATIONCONTROLLERS, "web", namespace="default")
        st = rc.get("status") or {}
        return (st.get("replicas") == n and st.get("readyReplicas", 0) == n) or None

    await wait_until(check, what=f"rc/web reports {n} ready replicas")


def test_kubectl_create_scale_get_and_the_controller(server: ServerHandle, tmp_path: Path) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path) as c:
            manifest = tmp_path / "rc.yaml"
            manifest.write_text(yaml.safe_dump(RC_YAML))
            out = await c.kubectl("create", "-f", str(manifest))
            assert "replicationcontroller/web created" in out
            pods = await running(c, 2)
            for p in pods:  # the RC's pods, made by its controller
                (ref,) = p["metadata"]["ownerReferences"]
                assert (ref["apiVersion"], ref["kind"], ref["name"]) == (
                    "v1",
                    "ReplicationController",
                    "web",
                )
                assert ref["controller"] is True
                assert p["metadata"]["name"].startswith("web-")
            await ready(c, 2)
            table = await c.kubectl("get", "rc")
            header, row = table.splitlines()[:2]
            assert header.split() == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
            assert row.split()[:4] == ["web", "2", "2", "2"]
            wide = await c.kubectl("get", "rc", "web", "-o", "wide")
            assert wide.splitlines()[1].split()[5:8] == ["app", "nginx", "app=web-rc"]

            out = await c.kubectl("scale", "rc", "web", "--replicas=3")
            assert "replicationcontroller/web scaled" in out
            await running(c, 3)
            await ready(c, 3)
            out = await c.kubectl("scale", "rc/web", "--replicas=1")
            assert "replicationcontroller/web scaled" in out
            await running(c, 1)
            await ready(c, 1)
            assert "rc/web" not in await c.kubectl("get", "all")  # kubectl names it fully
            assert "replicationcontroller/web" in await c.kubectl("get", "all")

            await c.kubectl("delete", "rc", "web")

            async def pods_gone() -> bool:
                return not await c.pods("default", "app=web-rc")

            await wait_until(pods_gone, what="the GC deletes rc/web's pods")

    run(body())
