"""EndpointSlice reconcile(service): conditions, chunking at 100, ports, placeholder,
hostname, mirroring of selector-less Endpoints, stale caches."""

from __future__ import annotations

from typing import Any

import pytest

from berth.api.resources import ENDPOINTS, ENDPOINTSLICES, PODS, SERVICES
from berth.client.keys import ObjectKey
from berth.controllers.endpointslices import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MIRRORED_BY,
    SERVICE_NAME_LABEL,
    EndpointSliceController,
)
from berth.machinery.controller import Retry

from .harness import Harness, run

KEY = ObjectKey("default/web")


def pod(name: str, ip: str, ready: bool = True, app: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {
            "nodeName": "n1",
            "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}],
            **spec,
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def service(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "default", "labels": {"tier": "front"}},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            **spec,
        },
    }


def slices(h: Harness) -> list[dict[str, Any]]:
    return sorted(
        (s for s in h.api.objects(ENDPOINTSLICES) if s["metadata"]["namespace"] == "default"),
        key=lambda s: s["metadata"]["name"],
    )


def endpoints_of(h: Harness) -> dict[str, dict[str, Any]]:
    return {ep["addresses"][0]: ep for s in slices(h) for ep in s["endpoints"]}


async def settle(h: Harness, c: EndpointSliceController) -> None:
    for _ in range(5):
        await h.sync()
        try:
            await c.reconcile(KEY)
            return
        except Retry:
            continue
    raise AssertionError("never caught up")


