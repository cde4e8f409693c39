"""Namespaces carry the ``kubernetes.io/metadata.name`` label, which no write can remove or
change; Services get kube-apiserver's IP family and traffic-policy defaults, and those an
IPv4 single-stack cluster cannot serve are refused with a 422 that says why."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from berth.api.resources import TABLE, ResourceDef
from berth.apiserver.errors import ApiError
from berth.apiserver.registry import Registry
from tests.harness.registry import memory_registry


def _rd(plural: str) -> ResourceDef:
    rd = TABLE.lookup("", "v1", plural)
    assert rd is not None
    return rd


NSS, SVCS = _rd("namespaces"), _rd("services")
LABEL = "kubernetes.io/metadata.name"


def _run(scenario: Callable[[Registry], Awaitable[None]]) -> None:
    async def main() -> None:
        await scenario(await memory_registry())

    asyncio.run(main())


def test_a_namespace_is_labelled_with_its_name_and_keeps_the_label() -> None:
    async def scenario(reg: Registry) -> None:
        ns = await reg.create(
            NSS, "", {"metadata": {"name": "team", "labels": {"a": "b"}}}, user=None
        )
        assert ns["metadata"]["labels"] == {"a": "b", LABEL: "team"}
        generated = await reg.create(NSS, "", {"metadata": {"generateName": "gen-"}}, user=None)
        name = generated["metadata"]["name"]
        assert generated["metadata"]["labels"] == {LABEL: name}
        changed = await reg.patch(
            NSS, "", "team", "merge", {"metadata": {"labels": {LABEL: "other"}}}, user=None
        )
        assert changed["metadata"]["labels"][LABEL] == "team"
        removed = await reg.patch(
            NSS, "", "team", "json", [{"op": "remove", "path": "/metadata/labels"}], user=None
        )
        assert removed["metadata"]["labels"] == {LABEL: "team"}
        put = await reg.update(NSS, "", "team", {"metadata": {"name": "team"}}, user=None)
        assert put["metadata"]["labels"] == {LABEL: "team"}
        assert (await reg.get(NSS, "", "team"))["metadata"]["labels"] == {LABEL: "team"}

    _run(scenario)


def _svc(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("ports", [{"port": 80}])
    return {"metadata": {"name": name}, "spec": spec}


FAMILY_FIELDS = (
    "clusterIPs",
    "ipFamilies",
    "ipFamilyPolicy",
    "internalTrafficPolicy",
    "externalTrafficPolicy",
    "allocateLoadBalancerNodePorts",
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {},
            {
                "clusterIPs": "<ip>",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "internalTrafficPolicy": "Cluster",
            },
        ),
        (
            {"type": "NodePort"},
            {
                "clusterIPs": "<ip>",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "internalTrafficPolicy": "Cluster",
                "externalTrafficPolicy": "Cluster",
            },
        ),
        (
            {"type": "LoadBalancer", "externalTrafficPolicy": "Local"},
            {
                "clusterIPs": "<ip>",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "internalTrafficPolicy": "Cluster",
                "externalTrafficPolicy": "Local",
                "allocateLoadBalancerNodePorts": True,
            },
        ),
        (
            {"externalIPs": ["192.0.2.7"], "ipFamilyPolicy": "PreferDualStack"},
            {
                "clusterIPs": "<ip>",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "PreferDualStack",
                "internalTrafficPolicy": "Cluster",
                "externalTrafficPolicy": "Cluster",
            },
        ),
        (
            {"clusterIP": "None", "selector": {"app": "x"}},
            {
                "clusterIPs": ["None"],
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "internalTrafficPolicy": "Cluster",
            },
        ),
        (  # headless without a selector: upstream's dual-stack default, even single-stack
            {"clusterIP": "None"},
            {
                "clusterIPs": ["None"],
                "ipFamilies": ["IPv4", "IPv6"],
                "ipFamilyPolicy": "RequireDualStack",
                "internalTrafficPolicy": "Cluster",
            },
        ),
        ({"type": "ExternalName", "externalName": "db.example.com"}, {}),
    ],
    ids=["clusterip", "nodeport", "loadbalancer", "externalips", "headless", "selectorless", "en"],
)
def test_service_defaults(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    async def scenario(reg: Registry) -> None:
        svc = await reg.create(SVCS, "default", _svc("s", **spec), user=None)
        got = {f: svc["spec"][f] for f in FAMILY_FIELDS if f in svc["spec"]}
        if expected.get("clusterIPs") == "<ip>":
            expected["clusterIPs"] = [svc["spec"]["clusterIP"]]
        assert got == expected
        assert (await reg.get(SVCS, "default", "s"))["spec"] == svc["spec"]

    _run(scenario)


def test_session_affinity_defaults() -> None:
    async def scenario(reg: Registry) -> None:
        sticky = await reg.create(
            SVCS, "default", _svc("sticky", sessionAffinity="ClientIP"), user=None
        )
        assert sticky["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
        plain = await reg.create(
            SVCS,
            "default",
            _svc("plain", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 5}}),
            user=None,
        )
        assert "sessionAffinityConfig" not in plain["spec"]  # dropped for None, as upstream

    _run(scenario)


def test_an_update_keeps_the_policy_and_a_change_to_external_name_drops_the_families() -> None:
    async def scenario(reg: Registry) -> None:
        svc = await reg.create(
            SVCS, "default", _svc("s", ipFamilyPolicy="PreferDualStack"), user=None
        )
        spec = {k: v for k, v in svc["spec"].items() if k not in ("ipFamilyPolicy", "ipFamilies")}
        put = await reg.update(
            SVCS, "default", "s", {"metadata": {"name": "s"}, "spec": spec}, user=None
        )
        assert (put["spec"]["ipFamilyPolicy"], put["spec"]["ipFamilies"]) == (
            "PreferDualStack",
            ["IPv4"],
        )
        external = await reg.patch(
            SVCS,
            "default",
            "s",
            "merge",
            {"spec": {"type": "ExternalName", "externalName": "db.example.com"}},
            user=None,
        )
        assert not {"clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"} & set(
            external["spec"]
        )

    _run(scenario)


@pytest.mark.parametrize(
    ("spec", "field", "says"),
    [
        ({"ipFamilyPolicy": "RequireDualStack"}, "spec.ipFamilyPolicy", "dual-stack"),
        ({"ipFamilies": ["IPv6"]}, "spec.ipFamilies[0]", "not configured on this cluster"),
        (
            {"ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "PreferDualStack"},
            "spec.ipFamilies[1]",
            "not configured on this cluster",
        ),
        ({"clusterIP": "fd00::10"}, "spec.clusterIPs[0]", "IPv6 is not configured"),
        ({"clusterIPs": ["fd00::10"]}, "spec.clusterIPs[0]", "IPv6 is not configured"),
        ({"ipFamilyPolicy": "Dual"}, "spec.ipFamilyPolicy", "Unsupported value"),
        ({"ipFamilies": ["IPv5"]}, "spec.ipFamilies[0]", "Unsupported value"),
        ({"ipFamilies": ["IPv4", "IPv4"]}, "spec.ipFamilies[1]", "Duplicate value"),
        (
            {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.21"]},
            "spec.clusterIPs",
            "first value must match",
        ),
        (
            {"clusterIPs": ["10.96.0.20", "10.96.0.21"]},
            "spec.ipFamilyPolicy",
            "multiple IP families",
        ),
        (
            {
                "type": "ExternalName",
                "externalName": "x.example.com",
                "ipFamilyPolicy": "SingleStack",
            },
            "spec.ipFamilyPolicy",
            "may not be set for ExternalName services",
        ),
    ],
)
def test_what_an_ipv4_single_stack_cluster_cannot_serve_is_refused(
    spec: dict[str, Any], field: str, says: str
) -> None:
    async def scenario(reg: Registry) -> None:
        with pytest.raises(ApiError) as err:
            await reg.create(SVCS, "default", _svc("bad", **spec), user=None)
        assert err.value.code == 422
        causes = err.value.details["causes"] if err.value.details else []
        assert any(c["field"] == field and says in c["message"] for c in causes), causes
        if "dual-stack" in says or "not configured" in says:
            assert "berth clusters are IPv4 single-stack" in err.value.message
        assert await reg.store.get(SVCS.key("default", "bad")) is None

    _run(scenario)


def test_headless_selectorless_services_may_name_any_family() -> None:
    async def scenario(reg: Registry) -> None:
        svc = await reg.create(
            SVCS, "default", _svc("ext", clusterIP="None", ipFamilies=["IPv6"]), user=None
        )
        assert svc["spec"]["ipFamilies"] == ["IPv6", "IPv4"]
        assert svc["spec"]["ipFamilyPolicy"] == "RequireDualStack"

    _run(scenario)
