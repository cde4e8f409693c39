"""service-lb: pool addresses into status.loadBalancer.ingress (loadBalancerIP honoured only
inside the pool, freed on delete and type change, other classes left alone), or the Ready
nodes' addresses without a pool."""

from __future__ import annotations

from typing import Any

from berth.api.loadbalancers import EXCLUDE_LABEL, Pool
from berth.api.resources import EVENTS, NODES, SERVICES
from berth.client.keys import ObjectKey
from berth.controllers.servicelb import ServiceLBController

from .harness import Harness, run

POOL = Pool.parse(["10.231.0.240-10.231.0.241"])


def lb(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], **spec},
    }


def node(
    name: str, ip: str, ready: bool = True, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip}],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def ingress(h: Harness, name: str) -> list[str]:
    svc = next(s for s in h.api.objects(SERVICES) if s["metadata"]["name"] == name)
    items = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [i["ip"] for i in items]


def warnings(h: Harness) -> list[str]:
    return [e["message"] for e in h.api.objects(EVENTS) if e.get("type") == "Warning"]


async def converge(h: Harness, c: ServiceLBController) -> None:
    await h.converge(c.controller, kubelet=False)


def test_pool_addresses_are_allocated_once_and_freed_on_delete() -> None:
    async def body() -> None:
        h = Harness()
        c = ServiceLBController(h.ctx, POOL)
        for name in ("a", "b", "c"):
            h.api.seed(SERVICES, lb(name))
        await converge(h, c)
        got = {n: ingress(h, n) for n in ("a", "b", "c")}
        assert got["a"] == ["10.231.0.240"]
        assert got["b"] == ["10.231.0.241"]
        assert got["c"] == [], "the pool is exhausted"
        assert "no free address left in the load-balancer pool" in warnings(h)
        svc = next(s for s in h.api.objects(SERVICES) if s["metadata"]["name"] == "a")
        assert svc["status"]["loadBalancer"]["ingress"][0]["ipMode"] == "VIP"
        await h.api.delete(SERVICES, "a", namespace="default")
        await converge(h, c)
        assert ingress(h, "c") == ["10.231.0.240"], "the freed address goes to the waiting one"

    run(body)


def test_load_balancer_ip_only_from_the_pool() -> None:
    async def body() -> None:
        h = Harness()
        c = ServiceLBController(h.ctx, POOL)
        h.api.seed(SERVICES, lb("want", loadBalancerIP="10.231.0.241"))
        # a tenant asking for a node's (or the API server's) address gets nothing
        h.api.seed(SERVICES, lb("thief", loadBalancerIP="10.231.0.11"))
        await converge(h, c)
        assert ingress(h, "want") == ["10.231.0.241"]
        assert ingress(h, "thief") == []
        assert any("10.231.0.11 is not in the load-balancer pool" in w for w in warnings(h))
        h.api.seed(SERVICES, lb("twin", loadBalancerIP="10.231.0.241"))
        await converge(h, c)
        assert ingress(h, "twin") == []
        assert any("already used by another Service" in w for w in warnings(h))

    run(body)


def test_a_status_written_by_someone_else_is_overwritten() -> None:
    async def body() -> None:
        h = Harness()
        c = ServiceLBController(h.ctx, POOL)
        forged = lb("forged")
        forged["status"] = {"loadBalancer": {"ingress": [{"ip": "10.231.0.11"}]}}
        h.api.seed(SERVICES, forged)
        await h.api.update(SERVICES, forged, subresource="status")
        await converge(h, c)
        assert ingress(h, "forged") == ["10.231.0.240"]

    run(body)


def test_type_change_and_other_classes() -> None:
    async def body() -> None:
        h = Harness()
        c = ServiceLBController(h.ctx, POOL)
        h.api.seed(SERVICES, lb("web"))
        h.api.seed(SERVICES, lb("theirs", loadBalancerClass="example.com/lb"))
        await converge(h, c)
        assert ingress(h, "web") == ["10.231.0.240"]
        assert ingress(h, "theirs") == [], "a named class is another implementation's"
        await h.api.patch(SERVICES, "web", {"spec": {"type": "ClusterIP"}}, namespace="default")
        await converge(h, c)
        assert ingress(h, "web") == []
        assert c.assigned == {}
        h.api.seed(SERVICES, lb("next"))
        await converge(h, c)
        assert ingress(h, "next") == ["10.231.0.240"]

    run(body)


def test_without_a_pool_the_ready_nodes_addresses() -> None:
    async def body() -> None:
        h = Harness()
        c = ServiceLBController(h.ctx, Pool(()))
        h.api.seed(NODES, node("n2", "10.231.0.12"))
        h.api.seed(NODES, node("n1", "10.231.0.11"))
        h.api.seed(NODES, node("n3", "10.231.0.13", ready=False))
        h.api.seed(NODES, node("n4", "10.231.0.14", labels={EXCLUDE_LABEL: ""}))
        h.api.seed(SERVICES, lb("web"))
        await converge(h, c)
        assert ingress(h, "web") == ["10.231.0.11", "10.231.0.12"]
        await h.api.patch(
            NODES,
            "n3",
            {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
            subresource="status",
        )
        await converge(h, c)
        assert ingress(h, "web") == ["10.231.0.11", "10.231.0.12", "10.231.0.13"]

    run(body)


def test_reconcile_of_a_missing_service_is_quiet() -> None:
    async def body() -> None:
        h = Harness()
        c = ServiceLBController(h.ctx, POOL)
        await c.reconcile(ObjectKey("default/nothing"))
        assert h.api.actions == []

    run(body)
