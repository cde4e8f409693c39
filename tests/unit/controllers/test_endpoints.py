"""Endpoints reconcile(service): ready and not-ready addresses, named target ports."""

from __future__ import annotations

from berth.api.resources import ENDPOINTS, PODS, SERVICES
from berth.client.keys import ObjectKey
from berth.controllers.endpoints import EndpointsController

from .harness import Harness, run
from .test_endpointslices import pod

KEY = ObjectKey("default/web")


def test_endpoints_track_matching_pods() -> None:
    async def body() -> None:
        h = Harness()
        c = EndpointsController(h.ctx)
        h.api.seed(
            SERVICES,
            {
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {
                    "selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
                },
            },
        )
        h.api.seed(PODS, pod("a", "10.0.0.2", True))
        h.api.seed(PODS, pod("b", "10.0.0.3", False))
        h.api.seed(PODS, pod("other", "10.0.0.4", True, app="db"))
        await h.sync()
        await c.reconcile(KEY)
        ep = h.api.stored(ENDPOINTS, "default/web")
        assert ep is not None
        (subset,) = ep["subsets"]
        assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
        assert [a["ip"] for a in subset["addresses"]] == ["10.0.0.2"]
        assert [a["ip"] for a in subset["notReadyAddresses"]] == ["10.0.0.3"]
        assert subset["addresses"][0]["targetRef"]["name"] == "a"
        await h.api.delete(PODS, "a", namespace="default")
        await h.sync()
        await c.reconcile(KEY)
        ep = h.api.stored(ENDPOINTS, "default/web")
        assert ep is not None
        assert "addresses" not in ep["subsets"][0]
        writes = len(h.api.actions)
        await h.sync()
        await c.reconcile(KEY)
        assert len(h.api.actions) == writes, "no write when nothing changed"
        await h.api.delete(SERVICES, "web", namespace="default")
        await h.sync()
        await c.reconcile(KEY)
        assert h.api.stored(ENDPOINTS, "default/web") is None

    run(body)
