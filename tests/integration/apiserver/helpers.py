"""Helpers for driving the API server: kubectl runner, raw HTTPS client, object builders, and
the document surgery the fuzz tests use (every path into a JSON document; one value replaced)."""

from __future__ import annotations

import contextlib
import copy
import http.client
import json
import os
import re
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import HTTPServer
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch

from tests.harness.apiserver import ServerHandle, ServerProcess, prepare, start_process
from tests.harness.ports import free_port

# The kubernetes client's generated models are loosely typed (optional everywhere); tests
# handle them as Any and assert on the values instead.
Watch: Any = k8s_watch.Watch


def core_api(api: k8s.ApiClient) -> Any:
    return k8s.CoreV1Api(api)


def apps_api(api: k8s.ApiClient) -> Any:
    return k8s.AppsV1Api(api)


def rbac_api(api: k8s.ApiClient) -> Any:
    return k8s.RbacAuthorizationV1Api(api)


def grant(
    api: k8s.ApiClient, user: str, name: str, rules: list[Any], *, namespace: str | None = None
) -> None:
    """Give ``user`` the ``rules``: a Role in ``namespace`` (without one, a ClusterRole) named
    ``name``, and a binding of it to the user, named the same."""
    rbac = rbac_api(api)
    group = "rbac.authorization.k8s.io"
    role = {"metadata": {"name": name}, "rules": rules}
    binding = {
        "metadata": {"name": name},
        "roleRef": {
            "apiGroup": group,
            "kind": "Role" if namespace else "ClusterRole",
            "name": name,
        },
        "subjects": [{"kind": "User", "name": user, "apiGroup": group}],
    }
    if namespace is None:
        rbac.create_cluster_role(role)
        rbac.create_cluster_role_binding(binding)
    else:
        rbac.create_namespaced_role(namespace, role)
        rbac.create_namespaced_role_binding(namespace, binding)


@dataclass
class Kubectl:
    """Runs one kubectl binary with its own HOME and discovery cache (no leaks between runs)."""

    binary: Path
    kubeconfig: Path
    home: Path
    version: str

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "KUBECACHEDIR": str(self.home / ".kube" / "cache"),
            "KUBECONFIG": str(self.kubeconfig),
        }
        env.update(extra or {})
        return env

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(env),
            timeout=timeout,
            check=False,
        )

    def __call__(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> str:
        """Run and return stdout; fail the test with stderr when kubectl fails."""
        r = self.run(*args, stdin=stdin, env=env)
        assert r.returncode == 0, f"kubectl {' '.join(args)} failed ({r.returncode}): {r.stderr}"
        return r.stdout

    def with_kubeconfig(self, kubeconfig: Path) -> Kubectl:
        return Kubectl(self.binary, kubeconfig, self.home, self.version)

    @contextlib.contextmanager
    def proxy(self) -> Iterator[int]:
        """``kubectl proxy`` on a port of this test worker's; yields the port once it serves."""
        port = free_port()
        proc = subprocess.Popen(
            [str(self.binary), "proxy", f"--port={port}"],
            env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            assert "Starting to serve" in proc.stdout.readline()
            yield port
        finally:
            proc.terminate()
            proc.communicate(timeout=30)


def table(output: str) -> list[list[str]]:
    """Split ``kubectl get`` output into rows of cells (columns separated by 2+ spaces)."""
    return [
        re.split(r"\s{2,}", line.strip()) for line in output.strip().splitlines() if line.strip()
    ]


class Raw:
    """Minimal HTTPS client with a client certificate, for requests the typed clients refuse
    to send (invalid bodies, odd content types)."""

    def __init__(
        self,
        srv: ServerHandle | None,
        cert: tuple[Path, Path] | None,
        *,
        ca: Path | None = None,
        port: int = 0,
    ) -> None:
        self.ctx = ssl.create_default_context(cafile=str(srv.pki.ca_cert if srv else ca))
        if cert is not None:
            self.ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        self.port = srv.server.port if srv else port
        self.conn: http.client.HTTPSConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | Any = None,
        *,
        content_type: str | None = "application/json",
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> tuple[int, dict[str, str], bytes]:
        if body is not None and not isinstance(body, bytes | str):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        h = dict(headers or {})
        if content_type is not None and body is not None:
            h["Content-Type"] = content_type
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(
                    "127.0.0.1", self.port, context=self.ctx, timeout=timeout
                )
            try:
                self.conn.request(method, path, body=body, headers=h)
                resp = self.conn.getresponse()
                data = resp.read()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        status, _, data = self.request(method, path, body, **kw)
        return status, json.loads(data) if data else None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def node(
    name: str,
    *,
    ready: bool = True,
    ip: str = "10.0.0.1",
    roles: tuple[str, ...] = (),
    port: int = 10250,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                **{f"node-role.kubernetes.io/{r}": "" for r in roles},
            },
        },
        "spec": {},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True" if ready else "False", "reason": "AgentReady"}
            ],
            "addresses": [
                {"type": "InternalIP", "address": ip},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "nodeInfo": {
                "kubeletVersion": "v0.1.0",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "kernelVersion": "6.1.0",
                "containerRuntimeVersion": "runc://1.1.5",
                "architecture": "amd64",
                "operatingSystem": "linux",
                "bootID": "",
                "machineID": "",
                "kubeProxyVersion": "",
                "systemUUID": "",
            },
        },
    }


def pod(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    node_name: str | None = None,
    containers: int = 1,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {"name": f"c{i}" if containers > 1 else "app", "image": "busybox:1.36"}
            for i in range(containers)
        ]
    }
    if node_name:
        spec["nodeName"] = node_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
    }


def deployment(name: str, *, image: str = "nginx:1.19", replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": "web", "image": image, "ports": [{"containerPort": 80}]}
                    ]
                },
            },
        },
    }


def json_paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path (keys and list indexes) into the JSON-like ``value``, the empty one first."""
    yield prefix
    if isinstance(value, dict):
        for k, child in value.items():
            yield from json_paths(child, (*prefix, k))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from json_paths(child, (*prefix, i))


def replaced_at(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of ``doc`` with the value at ``path`` (from :func:`json_paths`) set to ``value``."""
    if not path:
        return value
    result = copy.deepcopy(doc)
    cur = result
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value
    return result


def serve_requiring_client_certs(
    httpd: HTTPServer, cert: Path, key: Path, ca: Path
) -> threading.Thread:
    """Serve ``httpd`` on a daemon thread over TLS with ``cert``/``key``, requiring a client
    certificate signed by ``ca`` (as an agent's API does); returns the started thread."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    ctx.load_verify_locations(str(ca))
    ctx.verify_mode = ssl.CERT_REQUIRED
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    return t


MEMORY_LIMIT = 768 * 1024 * 1024
"""Data-segment cap of the server process: ten times what it uses, far below a bomb."""


def capped_server_process(directory: Path) -> Iterator[ServerProcess]:
    """Body of a fixture: an API server child process (sqlite under ``directory``) capped at
    MEMORY_LIMIT, stopped afterwards."""
    files = prepare(directory, datastore="sqlite", sqlite_path=directory / "state.db")
    proc = start_process(files, memory_limit=MEMORY_LIMIT)
    yield proc
    proc.process.terminate()
    proc.process.wait(30)
    if proc.process.stdout is not None:
        proc.process.stdout.close()


def raw_client(server: ServerProcess, cert: tuple[Path, Path]) -> Raw:
    """A raw HTTPS client of the child process ``server`` with client certificate ``cert``."""
    port = int(server.files.url.rsplit(":", 1)[1])
    return Raw(None, cert, ca=server.files.pki.ca_cert, port=port)
