"""StatefulSets and DaemonSet revisions end to end — real API server, scheduler, controller
manager and simulated nodes marking pods Running and Ready: pods created in order, each only
once the one before is Ready; a deleted pod coming back under its name; scale down from the
highest ordinal; a partitioned rolling update stopping at the partition; ``kubectl rollout
status/history/undo`` on a StatefulSet (kubectl 1.32, history also with 1.20) and ``kubectl
rollout history/undo`` on a DaemonSet."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from berth.api.resources import CONTROLLERREVISIONS, DAEMONSETS, PODS, STATEFULSETS
from berth.client.interface import Obj
from tests.harness.apiserver import ServerHandle

from .cluster import KUBECTL_120, KUBECTL_132, Cluster, control_plane, wait_until


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


async def kubectl(c: Cluster, *args: str, binary: str = KUBECTL_132, stdin: str = "") -> str:
    """kubectl (1.32 unless ``binary`` says otherwise) against the cluster; fails the test on
    a non-zero exit."""
    return await c.kubectl(*args, within=90, binary=binary, stdin=stdin)


def statefulset(name: str = "web", replicas: int = 3, image: str = "nginx:1", **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "app", "image": image}],
                    "terminationGracePeriodSeconds": 1,
                },
            },
            **spec,
        },
    }


def _ready(pod: Obj) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return (pod.get("status") or {}).get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conds
    )


class PodLog:
    """Watches the set's pods: the order they were created and deleted in, and which pods
    were Ready when each was created."""

    def __init__(self, c: Cluster, app: str) -> None:
        self.c, self.app = c, app
        self.created: list[tuple[str, set[str]]] = []
        self.deleted: list[str] = []
        self.ready: set[str] = set()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PodLog:
        start = await self.c.api.list(PODS, namespace="default", label_selector=f"app={self.app}")
        self.task = asyncio.create_task(self._watch(start.resource_version))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def _watch(self, rv: str) -> None:
        async for ev in self.c.api.watch(
            PODS, namespace="default", resource_version=rv, label_selector=f"app={self.app}"
        ):
            if ev.type not in ("ADDED", "MODIFIED", "DELETED"):
                continue  # bookmarks
            pod = ev.object
            pod_name = pod["metadata"]["name"]
            if ev.type == "ADDED":
                self.created.append((pod_name, set(self.ready)))
            terminating = ev.type == "DELETED" or pod["metadata"].get("deletionTimestamp")
            if terminating:
                self.ready.discard(pod_name)
                if pod_name not in self.deleted:
                    self.deleted.append(pod_name)
            elif _ready(pod):
                self.ready.add(pod_name)
            else:
                self.ready.discard(pod_name)


async def pod_images(c: Cluster, app: str) -> dict[str, str]:
    return {
        p["metadata"]["name"]: p["spec"]["containers"][0]["image"]
        for p in await c.pods(selector=f"app={app}")
        if not p["metadata"].get("deletionTimestamp") and _ready(p)
    }


def test_ordered_creation_same_name_return_and_reverse_scale_down(
    server: ServerHandle, tmp_path: Path
) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path) as c, PodLog(c, "web") as log:
            await kubectl(c, "apply", "-f", "-", stdin=json.dumps(statefulset("web", 3)))
            out = await kubectl(c, "rollout", "status", "statefulset/web", "--timeout=60s")
            assert "partitioned roll out complete" in out or "rolling update complete" in out

            async def three() -> bool:
                return len(log.created) >= 3

            await wait_until(three, what="three creations seen")
            assert log.created == [
                ("web-0", set()),
                ("web-1", {"web-0"}),
                ("web-2", {"web-0", "web-1"}),
            ]
            pods = {p["metadata"]["name"]: p for p in await c.pods(selector="app=web")}
            assert pods["web-1"]["spec"]["hostname"] == "web-1"
            assert pods["web-1"]["spec"]["subdomain"] == "web"
            assert pods["web-1"]["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "1"
            described = await kubectl(c, "describe", "statefulset", "web")
            assert "Pods Status:" in described
            assert "3 Running" in described
            table = await kubectl(c, "get", "statefulset", "web")
            assert table.split()[:3] == ["NAME", "READY", "AGE"]
            assert table.split()[4] == "3/3"
            sts = await c.api.get(STATEFULSETS, "web", namespace="default")
            spec, st = sts["spec"], sts["status"]
            assert spec["podManagementPolicy"] == "OrderedReady"
            assert spec["updateStrategy"] == {
                "type": "RollingUpdate",
                "rollingUpdate": {"partition": 0},
            }
            assert spec["persistentVolumeClaimRetentionPolicy"] == {
                "whenDeleted": "Retain",
                "whenScaled": "Retain",
            }
            assert st["readyReplicas"] == st["currentReplicas"] == st["availableReplicas"] == 3
            assert st["currentRevision"] == st["updateRevision"]
            assert (
                pods["web-0"]["metadata"]["labels"]["controller-revision-hash"]
                == (st["currentRevision"])
            )

            # a deleted pod comes back under its name
            old_uid = pods["web-1"]["metadata"]["uid"]
            await kubectl(c, "delete", "pod", "web-1", "--wait=false")

            async def back() -> bool:
                again = {p["metadata"]["name"]: p for p in await c.pods(selector="app=web")}
                p = again.get("web-1")
                return p is not None and p["metadata"]["uid"] != old_uid and _ready(p)

            await wait_until(back, within=30, what="web-1 recreated")

            # scale down: highest ordinal first
            log.deleted.clear()
            await kubectl(c, "scale", "statefulset/web", "--replicas=1")

            async def scaled() -> bool:
                return (
                    sorted(await pod_images(c, "web")) == ["web-0"]
                    and len(await c.pods(selector="app=web")) == 1
                )

            await wait_until(scaled, within=30, what="scaled to one")
            assert log.deleted == ["web-2", "web-1"]

    run(body())


def test_partitioned_rolling_update_and_kubectl_rollout(
    server: ServerHandle, tmp_path: Path
) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path) as c:
            await c.api.create(STATEFULSETS, statefulset("db", 3))
            await kubectl(c, "rollout", "status", "statefulset/db", "--timeout=60s")
            await kubectl(
                c,
                "patch",
                "statefulset/db",
                "-p",
                '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":2}}}}',
            )
            await kubectl(c, "set", "image", "statefulset/db", "app=nginx:2")
            out = await kubectl(c, "rollout", "status", "statefulset/db", "--timeout=60s")
            assert "partitioned roll out complete: 1 new pods have been updated" in out
            assert await pod_images(c, "db") == {
                "db-0": "nginx:1",
                "db-1": "nginx:1",
                "db-2": "nginx:2",
            }
            sts = await c.api.get(STATEFULSETS, "db", namespace="default")
            assert sts["status"]["currentRevision"] != sts["status"]["updateRevision"]
            assert sts["status"]["updatedReplicas"] == 1
            await kubectl(
                c,
                "patch",
                "statefulset/db",
                "-p",
                '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}',
            )
            out = await kubectl(c, "rollout", "status", "statefulset/db", "--timeout=60s")
            # kubectl reports any set with a rollingUpdate block (a defaulted one too) this way
            assert "partitioned roll out complete: 3 new pods have been updated" in out
            assert set((await pod_images(c, "db")).values()) == {"nginx:2"}

            for binary in (KUBECTL_132, str(KUBECTL_120)):
                history = await kubectl(c, "rollout", "history", "statefulset/db", binary=binary)
                assert [line.split()[0] for line in history.splitlines()[2:] if line] == [
                    "1",
                    "2",
                ], history
            shown = await kubectl(c, "rollout", "history", "statefulset/db", "--revision=1")
            assert "nginx:1" in shown

            await kubectl(c, "rollout", "undo", "statefulset/db")
            await kubectl(c, "rollout", "status", "statefulset/db", "--timeout=60s")
            await wait_until(
                lambda: _same(pod_images(c, "db"), {f"db-{i}": "nginx:1" for i in range(3)}),
                within=60,
                what="rolled back",
            )
            revs = (await c.api.list(CONTROLLERREVISIONS, namespace="default")).items
            numbers = {
                r["data"]["spec"]["template"]["spec"]["containers"][0]["image"]: r["revision"]
                for r in revs
            }
            assert numbers == {"nginx:1": 3, "nginx:2": 2}
            table = await kubectl(c, "get", "controllerrevisions")
            assert "statefulset.apps/db" in table

    run(body())


async def _same(coro: Any, want: object) -> bool:
    return bool(await coro == want)


def test_daemonset_rollout_history_and_undo(server: ServerHandle, tmp_path: Path) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path, nodes=2) as c:
            ds = statefulset("agent", 0)
            ds["kind"] = "DaemonSet"
            for field in ("replicas", "serviceName"):
                ds["spec"].pop(field)
            await c.api.create(DAEMONSETS, ds)
            await kubectl(c, "rollout", "status", "daemonset/agent", "--timeout=60s")
            await kubectl(c, "set", "image", "daemonset/agent", "app=nginx:2")
            await kubectl(c, "rollout", "status", "daemonset/agent", "--timeout=60s")
            for binary in (KUBECTL_132, str(KUBECTL_120)):
                history = await kubectl(c, "rollout", "history", "daemonset/agent", binary=binary)
                assert [line.split()[0] for line in history.splitlines()[2:] if line] == [
                    "1",
                    "2",
                ], history
            await kubectl(c, "rollout", "undo", "daemonset/agent")
            await kubectl(c, "rollout", "status", "daemonset/agent", "--timeout=60s")

            async def rolled_back() -> bool:
                images = set((await pod_images(c, "agent")).values())
                return images == {"nginx:1"} and len(await c.pods(selector="app=agent")) == 2

            await wait_until(rolled_back, within=60, what="daemon pods back at nginx:1")
            history = await kubectl(c, "rollout", "history", "daemonset/agent")
            assert [line.split()[0] for line in history.splitlines()[2:] if line] == ["2", "3"]

    run(body())
