"""Attacks on ``pods/proxy`` (and the https path shared with ``services/proxy``): a pod whose
status names another host, paths crafted to change the host, a redirect meant to be followed,
oversized bodies both ways, smuggled credentials and upgrades, users without the subresource
or with only some of its verbs. The "pod" is an HTTP(S) server on this machine's address."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from berth.apiserver import resourceproxy
from tests.harness.apiserver import ServerHandle
from tests.integration.apiserver.helpers import Raw
from tests.integration.apiserver.proxy_backends import (
    PRIVATE_HEADERS,
    Backend,
    assert_only_the_clients_own_header_arrived,
    host_address,
)
from tests.security.helpers import bind_role

pytestmark = pytest.mark.timeout(180)
NS = "victims"
PODS = f"/api/v1/namespaces/{NS}/pods"


def _pod(admin: Raw, name: str, ip: str | None, port: int = 8080) -> None:
    body = {
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": "nginx:1.27",
                    "ports": [{"name": "http", "containerPort": port}],
                }
            ]
        },
    }
    status, created = admin.json("POST", PODS, body)
    assert status == 201, created
    if ip is not None:
        created["status"] = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
        status, updated = admin.json("PUT", f"{PODS}/{name}/status", created)
        assert status == 200, updated


@pytest.fixture(scope="module")
def backends(server: ServerHandle, admin: Raw) -> Iterator[dict[str, Backend]]:
    address = host_address()
    cert, key = server.pki.server_cert()
    plain = Backend(address, "plain")
    secure = Backend(address, "secure", tls=(cert, key, server.pki.ca_cert))
    status, body = admin.json("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
    assert status == 201, body
    _pod(admin, "web", address, plain.port)
    _pod(admin, "tls", address, secure.port)
    yield {"plain": plain, "secure": secure}
    plain.close()
    secure.close()


@pytest.mark.parametrize(
    "ip", ["127.0.0.1", "169.254.169.254", "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "nonsense"]
)
def test_a_pod_ip_that_is_not_a_workload_address_is_never_dialled(
    backends: Any, admin: Raw, ip: str
) -> None:
    """Whoever can write a pod's status (a node, an admin) must not turn the proxy into a
    way to reach the API server's own host or the cloud's metadata service."""
    name = "evil-" + "".join(ch if ch.isalnum() else "-" for ch in ip).strip("-")
    _pod(admin, name, ip)
    status, body = admin.json("GET", f"{PODS}/{name}/proxy/latest/meta-data")
    assert status == 400, body
    assert body["kind"] == "Status"
    assert body["message"] == "address not allowed"


def test_a_pod_without_an_ip_yet_is_a_status(backends: Any, admin: Raw) -> None:
    _pod(admin, "pending", None)
    status, body = admin.json("GET", f"{PODS}/pending/proxy/")
    assert status == 400, body
    assert "no IP" in body["message"]


@pytest.mark.parametrize(
    "path",
    [
        "//192.0.2.1/x",
        "/@192.0.2.1/x",
        "/%2F%2F192.0.2.1/x",
        "/..%2F..%2F192.0.2.1",
        "/http:%2F%2F192.0.2.1/",
    ],
)
def test_the_path_cannot_change_the_host(
    backends: dict[str, Backend], admin: Raw, path: str
) -> None:
    seen = backends["plain"].seen.requests
    seen.clear()
    status, body = admin.json("GET", f"{PODS}/web/proxy{path}")
    assert status == 200, body
    assert body["backend"] == "plain"
    assert len(seen) == 1


@pytest.mark.parametrize(
    "path",
    ["/x%0d%0aX-Injected:%20yes", "/x%00y", "/x%zz", "/x%e9"],
)
def test_control_characters_and_bad_escapes_are_refused(
    backends: dict[str, Backend], admin: Raw, path: str
) -> None:
    seen = backends["plain"].seen.requests
    seen.clear()
    status, _, data = admin.request("GET", f"{PODS}/web/proxy{path}")
    assert status == 400, data
    assert json.loads(data)["kind"] == "Status"
    assert seen == []


def test_a_redirect_elsewhere_is_returned_untouched_never_followed(
    backends: dict[str, Backend], admin: Raw
) -> None:
    seen = backends["plain"].seen.requests
    seen.clear()
    status, headers, _ = admin.request("GET", f"{PODS}/web/proxy/redirect-away")
    assert status == 302
    assert headers["location"] == "http://192.0.2.1:81/elsewhere"
    assert len(seen) == 1
    # a redirect to the pod itself goes through the proxy again, still not followed
    status, headers, _ = admin.request("GET", f"{PODS}/web/proxy/redirect-here")
    assert status == 302
    assert headers["location"] == f"{PODS}/web/proxy/landing?from=here"
    assert len(seen) == 2


def test_request_bodies_are_bounded(backends: dict[str, Backend], admin: Raw) -> None:
    seen = backends["plain"].seen.requests
    seen.clear()
    big = b"x" * (resourceproxy.MAX_REQUEST_BODY + 1)
    status, _, data = admin.request(
        "POST", f"{PODS}/web/proxy/upload", big, content_type="text/plain"
    )
    assert status == 413
    assert json.loads(data)["reason"] == "RequestEntityTooLarge"
    assert seen == []


def test_response_bodies_are_bounded(
    backends: dict[str, Backend], admin: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server runs in this process: a smaller bound keeps the test quick.
    monkeypatch.setattr(resourceproxy, "MAX_RESPONSE_BODY", 4 << 20)
    status, _, data = admin.request("GET", f"{PODS}/web/proxy/huge", timeout=120)
    assert status == 200
    assert 0 < len(data) <= 4 << 20


def test_credentials_upgrades_and_hop_by_hop_headers_stay_behind(
    backends: dict[str, Backend], admin: Raw
) -> None:
    seen = backends["plain"].seen.requests
    seen.clear()
    status, _, _ = admin.request("GET", f"{PODS}/web/proxy/headers", headers=PRIVATE_HEADERS)
    assert status == 200
    (got,) = seen
    assert_only_the_clients_own_header_arrived(got["headers"])
    status, body = admin.json(
        "GET", f"{PODS}/web/proxy/", headers={"Connection": "Upgrade", "Upgrade": "websocket"}
    )
    assert status == 400, body


def test_https_backends_get_no_client_certificate_of_the_api_server(
    backends: dict[str, Backend], admin: Raw
) -> None:
    seen = backends["secure"].seen.requests
    seen.clear()
    status, body = admin.json("GET", f"{PODS}/https:tls:http/proxy/who")
    assert status == 200, body
    assert body["tls"] is True
    (got,) = seen
    assert got["peer_cert"] is None


@pytest.mark.parametrize(
    ("target", "code"),
    [
        ("a:b:c:d", 400),
        ("ftp:web:http", 400),
        (":http", 400),
        ("web:nope", 400),
        ("web:0", 400),
        ("web:99999", 400),
        ("missing", 404),
    ],
)
def test_bad_targets_are_statuses(backends: Any, admin: Raw, target: str, code: int) -> None:
    status, body = admin.json("GET", f"{PODS}/{target}/proxy/")
    assert status == code, body
    assert body["kind"] == "Status"


def test_pods_proxy_is_authorized_per_verb_and_namespace(
    backends: Any, server: ServerHandle, admin: Raw
) -> None:
    rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    bind_role(admin, NS, "reader", "reader", rules)
    proxy_get = [{"apiGroups": [""], "resources": ["pods/proxy"], "verbs": ["get"]}]
    bind_role(admin, NS, "browser", "browser", proxy_get)
    status, body = admin.json("POST", "/api/v1/namespaces", {"metadata": {"name": "elsewhere"}})
    assert status == 201, body
    everything = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    bind_role(admin, "elsewhere", "neighbour", "owner", everything)
    users = ("reader", "browser", "neighbour")
    clients = {user: Raw(server, server.client_cert(user, [])) for user in users}
    try:
        for user, method, want in (
            ("reader", "GET", 403),
            ("browser", "GET", 200),
            ("browser", "POST", 403),
            ("browser", "PUT", 403),
            ("browser", "DELETE", 403),
            ("neighbour", "GET", 403),
        ):
            status, _, data = clients[user].request(method, f"{PODS}/web/proxy/x", b"{}")
            assert status == want, (user, method, data)
            if want == 403:
                body = json.loads(data)
                assert "pods/proxy" in body["message"], body
    finally:
        for r in clients.values():
            r.close()


def test_unknown_methods_are_refused(backends: Any, admin: Raw) -> None:
    status, _, data = admin.request("TRACE", f"{PODS}/web/proxy/x")
    assert status == 405, data


def test_a_host_network_pod_reaches_only_its_declared_ports(
    backends: dict[str, Backend], admin: Raw
) -> None:
    """Its IP is the node's: any other port would be whatever else the node serves."""
    ns = "hostnet"
    labels = {"pod-security.kubernetes.io/enforce": "privileged"}
    status, body = admin.json(
        "POST", "/api/v1/namespaces", {"metadata": {"name": ns, "labels": labels}}
    )
    assert status == 201, body
    plain, secure = backends["plain"], backends["secure"]
    pods = f"/api/v1/namespaces/{ns}/pods"
    spec = {
        "hostNetwork": True,
        "containers": [
            {
                "name": "web",
                "image": "nginx:1.27",
                "ports": [{"name": "http", "containerPort": plain.port}],
            }
        ],
    }
    status, created = admin.json("POST", pods, {"metadata": {"name": "node-web"}, "spec": spec})
    assert status == 201, created
    address = host_address()
    created["status"] = {"phase": "Running", "podIP": address, "podIPs": [{"ip": address}]}
    status, body = admin.json("PUT", f"{pods}/node-web/status", created)
    assert status == 200, body
    for target in ("node-web", "node-web:http", f"node-web:{plain.port}"):
        status, body = admin.json("GET", f"{pods}/{target}/proxy/ok")
        assert (status, body["backend"]) == (200, "plain"), (target, body)
    secure.seen.requests.clear()
    status, body = admin.json("GET", f"{pods}/https:node-web:{secure.port}/proxy/")
    assert status == 400, body
    assert "host network" in body["message"]
    assert secure.seen.requests == []
