"""A compromised node's ingress credentials (``ingress.conf``, user ``system:berth-ingress``, on
every runc node) against a real API server on 127.0.0.1: they read only the TLS Secrets that
Ingresses served by berth name, nothing else of the cluster's Secrets.

Namespace ``web`` holds ``used-tls`` (named by Ingress ``site``, class ``berth``),
``theirs-tls`` (named by an Ingress of another controller's class), ``db-password`` (named by
nothing); namespace ``other`` holds ``used-tls`` too (same name, named by nothing there). With
the ingress identity:

* reading ``used-tls`` works: get, and list/watch pinned by ``metadata.name`` in ``web``;
* everything else is 403: the unnamed and the other-class Secrets (get, pinned list/watch), a
  list or watch of the namespace, of every namespace (even pinned to a name), the same name in
  another namespace, and any write;
* once the Ingress drops the name (or is deleted), ``used-tls`` is refused again; an Ingress
  naming no class is served (and its Secret readable) only while berth's class is the default.

Each write is followed by a watch that sees it: the ingress graph is fed before any watcher.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from berth.api.ingress import CONTROLLER
from tests.harness.apiserver import ServerHandle, running_server
from tests.security.test_node_authz import Api

NET = "/apis/networking.k8s.io/v1"
INGRESS_USER = "system:berth-ingress"
MERGE = "application/merge-patch+json"
Obj = dict[str, Any]


def _tls_secret(name: str) -> Obj:
    pem = base64.b64encode(b"-----BEGIN X-----\nAA==\n-----END X-----\n").decode()
    return {
        "metadata": {"name": name},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": pem, "tls.key": pem},
    }


def _ingress(name: str, secret: str, class_name: str | None = "berth") -> Obj:
    spec: Obj = {
        "rules": [{"host": f"{name}.test", "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "site", "port": {"number": 80}}},
        }]}}],
        "tls": [{"hosts": [f"{name}.test"], "secretName": secret}],
    }  # fmt: skip
    if class_name is not None:
        spec["ingressClassName"] = class_name
    return {"metadata": {"name": name}, "spec": spec}


def _class(name: str, controller: str) -> Obj:
    return {"metadata": {"name": name}, "spec": {"controller": controller}}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with running_server(tmp_path_factory.mktemp("ingress-authz")) as handle:
        yield handle


@pytest.fixture(scope="module")
def admin(srv: ServerHandle) -> Iterator[Api]:
    api = Api(srv, "admin", ["system:masters"])
    for ns in ("web", "other"):
        api.ok("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    for name in ("used-tls", "theirs-tls", "db-password", "late-tls"):
        api.ok("POST", "/api/v1/namespaces/web/secrets", _tls_secret(name))
    api.ok("POST", "/api/v1/namespaces/other/secrets", _tls_secret("used-tls"))
    api.ok("POST", f"{NET}/ingressclasses", _class("berth", CONTROLLER))
    api.ok("POST", f"{NET}/ingressclasses", _class("theirs", "example.com/ingress"))
    api.ok("POST", f"{NET}/namespaces/web/ingresses", _ingress("site", "used-tls"))
    made = api.ok(
        "POST", f"{NET}/namespaces/web/ingresses", _ingress("their", "theirs-tls", "theirs")
    )
    api.seen(f"{NET}/namespaces/web/ingresses", "their", made["metadata"]["resourceVersion"])
    yield api
    api.close()


@pytest.fixture(scope="module")
def ingress(srv: ServerHandle, admin: Api) -> Iterator[Api]:
    api = Api(srv, INGRESS_USER, [])
    yield api
    api.close()


def _pinned(name: str) -> str:
    return f"fieldSelector=metadata.name%3D{name}"


def _status(api: Api, path: str) -> int:
    """Status of a GET (a watch allowed ends after a second: only the status matters)."""
    status, _, _ = api.raw.request("GET", path)
    return status


WEB = "/api/v1/namespaces/web/secrets"


def test_reads_a_secret_an_ingress_names(ingress: Api) -> None:
    got = ingress.ok("GET", f"{WEB}/used-tls")
    assert got["metadata"]["name"] == "used-tls"
    listed = ingress.ok("GET", f"{WEB}?{_pinned('used-tls')}")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["used-tls"]
    assert _status(ingress, f"{WEB}?watch=1&{_pinned('used-tls')}&timeoutSeconds=1") == 200


@pytest.mark.parametrize(
    "path",
    [
        f"{WEB}/db-password",
        f"{WEB}/theirs-tls",  # named by another controller's Ingress
        "/api/v1/namespaces/other/secrets/used-tls",  # same name, another namespace
        WEB,
        f"{WEB}?fieldSelector=type%3Dkubernetes.io%2Ftls",
        f"{WEB}?{_pinned('db-password')}",
        f"{WEB}?watch=1",
        f"{WEB}?watch=1&{_pinned('db-password')}&timeoutSeconds=1",
        "/api/v1/secrets",
        f"/api/v1/secrets?{_pinned('used-tls')}",
        "/api/v1/secrets?watch=1&timeoutSeconds=1",
        "/api/v1/watch/namespaces/web/secrets/db-password?timeoutSeconds=1",
        f"/api/v1/namespaces/other/secrets?{_pinned('used-tls')}",
    ],
)
def test_refused_every_other_secret_read(ingress: Api, path: str) -> None:
    status, body = ingress("GET", path)
    assert status == 403, body
    assert body["reason"] == "Forbidden"


def test_cannot_write_the_secret_it_reads(ingress: Api) -> None:
    status, body = ingress(
        "PATCH", f"{WEB}/used-tls", {"metadata": {"labels": {"x": "y"}}}, content_type=MERGE
    )
    assert status == 403, body
    status, body = ingress("DELETE", f"{WEB}/used-tls")
    assert status == 403, body
    status, body = ingress("POST", WEB, _tls_secret("mine"))
    assert status == 403, body


def test_the_other_reads_of_its_role_stay(ingress: Api) -> None:
    for path in (
        f"{NET}/ingresses",
        f"{NET}/ingressclasses",
        "/api/v1/services",
        "/apis/discovery.k8s.io/v1/endpointslices",
        "/api/v1/nodes",
    ):
        ingress.ok("GET", path)


def _write_seen(admin: Api, path: str, method: str, name: str, body: Obj) -> None:
    got = admin.ok(method, f"{path}/{name}" if method == "PATCH" else path, body,
                   **({"content_type": MERGE} if method == "PATCH" else {}))  # fmt: skip
    admin.seen(path, name, got["metadata"]["resourceVersion"])


def test_a_secret_no_longer_named_is_refused_again(admin: Api, ingress: Api) -> None:
    path = f"{NET}/namespaces/web/ingresses"
    named = {"spec": {"tls": [{"hosts": ["late.test"], "secretName": "late-tls"}]}}
    unnamed = _ingress("late", "late-tls")
    del unnamed["spec"]["tls"]
    _write_seen(admin, path, "POST", "late", unnamed)
    assert _status(ingress, f"{WEB}/late-tls") == 403

    _write_seen(admin, path, "PATCH", "late", named)
    assert _status(ingress, f"{WEB}/late-tls") == 200
    assert _status(ingress, f"{WEB}?{_pinned('late-tls')}") == 200

    _write_seen(admin, path, "PATCH", "late", {"spec": {"tls": None}})
    assert _status(ingress, f"{WEB}/late-tls") == 403
    assert _status(ingress, f"{WEB}?{_pinned('late-tls')}") == 403
    assert _status(ingress, f"{WEB}?watch=1&{_pinned('late-tls')}&timeoutSeconds=1") == 403

    # named again, then the Ingress deleted
    _write_seen(admin, path, "PATCH", "late", named)
    assert _status(ingress, f"{WEB}/late-tls") == 200
    admin.ok("DELETE", f"{path}/late")
    # events are applied in order: once a later write is seen, so is the delete
    _write_seen(admin, "/api/v1/namespaces/web/configmaps", "POST", "after-delete",
                {"metadata": {"name": "after-delete"}})  # fmt: skip
    assert _status(ingress, f"{WEB}/late-tls") == 403
    assert _status(ingress, f"{WEB}/used-tls") == 200  # another Ingress's name is untouched


def test_a_classless_ingress_counts_only_while_berth_is_the_default(
    admin: Api, ingress: Api
) -> None:
    path = f"{NET}/namespaces/web/ingresses"
    made = admin.ok("POST", path, _ingress("plain", "db-password", class_name=None))
    admin.seen(path, "plain", made["metadata"]["resourceVersion"])
    assert _status(ingress, f"{WEB}/db-password") == 403  # no default class: nobody serves it

    classes = f"{NET}/ingressclasses"
    marked = admin.ok(
        "PATCH",
        f"{classes}/berth",
        {"metadata": {"annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}}},
        content_type=MERGE,
    )
    admin.seen(classes, "berth", marked["metadata"]["resourceVersion"])
    assert _status(ingress, f"{WEB}/db-password") == 200

    unmarked = admin.ok(
        "PATCH",
        f"{classes}/berth",
        {"metadata": {"annotations": {"ingressclass.kubernetes.io/is-default-class": None}}},
        content_type=MERGE,
    )
    admin.seen(classes, "berth", unmarked["metadata"]["resourceVersion"])
    assert _status(ingress, f"{WEB}/db-password") == 403
