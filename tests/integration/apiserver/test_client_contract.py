"""One contract, two clients: every test here runs against the fake client (what the control
loops' unit tests use) and against the real HTTP client talking to a real API server. Where
they disagree, the fake is wrong: unit tests would pass against a server that does not exist.

Covered: get/list/create/update/patch (merge, strategic, JSON)/delete, resourceVersion
conflicts, generation and the status subresource, label and field selectors, watch events
(including leaving a selector), and the 400/404/409/422 answers.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from berth.api.resources import CONFIGMAPS, DEPLOYMENTS, PODS
from berth.apiserver import selectors as server_selectors
from berth.apiserver.kinds import strategy_for
from berth.client import errors
from berth.client.http import HttpClient
from berth.client.interface import ApiClient, Obj, WatchEvent
from tests.harness.apiserver import ServerHandle
from tests.harness.fake_client import FakeClient

Body = Callable[[ApiClient], Awaitable[None]]
_names = itertools.count()


def _server_fields(resource: Any) -> Any:
    # the fields the real server supports in field selectors, per kind
    return {**server_selectors.COMMON_FIELDS, **strategy_for(resource).field_selectors}


@pytest.fixture(params=["fake", "real"])
def run(request: pytest.FixtureRequest, server: ServerHandle) -> Callable[[Body], None]:
    """Run a test body against the fake client or the real server (one event loop each)."""

    def runner(body: Body) -> None:
        async def main() -> None:
            api: ApiClient
            if request.param == "fake":
                api = FakeClient(fields_of=_server_fields)
            else:
                api = HttpClient.from_kubeconfig(server.kubeconfig())
            try:
                await body(api)
            finally:
                await api.close()
                if request.param == "real":
                    await asyncio.sleep(0.3)  # let aiohttp's TLS transports finish closing

        asyncio.run(main())

    return runner


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


def configmap(name: str, **labels: str) -> Obj:
    return {
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "data": {"k": "v"},
    }


def deployment(name: str, replicas: int = 1) -> Obj:
    labels = {"app": name}
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "a", "image": "busybox:1", "env": [{"name": "X", "value": "1"}]},
                        {"name": "b", "image": "busybox:1"},
                    ]
                },
            },
        },
    }


def test_crud_and_errors(run: Callable[[Body], None]) -> None:
    async def body(api: ApiClient) -> None:
        name = unique("crud")
        with pytest.raises(errors.NotFound) as nf:
            await api.get(CONFIGMAPS, name, namespace="default")
        assert nf.value.status == 404
        created = await api.create(CONFIGMAPS, configmap(name))
        meta = created["metadata"]
        assert (created["kind"], created["apiVersion"]) == ("ConfigMap", "v1")
        for field in ("uid", "resourceVersion", "creationTimestamp"):
            assert meta[field], field
        assert "generation" not in meta  # a ConfigMap has no spec, hence no generation
        assert (await api.get(CONFIGMAPS, name, namespace="default")) == created
        with pytest.raises(errors.AlreadyExists) as exists:
            await api.create(CONFIGMAPS, configmap(name))
        assert exists.value.status == 409
        changed = dict(created, data={"k": "w"})
        updated = await api.update(CONFIGMAPS, changed)
        assert updated["data"] == {"k": "w"}
        assert int(updated["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
        assert updated["metadata"]["uid"] == meta["uid"]
        with pytest.raises(errors.Conflict) as conflict:
            await api.update(CONFIGMAPS, changed)  # its resourceVersion is now stale
        assert conflict.value.status == 409
        await api.delete(CONFIGMAPS, name, namespace="default")
        with pytest.raises(errors.NotFound):
            await api.get(CONFIGMAPS, name, namespace="default")
        with pytest.raises(errors.NotFound):
            await api.delete(CONFIGMAPS, name, namespace="default")
        with pytest.raises(errors.NotFound):
            await api.patch(CONFIGMAPS, name, {"data": {}}, namespace="default")

    run(body)


def test_generate_name(run: Callable[[Body], None]) -> None:
    async def body(api: ApiClient) -> None:
        obj = {"metadata": {"generateName": "gen-", "namespace": "default"}, "data": {}}
        a = await api.create(CONFIGMAPS, obj)
        b = await api.create(CONFIGMAPS, obj)
        assert a["metadata"]["name"].startswith("gen-")
        assert a["metadata"]["name"] != b["metadata"]["name"]

    run(body)


def test_patch_flavours(run: Callable[[Body], None]) -> None:
    async def body(api: ApiClient) -> None:
        name = unique("patch")
        d = await api.create(DEPLOYMENTS, deployment(name))
        # merge: maps merge, null deletes, lists are replaced
        merged = await api.patch(
            DEPLOYMENTS,
            name,
            {"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 3}},
            namespace="default",
        )
        assert merged["metadata"]["labels"] == {"a": "1"}
        assert merged["spec"]["replicas"] == 3
        # strategic: containers merge by name
        containers = [{"name": "b", "image": "busybox:2"}]
        strategic = await api.patch(
            DEPLOYMENTS,
            name,
            {"spec": {"template": {"spec": {"containers": containers}}}},
            namespace="default",
            patch_type="strategic",
        )
        got = strategic["spec"]["template"]["spec"]["containers"]
        assert [(c["name"], c["image"]) for c in got] == [("a", "busybox:1"), ("b", "busybox:2")]
        # the same body as a merge patch replaces the list
        replaced = await api.patch(
            DEPLOYMENTS,
            name,
            {"spec": {"template": {"spec": {"containers": containers}}}},
            namespace="default",
        )
        assert [c["name"] for c in replaced["spec"]["template"]["spec"]["containers"]] == ["b"]
        # JSON patch
        ops: list[Obj] = [
            {"op": "replace", "path": "/spec/replicas", "value": 5},
            {"op": "add", "path": "/metadata/annotations", "value": {"x": "y"}},
        ]
        patched = await api.patch(DEPLOYMENTS, name, ops, namespace="default", patch_type="json")
        assert patched["spec"]["replicas"] == 5
        assert patched["metadata"]["annotations"] == {"x": "y"}
        assert patched["metadata"]["generation"] > d["metadata"]["generation"]
        failing = [{"op": "test", "path": "/spec/replicas", "value": 99}]
        with pytest.raises(errors.Invalid) as invalid:
            await api.patch(DEPLOYMENTS, name, failing, namespace="default", patch_type="json")
        assert invalid.value.status == 422
        with pytest.raises(errors.BadRequest) as bad:
            await api.patch(
                DEPLOYMENTS, name, {"op": "add"}, namespace="default", patch_type="json"
            )
        assert bad.value.status == 400

    run(body)


def test_patch_resource_version_precondition(run: Callable[[Body], None]) -> None:
    async def body(api: ApiClient) -> None:
        name = unique("rv")
        cm = await api.create(CONFIGMAPS, configmap(name))
        rv = cm["metadata"]["resourceVersion"]
        ok = await api.patch(
            CONFIGMAPS,
            name,
            {"metadata": {"resourceVersion": rv}, "data": {"k": "2"}},
            namespace="default",
        )
        assert ok["data"] == {"k": "2"}
        with pytest.raises(errors.Conflict):
            await api.patch(
                CONFIGMAPS,
                name,
                {"metadata": {"resourceVersion": rv}, "data": {"k": "3"}},
                namespace="default",
            )
        stale = [{"op": "replace", "path": "/metadata/resourceVersion", "value": rv}]
        with pytest.raises(errors.Conflict):
            await api.patch(CONFIGMAPS, name, stale, namespace="default", patch_type="json")

    run(body)


def test_generation_and_the_status_subresource(run: Callable[[Body], None]) -> None:
    async def body(api: ApiClient) -> None:
        name = unique("gen")
        d = await api.create(DEPLOYMENTS, deployment(name))
        assert d["metadata"]["generation"] == 1
        # status written through the main resource is ignored, and does not bump generation
        same = await api.patch(DEPLOYMENTS, name, {"status": {"replicas": 7}}, namespace="default")
        assert (same.get("status") or {}).get("replicas") != 7
        assert same["metadata"]["generation"] == 1
        # status through the subresource: written, spec untouched, generation unchanged
        st = await api.patch(
            DEPLOYMENTS,
            name,
            {"status": {"replicas": 7}, "spec": {"replicas": 9}},
            namespace="default",
            subresource="status",
        )
        assert st["status"]["replicas"] == 7
        assert st["spec"]["replicas"] == 1
        assert st["metadata"]["generation"] == 1
        # a spec change bumps generation; a metadata-only change does not
        spec = await api.patch(DEPLOYMENTS, name, {"spec": {"replicas": 2}}, namespace="default")
        assert spec["metadata"]["generation"] == 2
        labels = await api.patch(
            DEPLOYMENTS, name, {"metadata": {"labels": {"x": "y"}}}, namespace="default"
        )
        assert labels["metadata"]["generation"] == 2
        assert labels["status"]["replicas"] == 7

    run(body)


def test_label_and_field_selectors(run: Callable[[Body], None]) -> None:
    async def body(api: ApiClient) -> None:
        tag = unique("sel")
        for i, tier in enumerate(("web", "web", "db")):
            await api.create(CONFIGMAPS, configmap(f"{tag}-{i}", run=tag, tier=tier))

        async def names(label: str | None = None, field: str | None = None) -> list[str]:
            got = await api.list(
                CONFIGMAPS, namespace="default", label_selector=label, field_selector=field
            )
            return sorted(o["metadata"]["name"] for o in got.items)

        assert await names(f"run={tag},tier=web") == [f"{tag}-0", f"{tag}-1"]
        assert await names(f"run={tag},tier notin (web)") == [f"{tag}-2"]
        assert await names(f"run={tag},!tier") == []
        assert await names(f"run={tag}", f"metadata.name={tag}-1") == [f"{tag}-1"]
        assert await names(f"run={tag}", f"metadata.name!={tag}-1") == [f"{tag}-0", f"{tag}-2"]
        assert await names(None, f"metadata.name={tag}-2,metadata.namespace=default") == [
            f"{tag}-2"
        ]
        for bad_label, bad_field in (
            ("tier in (web", None),
            ("a b", None),
            (None, "metadata.name"),
            (None, "spec.nodeName=n1"),  # not a ConfigMap field
            (None, r"metadata.name=a\b"),
        ):
            with pytest.raises(errors.BadRequest) as bad:
                await names(bad_label, bad_field)
            assert bad.value.status == 400

    run(body)


def test_pod_field_selectors(run: Callable[[Body], None]) -> None:
    async def body(api: ApiClient) -> None:
        name = unique("pod")
        pod = {
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1"}], "nodeName": "n-x"},
        }
        await api.create(PODS, pod)
        got = await api.list(PODS, namespace="default", field_selector="spec.nodeName=n-x")
        assert [o["metadata"]["name"] for o in got.items] == [name]
        got = await api.list(
            PODS, namespace="default", field_selector="spec.nodeName=n-x,status.phase=Pending"
        )
        assert [o["metadata"]["name"] for o in got.items] == [name]

    run(body)


async def _collect(events: AsyncIterator[WatchEvent], count: int) -> list[tuple[str, Obj]]:
    seen: list[tuple[str, Obj]] = []
    async with asyncio.timeout(10):
        async for ev in events:
            if ev.type == "BOOKMARK":
                continue
            seen.append((ev.type, ev.object))
            if len(seen) == count:
                break
    return seen


def test_watch_events(run: Callable[[Body], None]) -> None:
    async def body(api: ApiClient) -> None:
        tag = unique("watch")
        first = await api.create(CONFIGMAPS, configmap(f"{tag}-a", run=tag))
        start = first["metadata"]["resourceVersion"]
        events = api.watch(
            CONFIGMAPS, namespace="default", resource_version=start, label_selector=f"run={tag}"
        )
        await api.create(CONFIGMAPS, configmap(f"{tag}-b", run=tag))
        await api.patch(CONFIGMAPS, f"{tag}-a", {"data": {"k": "2"}}, namespace="default")
        # leaving the selector is a DELETED event for this watch
        await api.patch(
            CONFIGMAPS, f"{tag}-b", {"metadata": {"labels": {"run": "x"}}}, namespace="default"
        )
        await api.delete(CONFIGMAPS, f"{tag}-a", namespace="default")
        await api.create(CONFIGMAPS, configmap(f"{tag}-other", run="x"))  # never seen
        seen = await _collect(events, 4)
        assert [(t, o["metadata"]["name"]) for t, o in seen] == [
            ("ADDED", f"{tag}-b"),
            ("MODIFIED", f"{tag}-a"),
            ("DELETED", f"{tag}-b"),
            ("DELETED", f"{tag}-a"),
        ]
        assert seen[1][1]["data"] == {"k": "2"}
        versions = [int(o["metadata"]["resourceVersion"]) for _, o in seen]
        assert versions == sorted(versions)
        await events.aclose()  # type: ignore[attr-defined]

    run(body)


def test_watch_from_zero_lists_what_exists(run: Callable[[Body], None]) -> None:
    async def body(api: ApiClient) -> None:
        tag = unique("w0")
        await api.create(CONFIGMAPS, configmap(f"{tag}-a", run=tag))
        events = api.watch(
            CONFIGMAPS, namespace="default", resource_version="0", label_selector=f"run={tag}"
        )
        seen = await _collect(events, 1)
        assert [(t, o["metadata"]["name"]) for t, o in seen] == [("ADDED", f"{tag}-a")]
        await events.aclose()  # type: ignore[attr-defined]

    run(body)


def test_create_update_details(run: Callable[[Body], None]) -> None:
    async def body(api: ApiClient) -> None:
        name = unique("details")
        # status sent on create is dropped (the status subresource owns it)
        d = deployment(name)
        d["status"] = {"replicas": 5}
        created = await api.create(DEPLOYMENTS, d)
        assert (created.get("status") or {}).get("replicas") is None
        # an update without resourceVersion is unconditional
        body = dict(created)
        body["metadata"] = dict(created["metadata"], resourceVersion="")
        body["spec"] = dict(created["spec"], replicas=4)
        updated = await api.update(DEPLOYMENTS, body)
        assert updated["spec"]["replicas"] == 4
        assert updated["metadata"]["generation"] == 2
        # PUT of the status subresource
        updated["status"] = {"replicas": 2}
        updated["spec"] = dict(updated["spec"], replicas=9)
        status = await api.update(DEPLOYMENTS, updated, subresource="status")
        assert status["status"]["replicas"] == 2
        assert status["spec"]["replicas"] == 4
        # another namespace holds no such object
        with pytest.raises(errors.NotFound):
            await api.get(DEPLOYMENTS, name, namespace="kube-system")
        listed = await api.list(DEPLOYMENTS, namespace="default")
        assert int(listed.resource_version) >= int(status["metadata"]["resourceVersion"])

    run(body)


def test_finalizers_hold_deletion(run: Callable[[Body], None]) -> None:
    async def body(api: ApiClient) -> None:
        name = unique("fin")
        cm = configmap(name)
        cm["metadata"]["finalizers"] = ["example.com/hold"]
        created = await api.create(CONFIGMAPS, cm)
        events = api.watch(
            CONFIGMAPS,
            namespace="default",
            resource_version=created["metadata"]["resourceVersion"],
            field_selector=f"metadata.name={name}",
        )
        held = await api.delete(CONFIGMAPS, name, namespace="default")
        assert held is not None
        assert held["metadata"]["deletionTimestamp"]
        still = await api.get(CONFIGMAPS, name, namespace="default")
        assert still["metadata"]["deletionTimestamp"] == held["metadata"]["deletionTimestamp"]
        gone = await api.patch(
            CONFIGMAPS, name, {"metadata": {"finalizers": None}}, namespace="default"
        )
        assert not gone["metadata"].get("finalizers")
        with pytest.raises(errors.NotFound):
            await api.get(CONFIGMAPS, name, namespace="default")
        seen = await _collect(events, 2)
        assert [t for t, _ in seen] == ["MODIFIED", "DELETED"]
        await events.aclose()  # type: ignore[attr-defined]
        # a plain delete answers with a Status, not the object
        await api.create(CONFIGMAPS, configmap(name))
        assert await api.delete(CONFIGMAPS, name, namespace="default") is None

    run(body)
