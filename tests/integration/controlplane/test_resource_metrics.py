"""``kubectl top`` against the real API server: the simulated agents' usage is scraped over
mTLS (``/stats/summary``) and served as ``metrics.k8s.io/v1beta1`` Node/PodMetrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from berth.api.resources import DEPLOYMENTS, POD_METRICS, ROLEBINDINGS
from berth.client import errors
from berth.client.http import HttpClient
from berth.machinery.prometheus import REGISTRY
from tests.harness.apiserver import ServerHandle

from .cluster import control_plane, deployment, wait_until

pytestmark = pytest.mark.timeout(120)


def test_kubectl_top_nodes_and_pods(server: ServerHandle, tmp_path: Path) -> None:
    asyncio.run(_top(server, tmp_path))


async def _top(server: ServerHandle, tmp_path: Path) -> None:
    async with control_plane(server, tmp_path, nodes=2, serve_logs=True) as c:
        scraper = server.server.scraper
        scraper.resolution = 0.5
        server.loop.call_soon_threadsafe(scraper.poke)
        await c.api.create(DEPLOYMENTS, deployment("busy", replicas=2), namespace="default")

        async def running() -> bool:
            pods = await c.pods(selector="app=busy")
            return len(pods) == 2 and all(
                p.get("status", {}).get("phase") == "Running" for p in pods
            )

        await wait_until(running, what="2 running pods")
        for p in await c.pods(selector="app=busy"):
            c.runtime.set_usage(
                "default", p["metadata"]["name"], "app", cpu_cores=0.25, memory_bytes=64 << 20
            )

        async def top_pods() -> str | None:
            out = await c.kubectl("top", "pods", "-l", "app=busy", "--containers", check=False)
            rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
            # 0.25 cores burnt, 64 MiB of working set (timing noise: a few millicores)
            good = [r for r in rows if r[2].endswith("m") and 245 <= int(r[2][:-1]) <= 255]
            return out if len(good) == 2 and all(r[3] == "64Mi" for r in good) else None

        await wait_until(top_pods, within=30, what="kubectl top pods at 250m")
        nodes = await c.kubectl("top", "nodes")
        assert "CPU(cores)" in nodes
        assert "node-0" in nodes, nodes
        assert "node-1" in nodes, nodes
        # ``c.kubectl`` is 1.20 (KUBECTL) when cached; 1.32 answers the same API
        env_out = await c.kubectl_132("top", "pods", "-l", "app=busy", "--containers")
        assert env_out.count(" app ") == 2, env_out
        # the components' Prometheus figures moved with the work (one process here)
        figures = REGISTRY.render()
        assert 'scheduler_schedule_attempts_total{result="scheduled"}' in figures
        assert "kubelet_pod_start_duration_seconds_count" in figures
        assert 'workqueue_adds_total{name="deployments"}' in figures
        # RBAC: the view role reads metrics (kubectl top); nobody else does
        await c.api.create(
            ROLEBINDINGS,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "viewer", "namespace": "default"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "view",
                },
                "subjects": [{"kind": "User", "name": "viewer"}],
            },
            namespace="default",
        )
        viewer = HttpClient.from_kubeconfig(server.kubeconfig("viewer", groups=[]))
        stranger = HttpClient.from_kubeconfig(server.kubeconfig("stranger", groups=[]))
        try:
            seen = await viewer.list(POD_METRICS, namespace="default", label_selector="app=busy")
            assert len(seen.items) == 2
            with pytest.raises(errors.Forbidden):
                await stranger.list(POD_METRICS, namespace="default")
            with pytest.raises(errors.ApiError) as refused:
                await c.api.delete(
                    POD_METRICS, seen.items[0]["metadata"]["name"], namespace="default"
                )
            assert refused.value.status == 405  # read-only
        finally:
            await viewer.close()
            await stranger.close()
        raw = await c.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/node-0")
        assert '"kind":"NodeMetrics"' in raw, raw
        assert '"window"' in raw, raw
