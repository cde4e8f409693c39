"""``pods/log`` is proxied over mTLS to the node agent (a stand-in HTTPS server here)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client as k8s

from tests.harness.apiserver import ServerHandle

from .conftest import make_kubectl
from .helpers import core_api, node, pod, serve_requiring_client_certs

pytestmark = pytest.mark.timeout(60)
NS = "logs"
LINES = [f"line {i}" for i in range(1, 11)]


class StandInAgent(ThreadingHTTPServer):
    requests: list[tuple[str, dict[str, list[str]], str]]


class Handler(BaseHTTPRequestHandler):
    server: StandInAgent

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        peer: Any = self.connection.getpeercert()
        cn = next(v for rdn in peer["subject"] for k, v in rdn if k == "commonName")
        self.server.requests.append((url.path, query, cn))
        parts = url.path.split("/")
        if len(parts) != 5 or parts[1] != "containerLogs":
            self.send_error(404)
            return
        lines = LINES
        if "tailLines" in query:
            lines = LINES[-int(query["tailLines"][0]) :]
        if parts[4] != "app":
            lines = [f"{parts[4]}: {x}" for x in lines]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        for line in lines:
            self.wfile.write(f"{line}\n".encode())
            self.wfile.flush()
        if query.get("follow") == ["true"]:
            for i in range(3):
                time.sleep(0.2)
                self.wfile.write(f"followed {i}\n".encode())
                self.wfile.flush()


@pytest.fixture(scope="module")
def agent(server: ServerHandle, api: k8s.ApiClient) -> Iterator[StandInAgent]:
    # the API server accepts only a serving certificate naming the pod's node
    cert, key = server.pki.issue(
        "agent-serving",
        common_name="system:node:log-node",
        server=True,
        ips=["127.0.0.1"],
        dns=["log-node"],
    )
    httpd = StandInAgent(("127.0.0.1", 0), Handler)
    httpd.requests = []
    t = serve_requiring_client_certs(httpd, cert, key, server.pki.ca_cert)
    core = core_api(api)
    core.create_namespace({"metadata": {"name": NS}})
    core.create_node(node("log-node", ip="127.0.0.1", port=httpd.server_address[1]))
    core.create_namespaced_pod(NS, pod("talker", node_name="log-node"))
    multi = pod("multi", node_name="log-node", containers=2)
    core.create_namespaced_pod(NS, multi)
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    t.join(5)


@pytest.mark.parametrize("version", ["1.32", "1.20"])
def test_kubectl_logs(
    version: str,
    agent: StandInAgent,
    kubectl_binaries: dict[str, Path],
    admin_kubeconfig: Path,
    tmp_path: Path,
) -> None:
    kubectl = make_kubectl(kubectl_binaries, version, admin_kubeconfig, tmp_path)
    assert kubectl("logs", "talker", "-n", NS).splitlines() == LINES
    assert kubectl("logs", "talker", "-n", NS, "--tail=2").splitlines() == ["line 9", "line 10"]
    path, query, cn = agent.requests[-1]
    assert path == f"/containerLogs/{NS}/talker/app"
    assert query == {"tailLines": ["2"]}
    assert cn == "kube-apiserver-kubelet-client"  # the API server's agent-client identity
    assert kubectl("logs", "multi", "-n", NS, "-c", "c1", "--tail=1").strip() == "c1: line 10"
    followed = kubectl("logs", "-f", "talker", "-n", NS, "--tail=1").splitlines()
    assert followed == ["line 10", "followed 0", "followed 1", "followed 2"]


def test_python_client_logs_and_errors(agent: StandInAgent, api: k8s.ApiClient) -> None:
    core = core_api(api)
    assert core.read_namespaced_pod_log("talker", NS, tail_lines=3) == "line 8\nline 9\nline 10\n"
    with pytest.raises(k8s.ApiException) as exc:
        core.read_namespaced_pod_log("multi", NS)
    assert exc.value.status == 400
    assert "a container name must be specified for pod multi, choose one of: [c0 c1]" in str(
        exc.value.body
    )
    core.create_namespaced_pod(NS, pod("unscheduled"))
    with pytest.raises(k8s.ApiException) as exc:
        core.read_namespaced_pod_log("unscheduled", NS)
    assert exc.value.status == 400
    assert "does not have a host assigned" in str(exc.value.body)
