"""Issue 13 points 5 and 11 at the API: pod fields that become host paths or wire bytes on a
node are refused with 422 Invalid naming the field (the node checks them again: see
``test_node_containment``).

A tenant allowed to create pods and Deployments in her namespace sends them raw (an attacker
does not use a validating client).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from berth.api.resources import RESOURCES
from berth.apiserver.kinds import strategy_for
from tests.harness.apiserver import ServerHandle
from tests.integration.apiserver.helpers import Raw
from tests.security.helpers import tenant_in_new_namespace

pytestmark = pytest.mark.timeout(120)
NS = "tenant"
PODS = f"/api/v1/namespaces/{NS}/pods"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"


@pytest.fixture(scope="module")
def tenant(server: ServerHandle) -> Iterator[Raw]:
    """Raw HTTPS as "mallory", who may do anything to pods and deployments in her namespace."""
    rules = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["*"]},
    ]
    mallory = tenant_in_new_namespace(server, NS, "workloads", rules)
    yield mallory
    mallory.close()


_COUNTER = iter(range(10_000))


def _pod(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"p{next(_COUNTER)}"},
        "spec": {"containers": [{"name": "app", "image": "busybox"}], **spec},
    }


def _app(**fields: Any) -> dict[str, Any]:
    return {"name": "app", "image": "busybox", **fields}


def _refused(raw: Raw, path: str, obj: Any) -> list[dict[str, Any]]:
    status, _, data = raw.request("POST", path, obj)
    assert status == 422, f"accepted ({status}): {data[:300]!r}"
    body: dict[str, Any] = json.loads(data)
    assert body["reason"] == "Invalid"
    causes: list[dict[str, Any]] = body["details"]["causes"]
    return causes


def _fields(causes: list[dict[str, Any]]) -> list[str]:
    return [c["field"] for c in causes]


CM = {"name": "settings"}


@pytest.mark.parametrize(
    ("volume", "field"),
    [
        ({"name": "../../../etc/cron.d", "configMap": CM}, "spec.volumes[0].name"),
        ({"name": "..", "emptyDir": {}}, "spec.volumes[0].name"),
        ({"name": "a/b", "secret": {"secretName": "s"}}, "spec.volumes[0].name"),
        ({"name": "Data", "emptyDir": {}}, "spec.volumes[0].name"),
        ({"name": "c", "configMap": {**CM, "items": [{"key": "k", "path": "../../x"}]}},
         "spec.volumes[0].configMap.items[0].path"),
        ({"name": "c", "configMap": {**CM, "items": [{"key": "k", "path": "/etc/passwd"}]}},
         "spec.volumes[0].configMap.items[0].path"),
        ({"name": "c", "secret": {"secretName": "s", "items": [{"key": "k", "path": "..data"}]}},
         "spec.volumes[0].secret.items[0].path"),
        ({"name": "c", "secret": {"secretName": "s", "items": [{"key": "k", "path": "a/../../b"}]}},
         "spec.volumes[0].secret.items[0].path"),
        ({"name": "c", "configMap": {**CM, "defaultMode": 0o4777}},
         "spec.volumes[0].configMap.defaultMode"),
        ({"name": "c", "emptyDir": {}, "configMap": CM}, "spec.volumes[0].configMap"),
        ({"name": "c", "projected": {"sources": [{"secret": {"name": "s", "items": [
            {"key": "k", "path": "../../../../etc/cron.d/x"}]}}]}},
         "spec.volumes[0].projected.sources[0].secret.items[0].path"),
    ],
    ids=["cm-name-traversal", "emptydir-dotdot", "secret-slash", "not-a-label",
         "item-dotdot", "item-absolute", "item-reserved", "item-nested-dotdot", "mode",
         "two-sources", "projected-item-dotdot"],
)  # fmt: skip
def test_hostile_volumes_are_refused(tenant: Raw, volume: dict[str, Any], field: str) -> None:
    causes = _refused(tenant, PODS, _pod({"volumes": [volume]}))
    assert field in _fields(causes), causes


def test_duplicate_volume_names_are_refused(tenant: Raw) -> None:
    vols = [{"name": "data", "emptyDir": {}}, {"name": "data", "configMap": CM}]
    causes = _refused(tenant, PODS, _pod({"volumes": vols}))
    assert {"field": "spec.volumes[1].name", "reason": "FieldValueDuplicate"}.items() <= causes[
        0
    ].items()


@pytest.mark.parametrize(
    ("mount", "field"),
    [
        ({"name": "missing", "mountPath": "/data"}, "spec.containers[0].volumeMounts[0].name"),
        ({"name": "data", "mountPath": "data"}, "spec.containers[0].volumeMounts[0].mountPath"),
        ({"name": "data", "mountPath": "/data/../../etc"},
         "spec.containers[0].volumeMounts[0].mountPath"),
        ({"name": "data", "mountPath": "/d", "subPath": "../../../../etc"},
         "spec.containers[0].volumeMounts[0].subPath"),
        ({"name": "data", "mountPath": "/d", "subPath": "/etc"},
         "spec.containers[0].volumeMounts[0].subPath"),
        ({"name": "data", "mountPath": "/d", "subPathExpr": "$(POD)/../.."},
         "spec.containers[0].volumeMounts[0].subPathExpr"),
    ],
    ids=["unknown-volume", "relative", "dotdot", "subpath-dotdot", "subpath-absolute",
         "subpathexpr-dotdot"],
)  # fmt: skip
def test_hostile_volume_mounts_are_refused(tenant: Raw, mount: dict[str, Any], field: str) -> None:
    spec = {
        "volumes": [{"name": "data", "emptyDir": {}}],
        "containers": [_app(volumeMounts=[mount])],
    }
    causes = _refused(tenant, PODS, _pod(spec))
    assert field in _fields(causes), causes


def test_duplicate_mount_paths_are_refused(tenant: Raw) -> None:
    mounts = [{"name": "a", "mountPath": "/d"}, {"name": "b", "mountPath": "/d"}]
    vols = [{"name": "a", "emptyDir": {}}, {"name": "b", "emptyDir": {}}]
    causes = _refused(
        tenant, PODS, _pod({"volumes": vols, "containers": [_app(volumeMounts=mounts)]})
    )
    assert "spec.containers[0].volumeMounts[1].mountPath" in _fields(causes)


def test_container_names_are_unique_across_init_and_app_containers(tenant: Raw) -> None:
    spec = {"initContainers": [_app()], "containers": [_app()]}
    causes = _refused(tenant, PODS, _pod(spec))
    assert "spec.containers[0].name" in _fields(causes), causes


_CRLF = "/ HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET /admin"


@pytest.mark.parametrize(
    ("probe", "field"),
    [
        ({"httpGet": {"path": _CRLF, "port": 80}}, "livenessProbe.httpGet.path"),
        ({"httpGet": {"path": "healthz", "port": 80}}, "livenessProbe.httpGet.path"),
        ({"httpGet": {"path": "/a b", "port": 80}}, "livenessProbe.httpGet.path"),
        ({"httpGet": {"path": "/", "port": 80,
                      "httpHeaders": [{"name": "X-A", "value": "1\r\nX-Injected: 1"}]}},
         "livenessProbe.httpGet.httpHeaders[0].value"),
        ({"httpGet": {"path": "/", "port": 80,
                      "httpHeaders": [{"name": "X-A: 1\r\nX-B", "value": "1"}]}},
         "livenessProbe.httpGet.httpHeaders[0].name"),
        ({"httpGet": {"path": "/", "port": 80, "scheme": "FILE"}}, "livenessProbe.httpGet.scheme"),
        ({"httpGet": {"path": "/", "port": 70000}}, "livenessProbe.httpGet.port"),
    ],
    ids=["path-crlf", "path-relative", "path-space", "header-value-crlf", "header-name",
         "scheme", "port"],
)  # fmt: skip
def test_probe_fields_that_inject_http_are_refused(
    tenant: Raw, probe: dict[str, Any], field: str
) -> None:
    causes = _refused(tenant, PODS, _pod({"containers": [_app(livenessProbe=probe)]}))
    assert f"spec.containers[0].{field}" in _fields(causes), causes


def test_lifecycle_http_hooks_are_checked_like_probes(tenant: Raw) -> None:
    hook = {"httpGet": {"path": _CRLF, "port": 80}}
    causes = _refused(tenant, PODS, _pod({"containers": [_app(lifecycle={"preStop": hook})]}))
    assert "spec.containers[0].lifecycle.preStop.httpGet.path" in _fields(causes), causes


def test_deployment_templates_are_checked_too(tenant: Raw) -> None:
    template = {
        "metadata": {"labels": {"app": "x"}},
        "spec": {
            "containers": [_app()],
            "volumes": [{"name": "../../../etc/cron.d", "configMap": CM}],
        },
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "evil"},
        "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template},
    }
    causes = _refused(tenant, DEPLOYMENTS, deployment)
    assert "spec.template.spec.volumes[0].name" in _fields(causes), causes


def test_a_pod_using_these_fields_correctly_is_accepted(tenant: Raw) -> None:
    spec = {
        "volumes": [
            {"name": "settings", "configMap": {"name": "settings", "defaultMode": 0o644,
             "items": [{"key": "app.conf", "path": "conf/app.conf", "mode": 0o600}]}},
            {"name": "token", "secret": {"secretName": "token"}},
            {"name": "scratch", "emptyDir": {"medium": "Memory"}},
            {"name": "plain"},
        ],
        "initContainers": [_app(name="init")],
        "containers": [
            _app(
                volumeMounts=[
                    {"name": "settings", "mountPath": "/etc/app", "readOnly": True},
                    {"name": "scratch", "mountPath": "/var/cache/app", "subPath": "cache/v1"},
                    {"name": "token", "mountPath": "/run/secrets/app"},
                    {"name": "plain", "mountPath": "/data"},
                ],
                livenessProbe={"httpGet": {"path": "/healthz?full=1", "port": "http",
                                           "scheme": "HTTPS",
                                           "httpHeaders": [{"name": "X-Probe", "value": "a b"}]}},
                readinessProbe={"tcpSocket": {"port": 8080}},
                ports=[{"name": "http", "containerPort": 8080}],
            ),
        ],
        "hostname": "web-0",
        "subdomain": "web",
        "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["db.local"]}],
    }  # fmt: skip
    status, _, data = tenant.request("POST", PODS, _pod(spec))
    assert status == 201, data


@pytest.mark.parametrize(
    ("handler", "field"),
    [
        ({"httpGet": {"path": "/", "port": 80, "host": "x\r\nHost: y"}}, "httpGet.host"),
        ({"httpGet": {"path": "/", "port": 80, "host": "http://169.254.169.254/"}}, "httpGet.host"),
        ({"tcpSocket": {"port": 80, "host": "a b"}}, "tcpSocket.host"),
    ],
    ids=["http-host-crlf", "http-host-url", "tcp-host-space"],
)
def test_probe_hosts_must_be_addresses_or_dns_names(handler: dict[str, Any], field: str) -> None:
    # Checked on the validator itself: Pod Security Admission may refuse a probe ``host``
    # first on a running server, and this is about what validation accepts.
    pods = next(rd for rd in RESOURCES if rd.kind == "Pod")
    errors = strategy_for(pods).validate(pods, _pod({"containers": [_app(readinessProbe=handler)]}))
    assert f"spec.containers[0].readinessProbe.{field}" in [e.field for e in errors]
