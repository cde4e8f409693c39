"""Template keys and the bounded memo behind remembered pod verdicts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from berth.api.resources import TABLE, ResourceDef
from berth.apiserver import client_warnings
from berth.apiserver.auth import UserInfo
from berth.apiserver.errors import ApiError
from berth.apiserver.podsecurity import PodSecurityAdmission, PodSecurityConfig
from berth.apiserver.podtemplate import PodTemplate, Remembered, spec_bytes
from berth.apiserver.validation import pod_fields

_PODS = TABLE.lookup("", "v1", "pods")
assert _PODS is not None
PODS: ResourceDef = _PODS


def test_keys_tell_json_types_apart() -> None:
    keys = {spec_bytes({"terminationGracePeriodSeconds": value}) for value in (1, 1.0, True, "1")}
    assert len(keys) == 4


def test_a_spec_naming_a_token_volume_gets_no_key() -> None:
    mount = {"name": "kube-api-access-bcdfg", "mountPath": "/x"}
    assert spec_bytes({"containers": [{"name": "c", "volumeMounts": [mount]}]}) is None
    assert spec_bytes({"containers": [{"name": "c", "args": [2**70]}]}) is None  # not JSON
    assert spec_bytes({"containers": [{"name": "c"}]}) is not None


def test_the_memo_keeps_only_the_last_used_entries() -> None:
    memo: Remembered[str, int] = Remembered(size=2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1  # now the most recent
    memo.put("c", 3)
    assert (memo.get("a"), memo.get("b"), memo.get("c"), len(memo)) == (1, None, 3, 2)


def test_an_invalid_spec_is_never_remembered() -> None:
    spec: dict[str, Any] = {
        "containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "nope"}]}]
    }
    template = PodTemplate(spec_bytes(spec) or b"", True)
    for _ in range(2):
        errs = pod_fields({"spec": spec}, template)
        assert [(e.field, e.message) for e in errs] == [
            ("spec.containers[0].volumeMounts[0].name", "Not found: 'nope'"),
            ("spec.containers[0].volumeMounts[0].mountPath", "Required value"),
        ]


def _admission(config: PodSecurityConfig) -> PodSecurityAdmission:
    async def read_namespace(name: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "resourceVersion": "1"}}

    async def list_pods(ns: str) -> list[dict[str, Any]]:
        return []

    return PodSecurityAdmission(config, read_namespace=read_namespace, list_pods=list_pods)


def test_an_exempt_user_does_not_open_the_template_to_others() -> None:
    psa = _admission(PodSecurityConfig(exempt_usernames=("deployer",)))
    spec = {
        "containers": [{"name": "c", "image": "i"}],
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
    }
    template = PodTemplate(spec_bytes(spec) or b"", True)

    async def review(user: str, name: str) -> None:
        with client_warnings.collecting():
            await psa.review(
                UserInfo(user, ()),
                "create",
                PODS,
                subresource="",
                namespace="ns",
                name=name,
                new={"metadata": {"name": name}, "spec": spec},
                template=template,
            )

    asyncio.run(review("deployer", "a"))
    with pytest.raises(ApiError) as refused:
        asyncio.run(review("tenant", "b"))
    assert refused.value.message == (
        'pods "b" is forbidden: violates PodSecurity "baseline:latest": hostPath volumes'
        ' (volume "root")'
    )
