"""``pods/proxy`` (and https through ``services/proxy``) as clients use them: kubectl 1.32 and
1.20 ``get --raw``, browsing through ``kubectl proxy`` (redirects to the pod itself come back
through the proxy), the Python client's ``connect_*_namespaced_pod_proxy_with_path``. The
"pods" are HTTP(S) servers on this machine's address, written into the pods' status."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.harness.apiserver import ServerHandle

from .conftest import make_kubectl
from .helpers import Kubectl, Raw, core_api
from .proxy_backends import Backend, host_address

pytestmark = pytest.mark.timeout(180)
NS = "podproxy"
PODS = f"/api/v1/namespaces/{NS}/pods"


def web_pod(name: str, port: int, *, port_name: str = "http") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "containers": [
                {"name": "sidecar", "image": "busybox:1.36"},
                {
                    "name": "web",
                    "image": "nginx:1.27",
                    "ports": [{"name": port_name, "containerPort": port}],
                },
            ]
        },
    }


def set_pod_ip(raw: Raw, name: str, ip: str) -> None:
    """What the node agent does once the pod runs: its IP in status."""
    status, pod = raw.json("GET", f"{PODS}/{name}")
    assert status == 200, pod
    pod["status"] = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
    status, body = raw.json("PUT", f"{PODS}/{name}/status", pod)
    assert status == 200, body


@pytest.fixture(scope="module")
def backends(server: ServerHandle, raw: Raw, api: k8s.ApiClient) -> Iterator[dict[str, Backend]]:
    address = host_address()
    cert, key = server.pki.server_cert()
    plain = Backend(address, "plain")
    secure = Backend(address, "secure", tls=(cert, key, server.pki.ca_cert))
    core = core_api(api)
    core.create_namespace({"metadata": {"name": NS}})
    core.create_namespaced_pod(NS, web_pod("web", plain.port))
    set_pod_ip(raw, "web", address)
    core.create_namespaced_pod(NS, web_pod("tls", secure.port, port_name="https"))
    set_pod_ip(raw, "tls", address)
    # a Service whose endpoint speaks https
    core.create_namespaced_service(
        NS, {"metadata": {"name": "tls"}, "spec": {"ports": [{"name": "https", "port": 443}]}}
    )
    disc: Any = k8s.DiscoveryV1Api(api)
    disc.create_namespaced_endpoint_slice(
        NS,
        {
            "metadata": {"name": "tls", "labels": {"kubernetes.io/service-name": "tls"}},
            "addressType": "IPv4",
            "ports": [{"name": "https", "port": secure.port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        },
    )
    yield {"plain": plain, "secure": secure}
    plain.close()
    secure.close()


@pytest.fixture(scope="module")
def kubectl_version() -> str:
    """kubectl 1.32 (the conftest's ``kubectl``); test_get_raw_reaches_the_pod runs 1.20 too."""
    return "1.32"


def test_get_raw_reaches_the_pod(
    backends: dict[str, Backend],
    kubectl_binaries: dict[str, Path],
    admin_kubeconfig: Path,
    tmp_path: Path,
) -> None:
    port = backends["plain"].port
    for version in ("1.32", "1.20"):
        kubectl = make_kubectl(kubectl_binaries, version, admin_kubeconfig, tmp_path / version)
        # no port: the first declared one; a port name; a number; the http scheme
        for name in ("web", "web:http", f"web:{port}", f"http:web:{port}", "http:web:"):
            out = kubectl.run("get", "--raw", f"{PODS}/{name}/proxy/a/b?x=1&y=%2F")
            assert out.returncode == 0, (version, name, out.stderr)
            doc = json.loads(out.stdout)
            assert (doc["backend"], doc["path"]) == ("plain", "/a/b?x=1&y=%2F"), name


def test_https_through_pods_and_services_proxy(
    backends: dict[str, Backend], kubectl: Kubectl
) -> None:
    secure = backends["secure"]
    for path in (
        f"{PODS}/https:tls:https/proxy/over-tls",
        f"{PODS}/https:tls:{secure.port}/proxy/over-tls",
        f"{PODS}/https:tls:/proxy/over-tls",  # empty port: the first declared one
        f"/api/v1/namespaces/{NS}/services/https:tls:https/proxy/over-tls",
        f"/api/v1/namespaces/{NS}/services/https:tls:443/proxy/over-tls",
    ):
        out = kubectl.run("get", "--raw", path)
        assert out.returncode == 0, (path, out.stderr)
        doc = json.loads(out.stdout)
        assert (doc["backend"], doc["tls"], doc["path"]) == ("secure", True, "/over-tls"), path
    # plain http to a TLS server is the backend's error (400 from it), not ours to hide
    out = kubectl.run("get", "--raw", f"{PODS}/tls:https/proxy/plain")
    assert out.returncode != 0


def test_python_client_proxy_calls(backends: dict[str, Backend], api: k8s.ApiClient) -> None:
    core = core_api(api)

    def call(method: str, *args: Any, **kw: Any) -> Any:
        # the raw answer (the client would turn the pod's JSON into a Python repr)
        resp = getattr(core, method)(*args, _preload_content=False, **kw)
        assert resp.status == 200
        return json.loads(resp.data)

    # the client percent-encodes "/" in the path parameter: the pod sees the real path
    doc = call("connect_get_namespaced_pod_proxy_with_path", "web", NS, "deep/er/path")
    assert (doc["backend"], doc["path"]) == ("plain", "/deep/er/path")
    doc = call("connect_post_namespaced_pod_proxy_with_path", "web:http", NS, "submit")
    assert (doc["method"], doc["path"]) == ("POST", "/submit")
    doc = call("connect_get_namespaced_pod_proxy", "https:tls:https", NS)
    assert (doc["backend"], doc["path"]) == ("secure", "/")
    doc = call("connect_get_namespaced_service_proxy_with_path", "https:tls:https", NS, "x/y")
    assert (doc["backend"], doc["path"]) == ("secure", "/x/y")


def test_browsing_through_kubectl_proxy_stays_on_the_proxy(
    backends: dict[str, Backend], kubectl: Kubectl
) -> None:
    with kubectl.proxy() as port:
        base = f"http://127.0.0.1:{port}{PODS}/web/proxy"
        # the pod redirects to its own /landing: the browser lands there through the proxy
        with urllib.request.urlopen(f"{base}/redirect-here", timeout=60) as resp:
            assert resp.url == f"{base}/landing?from=here"
            assert json.loads(resp.read())["path"] == "/landing?from=here"
        # links in its pages to itself go through the proxy too
        with urllib.request.urlopen(f"{base}/page", timeout=60) as resp:
            page = resp.read().decode()
        assert f'href="{PODS}/web/proxy/linked?x=1"' in page
        assert f'src="{PODS}/web/proxy/image"' in page
        assert 'href="http://192.0.2.1/away"' in page
        link = page.split('href="', 1)[1].split('"', 1)[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{link}", timeout=60) as resp:
            assert json.loads(resp.read())["path"] == "/linked?x=1"
        req = urllib.request.Request(f"{base}/form", data=b"a=1", method="POST")
        with urllib.request.urlopen(req, timeout=60) as resp:
            doc = json.loads(resp.read())
            assert (doc["method"], doc["body"], doc["path"]) == ("POST", "a=1", "/form")


def test_discovery_lists_pods_proxy(raw: Raw) -> None:
    status, doc = raw.json("GET", "/api/v1")
    assert status == 200
    entry = next(r for r in doc["resources"] if r["name"] == "pods/proxy")
    assert entry["kind"] == "PodProxyOptions"
    assert set(entry["verbs"]) == {"create", "delete", "get", "patch", "update"}
