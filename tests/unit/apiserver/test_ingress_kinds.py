"""Ingress and IngressClass: upstream's validation rules and the DefaultIngressClass admission."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from berth.api.meta import Obj
from berth.api.resources import INGRESSCLASSES, INGRESSES, NAMESPACES, TABLE
from berth.apiserver.allocators import IPAllocator, PortAllocator
from berth.apiserver.codec import Codec
from berth.apiserver.errors import ApiError
from berth.apiserver.kinds import Strategies
from berth.apiserver.kinds.networking import validate_ingress, validate_ingress_class
from berth.apiserver.registry import Registry
from berth.store.memory import MemoryStore


def _ingress(**spec: Any) -> Obj:
    base: dict[str, Any] = {
        "rules": [
            {
                "host": "a.example.com",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "web", "port": {"number": 80}}},
                        }
                    ]
                },
            }
        ]
    }
    base.update(spec)
    return {"metadata": {"name": "i", "namespace": "default"}, "spec": base}


def _fields(obj: Obj) -> list[str]:
    return [e.field for e in validate_ingress(obj)]


def _path(obj: Obj) -> dict[str, Any]:
    path: dict[str, Any] = obj["spec"]["rules"][0]["http"]["paths"][0]
    return path


def test_a_plain_ingress_is_valid() -> None:
    assert _fields(_ingress()) == []


def test_rules_or_a_default_backend_are_required() -> None:
    assert _fields(_ingress(rules=None)) == ["spec"]
    ok = _ingress(rules=None, defaultBackend={"service": {"name": "web", "port": {"name": "http"}}})
    assert _fields(ok) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"pathType": None}, "spec.rules[0].http.paths[0].pathType"),
        ({"pathType": "Regex"}, "spec.rules[0].http.paths[0].pathType"),
        ({"path": "relative"}, "spec.rules[0].http.paths[0].path"),
        ({"path": "/a//b"}, "spec.rules[0].http.paths[0].path"),
        ({"path": "/a/../b"}, "spec.rules[0].http.paths[0].path"),
        ({"path": "/a%2Fb"}, "spec.rules[0].http.paths[0].path"),
        ({"path": "/a/."}, "spec.rules[0].http.paths[0].path"),
        ({"backend": {}}, "spec.rules[0].http.paths[0].backend"),
        (
            {
                "backend": {
                    "service": {"name": "web", "port": {"number": 80}},
                    "resource": {"kind": "Bucket", "name": "b"},
                }
            },
            "spec.rules[0].http.paths[0].backend",
        ),
        (
            {"backend": {"service": {"name": "web", "port": {"number": 80, "name": "http"}}}},
            "spec.rules[0].http.paths[0].backend.service.port",
        ),
        (
            {"backend": {"service": {"name": "web", "port": {}}}},
            "spec.rules[0].http.paths[0].backend.service.port.name",
        ),
        (
            {"backend": {"service": {"name": "web", "port": {"number": 70000}}}},
            "spec.rules[0].http.paths[0].backend.service.port.number",
        ),
        (
            {"backend": {"service": {"name": "Web_1", "port": {"number": 80}}}},
            "spec.rules[0].http.paths[0].backend.service.name",
        ),
        (
            {"backend": {"resource": {"apiGroup": "x.io", "kind": "Bucket"}}},
            "spec.rules[0].http.paths[0].backend.resource.name",
        ),
    ],
)
def test_path_and_backend_rules(change: dict[str, Any], field: str) -> None:
    obj = _ingress()
    path = _path(obj)
    for k, v in change.items():
        if v is None:
            path.pop(k)
        else:
            path[k] = v
    assert field in _fields(obj)


def test_implementation_specific_paths_may_be_empty_and_resource_backends_are_valid() -> None:
    obj = _ingress()
    _path(obj).update(
        pathType="ImplementationSpecific",
        path="",
        backend={"resource": {"apiGroup": "x.io", "kind": "Bucket", "name": "b"}},
    )
    assert _fields(obj) == []


@pytest.mark.parametrize(
    "host",
    [
        "10.0.0.1",
        "::1",
        "UPPER.example.com",
        "a b.example.com",
        "a.example.com\n    server x 1.2.3.4:80",
        "foo.*.example.com",
        "a.example.com#x",
    ],
)
def test_hosts_are_dns_names_not_addresses_nor_config(host: str) -> None:
    obj = _ingress()
    obj["spec"]["rules"][0]["host"] = host
    assert _fields(obj) == ["spec.rules[0].host"]
    obj = _ingress(tls=[{"hosts": [host], "secretName": "s"}])
    assert _fields(obj) == ["spec.tls[0].hosts[0]"]


def test_wildcard_hosts_are_valid() -> None:
    obj = _ingress(tls=[{"hosts": ["*.example.com"], "secretName": "tls-a"}])
    obj["spec"]["rules"][0]["host"] = "*.example.com"
    assert _fields(obj) == []


def test_ingress_class_rules() -> None:
    good: Obj = {"metadata": {"name": "c"}, "spec": {"controller": "berth.dev/ingress-haproxy"}}
    assert validate_ingress_class(good) == []
    assert [e.field for e in validate_ingress_class({"spec": {}})] == ["spec.controller"]
    bad = copy.deepcopy(good)
    bad["spec"]["controller"] = "no-domain"
    assert [e.field for e in validate_ingress_class(bad)] == ["spec.controller"]
    params = copy.deepcopy(good)
    params["spec"]["parameters"] = {"kind": "Cfg", "name": "x", "scope": "Namespace"}
    assert [e.field for e in validate_ingress_class(params)] == ["spec.parameters.namespace"]
    params["spec"]["parameters"].update(scope="Cluster", namespace="ns")
    assert [e.field for e in validate_ingress_class(params)] == ["spec.parameters.namespace"]


def _registry() -> Registry:
    return Registry(
        MemoryStore(),
        Codec(),
        service_ips=IPAllocator("10.96.0.0/24"),
        node_ports=PortAllocator(),
        resources=TABLE,
        strategies=Strategies(),
    )


def _class(name: str, *, default: bool) -> Obj:
    annotations = {"ingressclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"controller": "berth.dev/ingress-haproxy"},
    }


def test_the_default_class_fills_ingress_class_name_on_create_only() -> None:
    async def scenario() -> None:
        reg = _registry()
        await reg.create(NAMESPACES, "", {"metadata": {"name": "default"}}, user=None)
        plain = await reg.create(INGRESSES, "default", _ingress(), user=None)
        assert "ingressClassName" not in plain["spec"]
        assert plain["status"] == {"loadBalancer": {}}
        await reg.create(INGRESSCLASSES, "", _class("other", default=False), user=None)
        await reg.create(INGRESSCLASSES, "", _class("berth", default=True), user=None)
        obj = _ingress()
        obj["metadata"]["name"] = "j"
        made = await reg.create(INGRESSES, "default", obj, user=None)
        assert made["spec"]["ingressClassName"] == "berth"
        explicit = _ingress(ingressClassName="other")
        explicit["metadata"]["name"] = "k"
        made = await reg.create(INGRESSES, "default", explicit, user=None)
        assert made["spec"]["ingressClassName"] == "other"
        legacy = _ingress()
        legacy["metadata"].update(name="l", annotations={"kubernetes.io/ingress.class": "other"})
        made = await reg.create(INGRESSES, "default", legacy, user=None)
        assert "ingressClassName" not in made["spec"]
        both = _ingress(ingressClassName="other")
        both["metadata"].update(name="m", annotations={"kubernetes.io/ingress.class": "x"})
        with pytest.raises(ApiError) as exc:
            await reg.create(INGRESSES, "default", both, user=None)
        assert exc.value.code == 422

    asyncio.run(scenario())


def test_an_ingress_class_controller_is_immutable() -> None:
    async def scenario() -> None:
        reg = _registry()
        made = await reg.create(INGRESSCLASSES, "", _class("c", default=False), user=None)
        made["spec"]["controller"] = "example.com/other"
        with pytest.raises(ApiError) as exc:
            await reg.update(INGRESSCLASSES, "", "c", made, user=None)
        assert exc.value.code == 422

    asyncio.run(scenario())
