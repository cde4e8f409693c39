"""Deployments end to end — real API server, scheduler, controller manager and simulated
nodes — mirroring the conformance descriptions: RollingUpdateDeployment and
RecreateDeployment should delete old pods and create new ones, deployment should support
proportional scaling, rollover and rollback; ``kubectl rollout status`` finishes (and reports
a progress-deadline failure)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from berth.api.resources import DEPLOYMENTS, REPLICASETS
from berth.client.interface import Obj
from berth.controllers.deployment import REVISION
from tests.harness.apiserver import ServerHandle

from .cluster import Cluster, control_plane, deployment, wait_until


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


async def replicasets(c: Cluster, app: str) -> list[Obj]:
    items = (await c.api.list(REPLICASETS, namespace="default", label_selector=f"app={app}")).items
    return sorted(items, key=lambda rs: int(rs["metadata"]["annotations"][REVISION]))


async def running_images(c: Cluster, app: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in await c.pods(selector=f"app={app}"):
        if p["metadata"].get("deletionTimestamp") or p["status"].get("phase") != "Running":
            continue
        image = p["spec"]["containers"][0]["image"]
        counts[image] = counts.get(image, 0) + 1
    return counts


async def set_image(c: Cluster, name: str, image: str) -> None:
    await c.kubectl("set", "image", f"deployment/{name}", f"app={image}")


def test_rolling_update_replaces_pods_and_rollout_status_finishes(
    server: ServerHandle, tmp_path: Path
) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path) as c:
            await c.api.create(DEPLOYMENTS, deployment("web", replicas=4))
            out = await c.kubectl("rollout", "status", "deployment/web", "--timeout=90s")
            assert 'deployment "web" successfully rolled out' in out
            assert await running_images(c, "web") == {"nginx:1": 4}
            await set_image(c, "web", "nginx:2")
            out = await c.kubectl("rollout", "status", "deployment/web", "--timeout=90s")
            assert "successfully rolled out" in out
            await wait_until(
                lambda: _equals(running_images(c, "web"), {"nginx:2": 4}), what="new pods only"
            )
            old, new = await replicasets(c, "web")
            assert old["spec"]["replicas"] == 0
            assert new["spec"]["replicas"] == 4
            d = await c.api.get(DEPLOYMENTS, "web", namespace="default")
            assert d["status"]["observedGeneration"] == d["metadata"]["generation"]
            assert d["status"]["updatedReplicas"] == 4
            history = await c.kubectl("rollout", "history", "deployment/web")
            assert "1" in history
            assert "2" in history

    run(body())


async def _equals(coro: object, want: object) -> bool:
    got = await coro  # type: ignore[misc]
    return bool(got == want)


def test_recreate_deletes_old_pods_before_creating_new_ones(
    server: ServerHandle, tmp_path: Path
) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path) as c:
            await c.api.create(
                DEPLOYMENTS, deployment("rc", replicas=3, strategy={"type": "Recreate"})
            )
            await c.kubectl("rollout", "status", "deployment/rc", "--timeout=90s")
            seen_mixed = False

            async def watch_mix() -> None:
                nonlocal seen_mixed
                while True:
                    if len(await running_images(c, "rc")) > 1:
                        seen_mixed = True
                    await asyncio.sleep(0.05)

            watcher = asyncio.create_task(watch_mix())
            await set_image(c, "rc", "nginx:2")
            await c.kubectl("rollout", "status", "deployment/rc", "--timeout=90s")
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            assert not seen_mixed, "Recreate must never run old and new pods together"
            assert await running_images(c, "rc") == {"nginx:2": 3}

    run(body())


def test_rollback_with_kubectl_rollout_undo(server: ServerHandle, tmp_path: Path) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path) as c:
            await c.api.create(DEPLOYMENTS, deployment("undo", replicas=2))
            await c.kubectl("rollout", "status", "deployment/undo", "--timeout=90s")
            await set_image(c, "undo", "nginx:2")
            await c.kubectl("rollout", "status", "deployment/undo", "--timeout=90s")
            await c.kubectl("rollout", "undo", "deployment/undo")
            await c.kubectl("rollout", "status", "deployment/undo", "--timeout=90s")
            await wait_until(
                lambda: _equals(running_images(c, "undo"), {"nginx:1": 2}), what="rolled back"
            )
            sets = await replicasets(c, "undo")
            assert len(sets) == 2
            newest = sets[-1]
            assert newest["metadata"]["annotations"][REVISION] == "3"
            assert newest["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1"

    run(body())


def test_proportional_scaling_and_rollover(server: ServerHandle, tmp_path: Path) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path) as c:
            strategy = {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2},
            }
            await c.api.create(DEPLOYMENTS, deployment("prop", replicas=10, strategy=strategy))
            await c.kubectl("rollout", "status", "deployment/prop", "--timeout=90s")

            # An image whose pods never become ready stalls the rollout at 8 old + 5 new.
            c.runtime.set_image_probe("nginx:broken", kind="readiness", ok=False)
            await c.api.patch(
                DEPLOYMENTS,
                "prop",
                {
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "app",
                                        "image": "nginx:broken",
                                        "readinessProbe": {
                                            "exec": {"command": ["true"]},
                                            "periodSeconds": 1,
                                        },
                                    }
                                ]
                            }
                        }
                    }
                },
                namespace="default",
            )

            async def stalled() -> bool:
                sets = await replicasets(c, "prop")
                return [s["spec"]["replicas"] for s in sets] == [8, 5]

            await wait_until(stalled, what="rollout stalled at 8/5")
            await c.kubectl("scale", "deployment/prop", "--replicas=30")

            async def proportional() -> bool:
                sets = await replicasets(c, "prop")
                return [s["spec"]["replicas"] for s in sets] == [20, 13]

            await wait_until(proportional, what="proportional 20/13")
            # Rollover: a new template mid-rollout scales the stalled ReplicaSet down.
            await set_image(c, "prop", "nginx:3")
            await c.kubectl("rollout", "status", "deployment/prop", "--timeout=60s")
            sets = await replicasets(c, "prop")
            assert [s["spec"]["replicas"] for s in sets] == [0, 0, 30]

    run(body())


def test_rollout_status_reports_progress_deadline_exceeded(
    server: ServerHandle, tmp_path: Path
) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path) as c:
            spec = deployment("stuck", replicas=1, progressDeadlineSeconds=2)
            spec["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
                "exec": {"command": ["true"]},
                "periodSeconds": 1,
            }

            c.runtime.set_image_probe("nginx:1", kind="readiness", ok=False)
            await c.api.create(DEPLOYMENTS, spec)
            out = await c.kubectl(
                "rollout", "status", "deployment/stuck", "--timeout=90s", check=False
            )
            assert 'deployment "stuck" exceeded its progress deadline' in out

    run(body())


def test_paused_deployment_waits_for_resume(server: ServerHandle, tmp_path: Path) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path) as c:
            await c.api.create(DEPLOYMENTS, deployment("paused", replicas=2))
            await c.kubectl("rollout", "status", "deployment/paused", "--timeout=90s")
            await c.kubectl("rollout", "pause", "deployment/paused")
            await set_image(c, "paused", "nginx:2")
            await asyncio.sleep(1.0)
            assert len(await replicasets(c, "paused")) == 1, "no rollout while paused"
            assert await running_images(c, "paused") == {"nginx:1": 2}
            await c.kubectl("rollout", "resume", "deployment/paused")
            await c.kubectl("rollout", "status", "deployment/paused", "--timeout=90s")
            await wait_until(
                lambda: _equals(running_images(c, "paused"), {"nginx:2": 2}), what="resumed"
            )

    run(body())
