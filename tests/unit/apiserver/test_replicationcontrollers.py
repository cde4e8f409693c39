"""ReplicationController strategy through the registry: upstream's defaults (selector and
labels from the template), validation of the map selector, a mutable selector, the scale
subresource's selector string, the Table row and the status.replicas field selector."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from berth.api.resources import REPLICATIONCONTROLLERS, TABLE
from berth.apiserver import client_warnings
from berth.apiserver.auth import UserInfo
from berth.apiserver.errors import ApiError
from berth.apiserver.kinds import strategy_for
from berth.apiserver.podsecurity import PodSecurityConfig
from tests.harness.registry import invalid_fields, memory_registry

RC = REPLICATIONCONTROLLERS


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def rc(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "web", "tier": "front"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
            **spec,
        },
    }


def test_resource_is_served_as_upstream() -> None:
    assert TABLE.by_kind("", "ReplicationController") is RC
    assert RC.version == "v1"
    assert RC.short_names == ("rc",)
    assert RC.categories == ("all",)
    assert set(RC.subresources) == {"status", "scale"}


def test_defaults_take_selector_and_labels_from_the_template() -> None:
    async def scenario() -> None:
        reg = await memory_registry()
        obj = await reg.create(RC, "default", rc(), user=None)
        assert obj["apiVersion"] == "v1"
        assert obj["kind"] == "ReplicationController"
        assert obj["spec"]["replicas"] == 1
        assert obj["spec"]["selector"] == {"app": "web", "tier": "front"}
        assert obj["metadata"]["labels"] == {"app": "web", "tier": "front"}
        assert obj["spec"]["template"]["spec"]["restartPolicy"] == "Always"
        assert obj["status"] == {"replicas": 0}
        # given ones are kept
        mine = rc("mine", replicas=3, selector={"app": "web"})
        mine["metadata"]["labels"] = {"owner": "me"}
        obj = await reg.create(RC, "default", mine, user=None)
        assert obj["spec"]["replicas"] == 3
        assert obj["spec"]["selector"] == {"app": "web"}
        assert obj["metadata"]["labels"] == {"owner": "me"}

    run(scenario())


def test_validation() -> None:
    async def scenario() -> None:
        reg = await memory_registry()
        with pytest.raises(ApiError) as exc:  # the selector must match the template's labels
            await reg.create(RC, "default", rc(selector={"app": "db"}), user=None)
        assert invalid_fields(exc) == ["spec.template.metadata.labels"]
        assert "`selector` does not match template `labels`" in exc.value.message
        bare = rc()  # no labels anywhere: no selector to default to
        del bare["spec"]["template"]["metadata"]
        with pytest.raises(ApiError) as exc:
            await reg.create(RC, "default", bare, user=None)
        assert "spec.selector" in invalid_fields(exc)
        with pytest.raises(ApiError) as exc:
            await reg.create(RC, "default", rc(replicas=-1), user=None)
        assert invalid_fields(exc) == ["spec.replicas"]
        never = rc()
        never["spec"]["template"]["spec"]["restartPolicy"] = "Never"
        with pytest.raises(ApiError) as exc:
            await reg.create(RC, "default", never, user=None)
        assert invalid_fields(exc) == ["spec.template.spec.restartPolicy"]
        with pytest.raises(ApiError) as exc:  # a LabelSelector is not a label map
            await reg.create(RC, "default", rc(selector={"matchLabels": {"app": "web"}}), user=None)
        assert exc.value.code == 400
        assert "spec.selector[matchLabels]: expected a string" in exc.value.message
        with pytest.raises(ApiError) as exc:
            await reg.create(RC, "default", {"metadata": {"name": "nospec"}}, user=None)
        assert invalid_fields(exc) == ["spec.selector", "spec.template"]

    run(scenario())


def test_selector_may_change_and_scale_reads_the_map() -> None:
    async def scenario() -> None:
        reg = await memory_registry()
        await reg.create(RC, "default", rc(selector={"app": "web"}), user=None)
        obj = await reg.patch(
            RC, "default", "web", "merge", {"spec": {"selector": {"tier": "front"}}}, user=None
        )
        assert obj["spec"]["selector"] == {"app": "web", "tier": "front"}
        scale = reg.to_scale(RC, obj)
        assert scale["spec"]["replicas"] == 1
        assert scale["status"]["selector"] == "app=web,tier=front"
        scaled = await reg.update_scale(
            RC,
            "default",
            "web",
            patch_type="merge",
            body={"spec": {"replicas": 4}},
            user=None,
        )
        assert scaled["kind"] == "Scale"
        assert scaled["spec"]["replicas"] == 4
        assert (await reg.get(RC, "default", "web"))["spec"]["replicas"] == 4

    run(scenario())


def test_table_row_and_field_selector() -> None:
    obj = {
        "metadata": {"name": "web", "creationTimestamp": None},
        "spec": {
            "replicas": 3,
            "selector": {"app": "web"},
            "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}},
        },
        "status": {"replicas": 2, "readyReplicas": 1},
    }
    st = strategy_for(RC)
    printer = st.printer(RC)
    assert [c.name for c in printer.columns][:5] == ["Name", "Desired", "Current", "Ready", "Age"]
    row = printer.row(obj)
    assert row[:4] == ["web", 3, 2, 1]
    assert row[5:] == ["c", "nginx", "app=web"]
    assert st.field_selectors["status.replicas"](obj) == "2"


def test_scaling_is_not_a_pod_security_review() -> None:
    """kubectl scale writes /scale: upstream's Pod Security admission ignores subresources of
    pod controllers, so only a change of the RC itself warns about its template."""

    async def scenario() -> None:
        reg = await memory_registry(
            pod_security=PodSecurityConfig.from_mapping({"warn": "restricted"})
        )
        alice = UserInfo("alice")
        with client_warnings.collecting() as warnings:
            await reg.create(RC, "default", rc(), user=alice)
        assert any("would violate PodSecurity" in w for w in warnings)
        with client_warnings.collecting() as warnings:
            await reg.update_scale(
                RC, "default", "web", patch_type="merge", body={"spec": {"replicas": 2}}, user=alice
            )
        assert warnings == []
        with client_warnings.collecting() as warnings:
            await reg.patch(RC, "default", "web", "merge", {"spec": {"replicas": 3}}, user=alice)
        assert any("would violate PodSecurity" in w for w in warnings)

    run(scenario())
