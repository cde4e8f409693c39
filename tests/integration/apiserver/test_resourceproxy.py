"""``services/proxy`` and ``nodes/proxy`` (:mod:`berth.apiserver.resourceproxy`) with
``kubectl get --raw`` and ``kubectl proxy``, and what a hostile client or a hand-written
EndpointSlice tries: other hosts, loopback and link-local addresses, redirects, smuggled
credentials and hop-by-hop headers, oversized bodies, users without the subresource."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from berth.apiserver import resourceproxy
from tests.harness.apiserver import ServerHandle

from .conftest import make_kubectl
from .helpers import Raw, core_api, grant, node
from .proxy_backends import (
    PRIVATE_HEADERS,
    assert_only_the_clients_own_header_arrived,
    host_address,
)
from .test_streams import NODE, AgentThread

pytestmark = pytest.mark.timeout(120)
NS = "proxied"


class Backend(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]]

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append({"path": self.path, "headers": dict(self.headers.items())})
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        reply = json.dumps(
            {"path": self.path, "method": self.command, "body": body.decode(errors="replace")}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Backend", "yes")
        if self.path.startswith("/headers"):  # a hop-by-hop header of the backend's own
            self.send_header("Connection", "X-Hop")
            self.send_header("X-Hop", "backend-only")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        return


def _serve(address: str) -> tuple[ThreadingHTTPServer, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    handler = type("Handler", (Backend,), {"seen": seen})
    srv = ThreadingHTTPServer((address, 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, seen


@pytest.fixture(scope="module")
def backend(api: k8s.ApiClient) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    address = host_address()
    srv, seen = _serve(address)
    port = srv.server_address[1]
    core = core_api(api)
    core.create_namespace({"metadata": {"name": NS}})
    disc: Any = k8s.DiscoveryV1Api(api)
    targets = {"web": (address, port)}
    for name, (ip, target) in targets.items():
        core.create_namespaced_service(
            NS,
            {
                "metadata": {"name": name},
                "spec": {"ports": [{"name": "http", "port": 80, "targetPort": target}]},
            },
        )
        disc.create_namespaced_endpoint_slice(
            NS,
            {
                "metadata": {"name": name, "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": target, "protocol": "TCP"}],
                "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
            },
        )
    yield port, seen
    srv.shutdown()
    srv.server_close()


SVC = f"/api/v1/namespaces/{NS}/services"


def test_get_raw_reaches_the_service_with_path_and_query(
    backend: Any, kubectl_binaries: dict[str, Path], admin_kubeconfig: Path, tmp_path: Path
) -> None:
    for version in ("1.32", "1.20"):
        kubectl = make_kubectl(kubectl_binaries, version, admin_kubeconfig, tmp_path / version)
        for name in ("web:http", "web:80", "http:web:http", "web"):
            out = kubectl.run("get", "--raw", f"{SVC}/{name}/proxy/hello/there?x=1&y=%2F")
            assert out.returncode == 0, (name, out.stderr)
            assert json.loads(out.stdout)["path"] == "/hello/there?x=1&y=%2F"


def test_kubectl_proxy_forwards_to_the_service(
    backend: Any, kubectl_binaries: dict[str, Path], admin_kubeconfig: Path, tmp_path: Path
) -> None:
    kubectl = make_kubectl(kubectl_binaries, "1.32", admin_kubeconfig, tmp_path)
    with kubectl.proxy() as port:
        url = f"http://127.0.0.1:{port}{SVC}/web:http/proxy/via-kubectl-proxy"
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert resp.headers["X-Backend"] == "yes"
            assert json.loads(resp.read())["path"] == "/via-kubectl-proxy"
        req = urllib.request.Request(url, data=b"posted", method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            doc = json.loads(resp.read())
            assert (doc["method"], doc["body"]) == ("POST", "posted")


def test_credentials_and_hop_by_hop_headers_stay_behind(backend: Any, raw: Raw) -> None:
    _, seen = backend
    seen.clear()
    status, answered, _ = raw.request(
        "GET", f"{SVC}/web:http/proxy/headers", headers=PRIVATE_HEADERS
    )
    assert status == 200
    (got,) = seen
    assert_only_the_clients_own_header_arrived(got["headers"])
    # and the other way: what the backend's Connection names stays behind too
    assert answered["x-backend"] == "yes"
    assert "x-hop" not in answered


def test_redirects_are_returned_not_followed(backend: Any, raw: Raw) -> None:
    status, headers, _ = raw.request("GET", f"{SVC}/web:http/proxy/redirect")
    assert status == 302
    assert headers["location"] == "http://127.0.0.1:1/elsewhere"


def test_bodies_are_bounded(backend: Any, raw: Raw) -> None:
    status, _, body = raw.request(
        "POST", f"{SVC}/web:http/proxy/big", b"x" * (11 << 20), content_type="text/plain"
    )
    assert status == 413
    assert json.loads(body)["kind"] == "Status"


@pytest.mark.parametrize("address", ["127.0.0.1", "169.254.169.254", "0.0.0.0", "::1"])
def test_loopback_and_link_local_endpoints_are_never_dialled(
    backend: Any, raw: Raw, address: str
) -> None:
    """Such an address cannot be written into an EndpointSlice; one already stored (before
    that validation, or straight into the datastore) is still never dialled."""
    assert not resourceproxy.proxyable(address)
    status, body = raw.json(
        "POST",
        f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices",
        {
            "metadata": {"name": "sneaky", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv6" if ":" in address else "IPv4",
            "ports": [{"name": "http", "port": 80}],
            "endpoints": [{"addresses": [address]}],
        },
    )
    assert status == 422, body
    assert resourceproxy.proxyable(host_address())


@pytest.mark.parametrize(
    ("path", "code"),
    [
        (f"{SVC}/web:https/proxy/", 503),  # no such port
        (f"{SVC}/ftp:web:http/proxy/", 400),  # https is served: see test_pod_proxy.py
        (f"{SVC}/missing/proxy/", 404),
        (f"{SVC}/a:b:c:d/proxy/", 400),
    ],
)
def test_bad_targets_are_statuses(backend: Any, raw: Raw, path: str, code: int) -> None:
    status, body = raw.json("GET", path)
    assert status == code, body
    assert body["kind"] == "Status"


def test_proxies_need_their_own_subresource(
    backend: Any, server: ServerHandle, api: k8s.ApiClient
) -> None:
    reads = {"apiGroups": [""], "resources": ["services", "nodes"], "verbs": ["get", "list"]}
    grant(api, "reader", "reader-no-proxy", [reads])
    reader = Raw(server, server.client_cert("reader", []))
    try:
        for path in (f"{SVC}/web:http/proxy/", f"/api/v1/nodes/{NODE}/proxy/healthz"):
            status, body = reader.json("GET", path)
            assert status == 403, body
            assert "proxy" in body["message"]
    finally:
        reader.close()


@pytest.fixture(scope="module")
def agent(server: ServerHandle, api: k8s.ApiClient) -> Iterator[AgentThread]:
    a = AgentThread(server)
    core_api(api).create_node(node(NODE, ip="127.0.0.1", port=a.port))
    yield a
    a.stop()


def test_node_proxy_reaches_the_agent(
    agent: AgentThread, kubectl_binaries: dict[str, Path], admin_kubeconfig: Path, tmp_path: Path
) -> None:
    kubectl = make_kubectl(kubectl_binaries, "1.32", admin_kubeconfig, tmp_path)
    out = kubectl.run("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/healthz")
    assert (out.returncode, out.stdout.strip()) == (0, "ok"), out.stderr
    out = kubectl.run("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/metrics")
    assert out.returncode == 0, out.stderr
    assert "# TYPE" in out.stdout
    started = time.monotonic()
    out = kubectl.run("get", "--raw", "/api/v1/nodes/no-such-node/proxy/healthz")
    assert out.returncode != 0
    assert "NotFound" in out.stderr or "not found" in out.stderr
    assert time.monotonic() - started < 30
