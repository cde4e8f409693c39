"""The serviceaccount controller (each active namespace has its ``default`` account) and the
root-ca-cert-publisher (each active namespace has ``kube-root-ca.crt`` with the cluster CA;
deletions and edits are undone)."""

from __future__ import annotations

from berth.client.resources import CONFIGMAPS, NAMESPACES, SERVICEACCOUNTS, ObjectKey
from berth.controllers.serviceaccounts import RootCAPublisher, ServiceAccountsController

from .harness import Harness, run

CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_default_account_is_created_and_recreated() -> None:
    async def body() -> None:
        h = Harness()
        c = ServiceAccountsController(h.ctx)
        h.api.seed(NAMESPACES, {"metadata": {"name": "team"}, "status": {"phase": "Active"}})
        h.api.seed(NAMESPACES, {"metadata": {"name": "leaving"}})
        await h.api.delete(NAMESPACES, "leaving")  # terminating: its contents are going
        await h.converge(c.controller, kubelet=False)
        assert h.api.stored(SERVICEACCOUNTS, "team/default") is not None
        assert h.api.stored(SERVICEACCOUNTS, "leaving/default") is None
        writes = len(h.api.actions)
        await c.reconcile(ObjectKey("team"))  # present: nothing to do
        assert len(h.api.actions) == writes
        await h.api.delete(SERVICEACCOUNTS, "default", namespace="team")
        await h.converge(c.controller, kubelet=False)
        assert h.api.stored(SERVICEACCOUNTS, "team/default") is not None

    run(body)


def test_root_ca_configmap_is_published_and_kept() -> None:
    async def body() -> None:
        h = Harness()
        c = RootCAPublisher(h.ctx, CA)
        h.api.seed(NAMESPACES, {"metadata": {"name": "team"}, "status": {"phase": "Active"}})
        await h.converge(c.controller, kubelet=False)
        cm = h.api.stored(CONFIGMAPS, "team/kube-root-ca.crt")
        assert cm is not None
        assert cm["data"] == {"ca.crt": CA.decode()}
        assert "kubernetes.io/description" in cm["metadata"]["annotations"]

        # an edit is undone (the user's own annotations stay)
        edited = {
            "metadata": {
                "name": "kube-root-ca.crt",
                "namespace": "team",
                "annotations": {"mine": "yes"},
            },
            "data": {"ca.crt": "forged", "extra": "x"},
        }
        await h.api.update(CONFIGMAPS, edited)
        await h.converge(c.controller, kubelet=False)
        cm = h.api.stored(CONFIGMAPS, "team/kube-root-ca.crt")
        assert cm is not None
        assert cm["data"] == {"ca.crt": CA.decode()}
        assert cm["metadata"]["annotations"]["mine"] == "yes"

        # a deletion is undone
        await h.api.delete(CONFIGMAPS, "kube-root-ca.crt", namespace="team")
        await h.converge(c.controller, kubelet=False)
        cm = h.api.stored(CONFIGMAPS, "team/kube-root-ca.crt")
        assert cm is not None
        assert cm["data"] == {"ca.crt": CA.decode()}

        # other ConfigMaps are none of its business
        h.api.seed(CONFIGMAPS, {"metadata": {"name": "app", "namespace": "team"}, "data": {}})
        writes = len(h.api.actions)
        await h.converge(c.controller, kubelet=False)
        assert len(h.api.actions) == writes

    run(body)


def test_no_configmap_in_a_terminating_namespace() -> None:
    async def body() -> None:
        h = Harness()
        c = RootCAPublisher(h.ctx, CA)
        h.api.seed(NAMESPACES, {"metadata": {"name": "gone"}})
        await h.api.delete(NAMESPACES, "gone")
        await h.converge(c.controller, kubelet=False)
        assert h.api.stored(CONFIGMAPS, "gone/kube-root-ca.crt") is None

    run(body)
