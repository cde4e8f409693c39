"""StatefulSet and ControllerRevision strategies through the registry: defaults, validation,
the fields an update may not change, the scale subresource, Table rows."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from berth.api.resources import CONTROLLERREVISIONS, STATEFULSETS
from berth.apiserver.errors import ApiError
from berth.apiserver.kinds import strategy_for
from tests.harness.registry import invalid_fields, memory_registry


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def sts(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web"},
        "spec": {
            "serviceName": "web",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
            **spec,
        },
    }


def test_defaults_and_status() -> None:
    async def scenario() -> None:
        reg = await memory_registry()
        claim = {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
        obj = await reg.create(
            STATEFULSETS, "default", sts(volumeClaimTemplates=[claim]), user=None
        )
        spec = obj["spec"]
        assert spec["replicas"] == 1
        assert spec["podManagementPolicy"] == "OrderedReady"
        assert spec["updateStrategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"partition": 0},
        }
        assert spec["revisionHistoryLimit"] == 10
        assert spec["minReadySeconds"] == 0
        assert spec["persistentVolumeClaimRetentionPolicy"] == {
            "whenDeleted": "Retain",
            "whenScaled": "Retain",
        }
        assert spec["volumeClaimTemplates"][0]["spec"]["volumeMode"] == "Filesystem"
        assert spec["template"]["spec"]["restartPolicy"] == "Always"
        assert obj["status"] == {"replicas": 0, "availableReplicas": 0}
        assert obj["metadata"]["generation"] == 1
        on_delete = await reg.create(
            STATEFULSETS,
            "default",
            {**sts(updateStrategy={"type": "OnDelete"}), "metadata": {"name": "od"}},
            user=None,
        )
        assert on_delete["spec"]["updateStrategy"] == {"type": "OnDelete"}

    run(scenario())


def test_validation() -> None:
    async def scenario() -> None:
        reg = await memory_registry()
        bad = sts(
            replicas=-1,
            podManagementPolicy="Sometimes",
            updateStrategy={"type": "OnDelete", "rollingUpdate": {"partition": 1}},
            ordinals={"start": -2},
            persistentVolumeClaimRetentionPolicy={"whenDeleted": "Shred", "whenScaled": "Retain"},
            volumeClaimTemplates=[{"metadata": {"name": "data"}, "spec": {}}],
        )
        bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
        bad["spec"]["template"]["spec"]["restartPolicy"] = "Never"
        bad["spec"]["template"]["spec"]["activeDeadlineSeconds"] = 5
        with pytest.raises(ApiError) as exc:
            await reg.create(STATEFULSETS, "default", bad, user=None)
        assert sorted(invalid_fields(exc)) == sorted(
            [
                "spec.template.metadata.labels",
                "spec.replicas",
                "spec.podManagementPolicy",
                "spec.updateStrategy.rollingUpdate",
                "spec.ordinals.start",
                "spec.persistentVolumeClaimRetentionPolicy.whenDeleted",
                "spec.volumeClaimTemplates[0].spec.accessModes",
                "spec.volumeClaimTemplates[0].spec.resources[storage]",
                "spec.template.spec.restartPolicy",
                "spec.template.spec.activeDeadlineSeconds",
            ]
        )

    run(scenario())


def test_containers_may_mount_the_claim_templates_and_only_those() -> None:
    """Every pod gets a volume per claim template (its claim), so the template's mounts may
    name one; a mount naming neither a pod volume nor a template is still refused."""

    async def scenario() -> None:
        reg = await memory_registry()
        claim = {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
        ok = sts(volumeClaimTemplates=[claim])
        ok["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [
            {"name": "data", "mountPath": "/data"}
        ]
        created = await reg.create(STATEFULSETS, "default", ok, user=None)
        assert created["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0] == {
            "name": "data",
            "mountPath": "/data",
        }
        bad = sts(volumeClaimTemplates=[claim])
        bad["metadata"]["name"] = "other"
        bad["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [
            {"name": "logs", "mountPath": "/logs"}
        ]
        with pytest.raises(ApiError) as exc:
            await reg.create(STATEFULSETS, "default", bad, user=None)
        assert invalid_fields(exc) == ["spec.template.spec.containers[0].volumeMounts[0].name"]

    run(scenario())


def test_only_some_spec_fields_may_change() -> None:
    async def scenario() -> None:
        reg = await memory_registry()
        await reg.create(STATEFULSETS, "default", sts(replicas=2), user=None)
        for allowed in (
            {"replicas": 5},
            {"updateStrategy": {"rollingUpdate": {"partition": 3}}},
            {"minReadySeconds": 4},
            {"ordinals": {"start": 1}},
        ):
            await reg.patch(STATEFULSETS, "default", "web", "merge", {"spec": allowed}, user=None)
        forbidden_changes: list[dict[str, Any]] = [
            {"serviceName": "other"},
            {"podManagementPolicy": "Parallel"},
            {"volumeClaimTemplates": []},
        ]
        for forbidden in forbidden_changes:
            with pytest.raises(ApiError) as exc:
                await reg.patch(
                    STATEFULSETS, "default", "web", "merge", {"spec": forbidden}, user=None
                )
            assert invalid_fields(exc) == ["spec"]
            assert "updates to statefulset spec for fields other than" in exc.value.message
        scale = reg.to_scale(STATEFULSETS, await reg.get(STATEFULSETS, "default", "web"))
        assert scale["spec"]["replicas"] == 5
        assert scale["status"]["selector"] == "app=web"

    run(scenario())


def test_controller_revision_data_is_immutable_and_revision_renumbers() -> None:
    async def scenario() -> None:
        reg = await memory_registry()
        rev = {
            "metadata": {
                "name": "web-abc",
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "StatefulSet",
                        "name": "web",
                        "uid": "u1",
                        "controller": True,
                    }
                ],
            },
            "data": {"spec": {"template": {"$patch": "replace"}}},
            "revision": 1,
        }
        obj = await reg.create(CONTROLLERREVISIONS, "default", rev, user=None)
        assert "generation" not in obj["metadata"]
        obj = await reg.patch(
            CONTROLLERREVISIONS, "default", "web-abc", "merge", {"revision": 4}, user=None
        )
        assert obj["revision"] == 4
        with pytest.raises(ApiError) as exc:
            await reg.patch(
                CONTROLLERREVISIONS, "default", "web-abc", "merge", {"data": {"x": 1}}, user=None
            )
        assert invalid_fields(exc) == ["data"]
        with pytest.raises(ApiError) as exc:
            await reg.create(
                CONTROLLERREVISIONS, "default", {"metadata": {"name": "empty"}}, user=None
            )
        assert sorted(invalid_fields(exc)) == ["data", "revision"]
        row = strategy_for(CONTROLLERREVISIONS).printer(CONTROLLERREVISIONS).row(obj)
        assert row[:3] == ["web-abc", "statefulset.apps/web", 4]

    run(scenario())
