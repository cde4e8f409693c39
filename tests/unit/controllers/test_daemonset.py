"""DaemonSet reconcile(key): a pinned pod per eligible node (selector, taints), removal from
ineligible nodes, rolling update within maxUnavailable, status."""

from __future__ import annotations

from typing import Any

from berth.api.resources import CONTROLLERREVISIONS, DAEMONSETS, NODES, PODS
from berth.client.interface import Obj
from berth.client.keys import ObjectKey
from berth.controllers.daemonset import HASH_LABEL as HASH
from berth.controllers.daemonset import DaemonSetController

from .harness import Harness, pod_template, run

KEY = ObjectKey("default/agent")


def node(name: str, **extra: Any) -> Obj:
    return {
        "metadata": {"name": name, "labels": extra.pop("labels", {})},
        "spec": extra,
        "status": {},
    }


def pinned_nodes(h: Harness) -> list[str]:
    out = []
    for p in h.api.objects(PODS):
        if p["metadata"].get("deletionTimestamp"):
            continue
        terms = p["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]["nodeSelectorTerms"]
        out.append(terms[0]["matchFields"][0]["values"][0])
    return sorted(out)


def test_one_pod_per_eligible_node() -> None:
    async def body() -> None:
        h = Harness()
        c = DaemonSetController(h.ctx)
        h.api.seed(NODES, node("a", labels={"role": "worker"}))
        h.api.seed(
            NODES,
            node(
                "b",
                labels={"role": "worker"},
                taints=[{"key": "x", "value": "y", "effect": "NoSchedule"}],
            ),
        )
        h.api.seed(NODES, node("c", labels={"role": "db"}))
        h.api.seed(
            NODES,
            node(
                "d",
                labels={"role": "worker"},
                unschedulable=True,
                taints=[{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}],
            ),
        )
        tmpl = pod_template({"app": "agent"})
        tmpl["spec"]["nodeSelector"] = {"role": "worker"}
        h.api.seed(
            DAEMONSETS,
            {
                "metadata": {"name": "agent", "namespace": "default"},
                "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": tmpl},
            },
        )
        await h.sync()
        await c.reconcile(KEY)
        await c.reconcile(KEY)  # lagging cache: no duplicates
        assert pinned_nodes(h) == ["a", "d"]
        tolerations = h.api.objects(PODS)[0]["spec"]["tolerations"]
        assert any(t["key"] == "node.kubernetes.io/unreachable" for t in tolerations)
        await h.sync()
        await c.reconcile(KEY)
        ds = h.api.stored(DAEMONSETS, "default/agent")
        assert ds is not None
        assert ds["status"]["desiredNumberScheduled"] == 2
        assert ds["status"]["currentNumberScheduled"] == 2
        await h.api.patch(NODES, "d", {"metadata": {"labels": {"role": "db"}}})
        await h.sync()
        await c.reconcile(KEY)
        assert pinned_nodes(h) == ["a"]

    run(body)


def test_rolling_update_replaces_at_most_max_unavailable_at_a_time() -> None:
    async def body() -> None:
        h = Harness()
        c = DaemonSetController(h.ctx)
        for n in ("a", "b", "c"):
            h.api.seed(NODES, node(n))
        h.api.seed(
            DAEMONSETS,
            {
                "metadata": {"name": "agent", "namespace": "default"},
                "spec": {
                    "selector": {"matchLabels": {"app": "agent"}},
                    "template": pod_template({"app": "agent"}),
                },
            },
        )
        await h.converge(c.controller)
        assert len(pinned_nodes(h)) == 3
        await h.api.patch(
            DAEMONSETS,
            "agent",
            {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}},
            namespace="default",
        )
        await h.sync()
        await c.reconcile(KEY)
        deleted = h.api.writes("delete", PODS)
        assert len(deleted) == 1
        await h.converge(c.controller)
        images = {p["spec"]["containers"][0]["image"] for p in h.api.objects(PODS)}
        assert images == {"nginx:2"}
        assert len(pinned_nodes(h)) == 3

    run(body)


def test_template_history_is_kept_as_controller_revisions() -> None:
    """``kubectl rollout history/undo ds`` read ControllerRevisions: one per template, the
    pods' ``controller-revision-hash`` naming theirs, an undo renumbering the old one."""

    async def body() -> None:
        h = Harness()
        c = DaemonSetController(h.ctx)
        h.api.seed(NODES, node("a"))
        h.api.seed(
            DAEMONSETS,
            {
                "metadata": {"name": "agent", "namespace": "default"},
                "spec": {
                    "selector": {"matchLabels": {"app": "agent"}},
                    "template": pod_template({"app": "agent"}),
                },
            },
        )

        async def set_image(image: str) -> None:
            tmpl = pod_template({"app": "agent"}, image=image)
            await h.api.patch(
                DAEMONSETS, "agent", {"spec": {"template": tmpl}}, namespace="default"
            )
            await h.converge(c.controller)

        def revisions() -> dict[str, Obj]:
            return {
                r["data"]["spec"]["template"]["spec"]["containers"][0]["image"]: r
                for r in h.api.objects(CONTROLLERREVISIONS)
            }

        await h.converge(c.controller)
        first = revisions()["nginx:1"]
        assert first["revision"] == 1
        assert first["metadata"]["labels"]["app"] == "agent"
        assert first["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
        assert first["metadata"]["name"] == "agent-" + first["metadata"]["labels"][HASH]
        (pod,) = h.api.objects(PODS)
        assert pod["metadata"]["labels"][HASH] == first["metadata"]["labels"][HASH]
        await set_image("nginx:2")
        await set_image("nginx:1")
        revs = revisions()
        assert {k: r["revision"] for k, r in revs.items()} == {"nginx:1": 3, "nginx:2": 2}
        assert revs["nginx:1"]["metadata"]["uid"] == first["metadata"]["uid"]
        (pod,) = h.api.objects(PODS)
        assert pod["metadata"]["labels"][HASH] == first["metadata"]["labels"][HASH]

    run(body)
