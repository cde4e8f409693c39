"""Registry semantics over the in-memory store (no HTTP)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from berth.api.resources import TABLE, ResourceDef
from berth.apiserver import strategy
from berth.apiserver.errors import ApiError, FieldError
from berth.apiserver.kinds import strategy_for
from berth.apiserver.options import DeleteOptions, ListOptions
from berth.apiserver.registry import SERVER_MANAGER
from berth.apiserver.selectors import parse_label_selector
from tests.harness.registry import memory_registry


def validate(rd: ResourceDef, obj: dict[str, Any]) -> list[FieldError]:
    return strategy_for(rd).validate(rd, obj)


def _rd(group: str, plural: str) -> ResourceDef:
    rd = TABLE.lookup(group, "v1", plural)
    assert rd is not None
    return rd


PODS, CMS, DEPLOY, NSS = (
    _rd("", "pods"),
    _rd("", "configmaps"),
    _rd("apps", "deployments"),
    _rd("", "namespaces"),
)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def _deployment(replicas: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }


def test_generation_bumps_only_on_spec_changes() -> None:
    async def scenario() -> None:
        reg = await memory_registry()
        d = await reg.create(DEPLOY, "default", _deployment(), user=None)
        assert d["metadata"]["generation"] == 1
        d = await reg.patch(
            DEPLOY, "default", "web", "merge", {"metadata": {"labels": {"x": "y"}}}, user=None
        )
        assert d["metadata"]["generation"] == 1
        d = await reg.patch(
            DEPLOY,
            "default",
            "web",
            "merge",
            {"status": {"replicas": 3}},
            subresource="status",
            user=None,
        )
        assert (d["metadata"]["generation"], d["status"]["replicas"]) == (1, 3)
        d = await reg.patch(
            DEPLOY,
            "default",
            "web",
            "merge",
            {"spec": {"replicas": 2}, "status": {"replicas": 0}},
            user=None,
        )
        assert (d["metadata"]["generation"], d["status"]["replicas"]) == (2, 3)
        rv = d["metadata"]["resourceVersion"]
        same = await reg.patch(
            DEPLOY, "default", "web", "merge", {"spec": {"replicas": 2}}, user=None
        )
        assert same["metadata"]["resourceVersion"] == rv  # no-op: nothing written

    run(scenario())


def test_update_with_stale_resource_version_conflicts() -> None:
    async def scenario() -> None:
        reg = await memory_registry()
        cm = await reg.create(
            CMS, "default", {"metadata": {"name": "c"}, "data": {"a": "1"}}, user=None
        )
        await reg.patch(CMS, "default", "c", "merge", {"data": {"a": "2"}}, user=None)
        with pytest.raises(ApiError) as exc:
            await reg.update(
                CMS,
                "default",
                "c",
                {"metadata": {"name": "c", "resourceVersion": cm["metadata"]["resourceVersion"]}},
                user=None,
            )
        assert (exc.value.code, exc.value.reason) == (409, "Conflict")

    run(scenario())


def test_list_pages_keep_selector_and_snapshot() -> None:
    async def scenario() -> None:
        reg = await memory_registry()
        for i in range(10):
            await reg.create(
                CMS,
                "default",
                {"metadata": {"name": f"c{i}", "labels": {"even": str(i % 2 == 0).lower()}}},
                user=None,
            )
        sel = parse_label_selector("even=true")
        first = await reg.list_objects(CMS, "default", ListOptions(label=sel, limit=2))
        assert [o["metadata"]["name"] for o in first.items] == ["c0", "c2"]
        await reg.create(
            CMS, "default", {"metadata": {"name": "c10", "labels": {"even": "true"}}}, user=None
        )
        rest = await reg.list_objects(
            CMS, "default", ListOptions(label=sel, limit=10, continue_token=first.continue_token)
        )
        assert [o["metadata"]["name"] for o in rest.items] == [
            "c4",
            "c6",
            "c8",
        ]  # the snapshot of page 1
        assert rest.revision == first.revision
        assert rest.continue_token == ""

    run(scenario())


def test_pod_deletion_grace_and_finalizers() -> None:
    async def scenario() -> None:
        reg = await memory_registry()
        pod = {
            "metadata": {"name": "p"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
        }
        await reg.create(PODS, "default", pod, user=None)
        obj, gone = await reg.delete(PODS, "default", "p", DeleteOptions(), user=None)
        assert not gone
        assert obj["metadata"]["deletionGracePeriodSeconds"] == 30
        obj, gone = await reg.delete(PODS, "default", "p", DeleteOptions(grace_period=0), user=None)
        assert gone
        await reg.create(
            CMS, "default", {"metadata": {"name": "f", "finalizers": ["x/y"]}}, user=None
        )
        obj, gone = await reg.delete(CMS, "default", "f", DeleteOptions(), user=None)
        assert not gone
        assert obj["metadata"]["deletionTimestamp"]
        with pytest.raises(ApiError):
            await reg.patch(
                CMS,
                "default",
                "f",
                "merge",
                {"metadata": {"finalizers": ["x/y", "new/one"]}},
                user=None,
            )
        await reg.patch(CMS, "default", "f", "merge", {"metadata": {"finalizers": None}}, user=None)
        with pytest.raises(ApiError) as exc:
            await reg.get(CMS, "default", "f")
        assert exc.value.code == 404

    run(scenario())


def test_creating_in_missing_namespace_is_404() -> None:
    async def scenario() -> None:
        reg = await memory_registry()
        with pytest.raises(ApiError) as exc:
            await reg.create(CMS, "nowhere", {"metadata": {"name": "c"}}, user=None)
        assert exc.value.code == 404
        assert exc.value.message == 'namespaces "nowhere" not found'

    run(scenario())


def test_validation_causes() -> None:
    errs = validate(
        DEPLOY,
        {
            "metadata": {"name": "Bad_Name"},
            "spec": {
                "selector": {"matchLabels": {"a": "b"}},
                "template": {
                    "metadata": {"labels": {"a": "c"}},
                    "spec": {"containers": [{"name": "x"}]},
                },
            },
        },
    )
    fields = [e.field for e in errs]
    assert fields == [
        "metadata.name",
        "spec.template.spec.containers[0].image",
        "spec.template.metadata.labels",
    ]
    assert (
        validate(
            PODS,
            {
                "metadata": {"name": "ok", "labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        )
        == []
    )


def test_pod_spec_and_workload_selectors_are_immutable() -> None:
    async def scenario() -> None:
        reg = await memory_registry()
        pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}
        await reg.create(PODS, "default", pod, user=None)
        p = await reg.patch(
            PODS,
            "default",
            "p",
            "strategic",
            {"spec": {"containers": [{"name": "c", "image": "i:2"}]}},
            user=None,
        )
        assert p["spec"]["containers"][0]["image"] == "i:2"
        with pytest.raises(ApiError) as exc:
            await reg.patch(
                PODS, "default", "p", "merge", {"spec": {"nodeName": "sneaky"}}, user=None
            )
        assert exc.value.code == 422
        assert "pod updates may not change fields" in exc.value.message
        await reg.create(DEPLOY, "default", _deployment(), user=None)
        with pytest.raises(ApiError) as exc:
            await reg.patch(
                DEPLOY,
                "default",
                "web",
                "merge",
                {
                    "spec": {
                        "selector": {"matchLabels": {"app": "x"}},
                        "template": {"metadata": {"labels": {"app": "x"}}},
                    }
                },
                user=None,
            )
        assert exc.value.code == 422
        assert exc.value.details is not None
        assert exc.value.details["causes"][0]["field"] == "spec.selector"

    run(scenario())


def test_secret_data_must_be_base64() -> None:
    secrets = _rd("", "secrets")
    ok = {"kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "dmFsdWU="}}
    assert validate(secrets, ok) == []
    bad = {
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"k": "not base64!", "bad/key": "YQ=="},
    }
    assert [e.field for e in validate(secrets, bad)] == ["data[k]", "data[bad/key]"]


def test_a_status_write_shares_the_stored_values_and_changes_only_status() -> None:
    """A built-in kind's status write keeps the stored spec and metadata by sharing the
    decoded object's values (no copy): the stored object and its managedFields are those of
    a copying write, the decoded ``old`` is left as it was, and a later write of the spec
    still finds its change."""

    async def scenario() -> None:
        reg = await memory_registry()
        await reg.create(DEPLOY, "default", _deployment(), user=None)
        before = await reg.get(DEPLOY, "default", "web")
        d = await reg.patch(
            DEPLOY,
            "default",
            "web",
            "strategic",
            {
                "status": {"replicas": 3},
                "spec": {"replicas": 9},
                "metadata": {"labels": {"x": "y"}},
            },
            subresource="status",
            user=None,
            field_manager="agent",
        )
        stored = await reg.get(DEPLOY, "default", "web")
        for obj in (d, stored):
            assert obj["spec"] == before["spec"]
            assert obj["status"]["replicas"] == 3
            assert "labels" not in obj["metadata"]
        entries = {e["manager"]: e for e in stored["metadata"]["managedFields"]}
        assert entries["agent"]["subresource"] == "status"
        assert entries["agent"]["fieldsV1"] == {"f:status": {"f:replicas": {}}}
        assert (
            entries[SERVER_MANAGER]["fieldsV1"]
            == before["metadata"]["managedFields"][0]["fieldsV1"]
        )
        d = await reg.patch(DEPLOY, "default", "web", "merge", {"spec": {"replicas": 2}}, user=None)
        assert (d["metadata"]["generation"], d["spec"]["replicas"]) == (2, 2)
        assert d["status"]["replicas"] == 3

    asyncio.run(scenario())


def test_the_shared_status_write_equals_the_copying_one() -> None:
    old: dict[str, Any] = {
        "metadata": {"name": "p", "labels": {"a": "b"}, "resourceVersion": "3"},
        "spec": {"containers": [{"name": "c"}]},
        "status": {"phase": "Pending"},
    }
    kept = copy.deepcopy(old)
    new = {"metadata": {"labels": {}}, "spec": {}, "status": {"phase": "Running"}}
    shared = strategy.status_update_sharing(old, new)
    assert shared == strategy.status_update(old, new)
    assert shared["spec"] is old["spec"]
    shared["metadata"]["managedFields"] = []
    shared["metadata"]["resourceVersion"] = "4"
    assert old == kept
