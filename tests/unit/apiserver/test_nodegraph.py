from __future__ import annotations

from typing import Any

from berth.apiserver.nodegraph import NodeGraph, pod_references

Obj = dict[str, Any]


def _pod(name: str, node: str, uid: str = "u1", **spec: Any) -> Obj:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": uid},
        "spec": {"nodeName": node, "containers": [{"name": "c"}], **spec},
    }


def test_every_kind_of_reference_is_found() -> None:
    pod = _pod(
        "p",
        "n1",
        serviceAccountName="sa",
        imagePullSecrets=[{"name": "pull"}],
        initContainers=[{"envFrom": [{"secretRef": {"name": "init-env"}}]}],
        containers=[
            {
                "envFrom": [{"configMapRef": {"name": "cm-from"}, "prefix": "X_"}],
                "env": [
                    {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm-key"}}},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s-key"}}},
                    {"name": "C", "value": "literal"},
                ],
            }
        ],
        volumes=[
            {"name": "a", "secret": {"secretName": "s-vol"}},
            {"name": "b", "configMap": {"name": "cm-vol"}},
            {"name": "c", "projected": {"sources": [{"secret": {"name": "s-proj"}},
                                                     {"configMap": {"name": "cm-proj"}},
                                                     {"serviceAccountToken": {"path": "t"}}]}},
            {"name": "d", "persistentVolumeClaim": {"claimName": "claim"}},
            {"name": "e", "ephemeral": {"volumeClaimTemplate": {}}},
            {"name": "f", "rbd": {"secretRef": {"name": "s-rbd"}}},
            {"name": "g", "csi": {"nodePublishSecretRef": {"name": "s-csi"}}},
            {"name": "h", "emptyDir": {}},
            {"name": "i", "secret": {"secretName": 7}},
        ],
    )  # fmt: skip
    assert pod_references(pod) == {
        ("pods", "ns", "p"),
        ("serviceaccounts", "ns", "sa"),
        *(("secrets", "ns", s) for s in ("pull", "init-env", "s-key", "s-vol", "s-proj",
                                          "s-rbd", "s-csi")),
        *(("configmaps", "ns", c) for c in ("cm-from", "cm-key", "cm-vol", "cm-proj")),
        ("persistentvolumeclaims", "ns", "claim"),
        ("persistentvolumeclaims", "ns", "p-e"),
    }  # fmt: skip


def test_links_follow_binding_rebinding_and_deletion() -> None:
    g = NodeGraph()
    shared: dict[str, Any] = {"volumes": [{"name": "v", "secret": {"secretName": "s"}}]}
    g.apply_pod(_pod("a", "", **shared), deleted=False)
    assert not g.links("n1", "secrets", "ns", "s"), "an unbound pod links nothing"
    g.apply_pod(_pod("a", "n1", **shared), deleted=False)
    g.apply_pod(_pod("b", "n1", uid="u2", **shared), deleted=False)
    assert g.links("n1", "secrets", "ns", "s")
    assert not g.links("n2", "secrets", "ns", "s")
    assert not g.links("n1", "secrets", "other", "s")
    g.apply_pod(_pod("a", "n1", **shared), deleted=True)
    assert g.links("n1", "secrets", "ns", "s"), "pod b still uses it"
    # same name, new uid, other node: a recreated pod
    g.apply_pod(_pod("b", "n2", uid="u3", **shared), deleted=False)
    assert not g.links("n1", "secrets", "ns", "s")
    assert g.links("n2", "secrets", "ns", "s")
    g.apply_pod(_pod("b", "n2", uid="u3", **shared), deleted=True)
    assert not g.links("n2", "secrets", "ns", "s")
    assert len(g) == 0


def test_a_persistent_volume_is_linked_through_its_bound_claim() -> None:
    g = NodeGraph()
    claim: dict[str, Any] = {
        "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "c"}}]
    }
    g.apply_pod(_pod("p", "n1", **claim), deleted=False)
    pv = {"metadata": {"name": "pv1"}, "spec": {"claimRef": {"namespace": "ns", "name": "c"}}}
    g.observe("/registry/core/persistentvolumes/pv1", pv, deleted=False)
    assert g.links("n1", "persistentvolumes", "", "pv1")
    assert not g.links("n2", "persistentvolumes", "", "pv1")
    g.observe("/registry/core/persistentvolumes/pv1", pv, deleted=True)
    assert not g.links("n1", "persistentvolumes", "", "pv1")
