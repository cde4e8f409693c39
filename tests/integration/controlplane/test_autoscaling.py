"""HorizontalPodAutoscaler end to end on a real API server: the controller manager's HPA
controller reads the simulated agents' usage through metrics.k8s.io (scraped every 0.5 s),
scales a Deployment up through ``/scale`` when utilization is high and back down once the
(short) scale-down window has passed; ``kubectl autoscale`` (1.32 and 1.20) creates HPAs
that ``kubectl get hpa`` prints with upstream's columns."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from berth.api.resources import DEPLOYMENTS, EVENTS, HORIZONTALPODAUTOSCALERS
from tests.harness.apiserver import ServerHandle

from .cluster import KUBECTL, KUBECTL_132, Cluster, control_plane, deployment, wait_until

pytestmark = pytest.mark.timeout(180)


def _app(name: str, replicas: int = 1) -> dict[str, Any]:
    d = deployment(name, replicas=replicas)
    d["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "100m"}}
    return d


async def _kubectl(c: Cluster, binary: str, *args: str) -> str:
    return await c.kubectl(*args, binary=binary)


def test_hpa_scales_a_deployment_up_and_down(server: ServerHandle, tmp_path: Path) -> None:
    asyncio.run(_up_and_down(server, tmp_path))


async def _up_and_down(server: ServerHandle, tmp_path: Path) -> None:
    async with control_plane(server, tmp_path, nodes=2, serve_logs=True, hpa_sync_period=0.5) as c:
        scraper = server.server.scraper
        scraper.resolution = 0.5
        server.loop.call_soon_threadsafe(scraper.poke)
        await c.api.create(DEPLOYMENTS, _app("web"), namespace="default")

        async def pods_running(n: int) -> list[dict[str, Any]] | None:
            pods = [
                p
                for p in await c.pods(selector="app=web")
                if (p.get("status") or {}).get("phase") == "Running"
                and not p["metadata"].get("deletionTimestamp")
            ]
            return pods if len(pods) == n else None

        first = await wait_until(lambda: pods_running(1), what="1 running pod")
        # 200% of its 100m request against a 50% target: 4x, capped at max 4
        c.runtime.set_usage("default", first[0]["metadata"]["name"], "app", cpu_cores=0.2)
        hpa = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1,
                "maxReplicas": 4,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 50},
                        },
                    }
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 3}},
            },
        }
        created = await c.api.create(HORIZONTALPODAUTOSCALERS, hpa, namespace="default")
        # defaults as upstream: the scale-up rules filled in, scale-down's window kept
        rules = created["spec"]["behavior"]
        assert rules["scaleUp"]["stabilizationWindowSeconds"] == 0
        assert rules["scaleDown"]["policies"] == [
            {"type": "Percent", "value": 100, "periodSeconds": 15}
        ]

        async def replicas(n: int) -> dict[str, Any] | None:
            d = await c.api.get(DEPLOYMENTS, "web", namespace="default")
            return d if d["spec"]["replicas"] == n else None

        await wait_until(lambda: replicas(4), within=30, what="scaled up to 4")

        # the controller writes the target's scale, then its own status: wait for the latter
        async def hpa_status() -> dict[str, Any] | None:
            got = await c.api.get(HORIZONTALPODAUTOSCALERS, "web", namespace="default")
            return got["status"] if got["status"].get("desiredReplicas") == 4 else None

        status = await wait_until(hpa_status, within=10, what="status.desiredReplicas 4")
        assert status["lastScaleTime"]
        conditions = {x["type"]: x for x in status["conditions"]}
        assert conditions["ScalingActive"]["reason"] == "ValidMetricFound"
        assert conditions["AbleToScale"]["status"] == "True"
        events = (await c.api.list(EVENTS, namespace="default")).items
        rescaled = [e for e in events if e.get("reason") == "SuccessfulRescale"]
        assert any(
            e["message"]
            == "New size: 4; reason: cpu resource utilization (percentage of request) above target"
            for e in rescaled
        ), [e["message"] for e in rescaled]
        # the load stops: every pod idles at 1m (2% of the request): back to min after the
        # 3 s window (scale-down policy: 100% per 15 s)
        for p in await wait_until(lambda: pods_running(4), within=30, what="4 running pods"):
            c.runtime.set_usage("default", p["metadata"]["name"], "app", cpu_cores=0.001)
        await wait_until(lambda: replicas(1), within=40, what="scaled down to 1")
        out = await c.kubectl("get", "hpa", "web")
        header, row = out.splitlines()[:2]
        assert header.split() == [
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE",
        ]
        assert row.split()[:2] == ["web", "Deployment/web"]


def test_kubectl_autoscale_and_get_hpa(server: ServerHandle, tmp_path: Path) -> None:
    asyncio.run(_autoscale(server, tmp_path))


async def _autoscale(server: ServerHandle, tmp_path: Path) -> None:
    async with control_plane(server, tmp_path, nodes=1, hpa_sync_period=0.5) as c:
        for name in ("old", "new"):
            await c.api.create(DEPLOYMENTS, _app(name), namespace="default")
        # kubectl 1.20 posts autoscaling/v1; 1.32 autoscaling/v2
        for binary, name in ((KUBECTL, "old"), (KUBECTL_132, "new")):
            out = await _kubectl(
                c, binary, "autoscale", "deployment", name, "--cpu-percent=50", "--min=1", "--max=5"
            )
            assert f"horizontalpodautoscaler.autoscaling/{name} autoscaled" in out
        for name in ("old", "new"):
            v2 = await c.api.get(HORIZONTALPODAUTOSCALERS, name, namespace="default")
            assert v2["spec"]["metrics"] == [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 50},
                    },
                }
            ]
            assert (v2["spec"]["minReplicas"], v2["spec"]["maxReplicas"]) == (1, 5)
        # the same object read as v1 (what kubectl 1.20's get -o yaml shows)
        v1 = await _kubectl(
            c,
            KUBECTL_132,
            "get",
            "--raw",
            "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/new",
        )
        assert '"targetCPUUtilizationPercentage":50' in v1, v1
        for binary in (KUBECTL, KUBECTL_132):
            out = await _kubectl(c, binary, "get", "hpa")
            lines = out.splitlines()
            assert lines[0].split() == [
                "NAME",
                "REFERENCE",
                "TARGETS",
                "MINPODS",
                "MAXPODS",
                "REPLICAS",
                "AGE",
            ]
            rows = {line.split()[0]: line for line in lines[1:]}
            assert set(rows) == {"old", "new"}
            # no metrics server samples here: the current value is unknown
            assert "Deployment/new" in rows["new"]
            assert "cpu: <unknown>/50%" in rows["new"]
            assert rows["new"].split()[-4:-1] == ["1", "5", "1"]

        for binary in (KUBECTL, KUBECTL_132):
            described = await _kubectl(c, binary, "describe", "hpa", "new")
            assert "Reference:" in described
            assert "Deployment/new" in described
            assert "Min replicas:" in described

        # no metrics: ScalingActive False with upstream's reason, and a warning event
        async def inactive() -> dict[str, Any] | None:
            h = await c.api.get(HORIZONTALPODAUTOSCALERS, "new", namespace="default")
            conds = {x["type"]: x for x in (h.get("status") or {}).get("conditions") or ()}
            active = conds.get("ScalingActive")
            return active if active is not None and active["status"] == "False" else None

        active = await wait_until(inactive, within=20, what="ScalingActive False")
        assert active["reason"] == "FailedGetResourceMetric"
        assert active["message"].startswith(
            "the HPA was unable to compute the replica count: failed to get cpu utilization"
        )
