"""Namespace reconcile(name): delete contents, wait for graceful pods, then finalize."""

from __future__ import annotations

import pytest

from berth.api.resources import CONFIGMAPS, NAMESPACES, PODS, SERVICES
from berth.client.keys import ObjectKey
from berth.controllers.namespace import NamespaceController
from berth.machinery.controller import Retry

from .harness import Harness, run


def test_terminating_namespace_is_emptied_then_finalized() -> None:
    async def body() -> None:
        h = Harness()
        c = NamespaceController(h.ctx, resources=(PODS, SERVICES, CONFIGMAPS))
        h.api.seed(NAMESPACES, {"metadata": {"name": "team"}})
        h.api.seed(
            PODS,
            {
                "metadata": {"name": "p", "namespace": "team"},
                "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            },
        )
        h.api.seed(SERVICES, {"metadata": {"name": "s", "namespace": "team"}, "spec": {}})
        h.api.seed(CONFIGMAPS, {"metadata": {"name": "keep", "namespace": "other"}})
        await h.sync()
        await c.reconcile(ObjectKey("team"))
        assert h.api.actions == [], "an active namespace is left alone"
        await h.api.delete(NAMESPACES, "team")
        await h.sync()
        with pytest.raises(Retry):
            await c.reconcile(ObjectKey("team"))  # the pod terminates gracefully
        assert h.api.stored(SERVICES, "team/s") is None
        assert h.api.stored(NAMESPACES, "team") is not None
        await h.api.delete(PODS, "p", namespace="team", grace_period_seconds=0)
        await c.reconcile(ObjectKey("team"))
        assert h.api.stored(NAMESPACES, "team") is None
        assert h.api.stored(CONFIGMAPS, "other/keep") is not None
        assert [a.verb for a in h.api.writes("finalize")] == ["finalize"]

    run(body)