def test_slices_carry_conditions_ports_labels_and_owner() -> None:
    async def body() -> None:
        h = Harness()
        c = EndpointSliceController(h.ctx)
        h.api.seed(SERVICES, service())
        h.api.seed(PODS, pod("a", "10.0.0.2"))
        h.api.seed(PODS, pod("b", "10.0.0.3", ready=False))
        gone = pod("c", "10.0.0.4")
        gone["metadata"]["finalizers"] = ["test/hold"]
        h.api.seed(PODS, gone)
        await h.api.delete(PODS, "c", namespace="default")  # terminating, held by the finalizer
        done = pod("d", "10.0.0.5")
        done["status"]["phase"] = "Succeeded"
        h.api.seed(PODS, done)
        h.api.seed(PODS, pod("other", "10.0.0.9", app="db"))
        await settle(h, c)
        (sl,) = slices(h)
        assert sl["addressType"] == "IPv4"
        assert sl["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
        assert sl["metadata"]["labels"] == {
            "tier": "front",
            SERVICE_NAME_LABEL: "web",
            MANAGED_BY_LABEL: MANAGED_BY,
        }
        owner = sl["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("Service", "web", True)
        eps = endpoints_of(h)
        assert set(eps) == {"10.0.0.2", "10.0.0.3", "10.0.0.4"}
        assert eps["10.0.0.2"]["conditions"] == {
            "ready": True,
            "serving": True,
            "terminating": False,
        }
        assert eps["10.0.0.3"]["conditions"]["ready"] is False
        assert eps["10.0.0.4"]["conditions"] == {
            "ready": False,
            "serving": True,
            "terminating": True,
        }
        assert eps["10.0.0.2"]["nodeName"] == "n1"
        stored_a = h.api.stored(PODS, "default/a")
        assert stored_a is not None
        assert eps["10.0.0.2"]["targetRef"] == {
            "kind": "Pod",
            "namespace": "default",
            "name": "a",
            "uid": stored_a["metadata"]["uid"],
        }
        assert "hints" not in eps["10.0.0.2"]
        writes = len(h.api.actions)
        await settle(h, c)
        assert len(h.api.actions) == writes, "no write when nothing changed"

    run(body)


def test_at_most_100_endpoints_per_slice_and_members_stay_put() -> None:
    async def body() -> None:
        h = Harness()
        c = EndpointSliceController(h.ctx)
        h.api.seed(SERVICES, service())
        for i in range(250):
            h.api.seed(PODS, pod(f"p{i:03}", f"10.1.{i // 200}.{i % 200 + 1}"))
        await settle(h, c)
        sizes = sorted(len(s["endpoints"]) for s in slices(h))
        assert sizes == [50, 100, 100]
        before = {s["metadata"]["name"]: s["endpoints"] for s in slices(h)}
        pods = h.api.stored(PODS, "default/p000")
        assert pods is not None
        pods["metadata"]["labels"] = {"app": "gone"}
        await h.api.update(PODS, pods)
        await settle(h, c)
        after = {s["metadata"]["name"]: s["endpoints"] for s in slices(h)}
        changed = [n for n in before if before[n] != after[n]]
        assert len(changed) == 1, "only the slice that held the pod is rewritten"
        assert "10.1.0.1" not in {e["addresses"][0] for eps in after.values() for e in eps}

    run(body)


def test_hostname_and_publish_not_ready_and_headless_label() -> None:
    async def body() -> None:
        h = Harness()
        c = EndpointSliceController(h.ctx)
        h.api.seed(SERVICES, service(clusterIP="None", publishNotReadyAddresses=True))
        h.api.seed(PODS, pod("a", "10.0.0.2", ready=False, hostname="db-0", subdomain="web"))
        h.api.seed(PODS, pod("b", "10.0.0.3", hostname="x", subdomain="other"))
        await settle(h, c)
        eps = endpoints_of(h)
        assert eps["10.0.0.2"]["hostname"] == "db-0"
        assert eps["10.0.0.2"]["conditions"]["ready"] is True
        assert "hostname" not in eps["10.0.0.3"]
        assert slices(h)[0]["metadata"]["labels"]["service.kubernetes.io/headless"] == ""

    run(body)


def test_placeholder_then_removal_with_the_service() -> None:
    async def body() -> None:
        h = Harness()
        c = EndpointSliceController(h.ctx)
        h.api.seed(SERVICES, service())
        await settle(h, c)
        (sl,) = slices(h)
        assert sl["endpoints"] == []
        assert sl["ports"] == []
        h.api.seed(PODS, pod("a", "10.0.0.2"))
        await settle(h, c)
        (sl,) = slices(h)
        assert [e["addresses"] for e in sl["endpoints"]] == [["10.0.0.2"]]
        await h.api.delete(SERVICES, "web", namespace="default")
        await settle(h, c)
        assert slices(h) == []

    run(body)


def test_selectorless_endpoints_are_mirrored_without_loopback() -> None:
    async def body() -> None:
        h = Harness()
        c = EndpointSliceController(h.ctx)
        svc = service()
        del svc["spec"]["selector"]
        h.api.seed(SERVICES, svc)
        h.api.seed(
            ENDPOINTS,
            {
                "metadata": {"name": "web", "namespace": "default"},
                "subsets": [
                    {
                        "addresses": [{"ip": "10.9.0.1"}, {"ip": "127.0.0.1"}],
                        "notReadyAddresses": [{"ip": "10.9.0.2"}],
                        "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
                    }
                ],
            },
        )
        await settle(h, c)
        (sl,) = slices(h)
        assert sl["metadata"]["labels"][MANAGED_BY_LABEL] == MIRRORED_BY
        assert sl["ports"] == [{"name": "https", "port": 6443, "protocol": "TCP"}]
        eps = endpoints_of(h)
        assert set(eps) == {"10.9.0.1", "10.9.0.2"}
        assert eps["10.9.0.2"]["conditions"]["ready"] is False

    run(body)


def test_a_stale_cache_waits_instead_of_duplicating() -> None:
    async def body() -> None:
        h = Harness()
        c = EndpointSliceController(h.ctx)
        h.api.seed(SERVICES, service())
        h.api.seed(PODS, pod("a", "10.0.0.2"))
        await h.sync()
        await c.reconcile(KEY)
        assert len(slices(h)) == 1
        with pytest.raises(Retry):
            await c.reconcile(KEY)  # the informer has not seen the slice yet
        assert len(slices(h)) == 1
        await settle(h, c)
        assert len(slices(h)) == 1

    run(body)
