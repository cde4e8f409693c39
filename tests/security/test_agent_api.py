"""Issue 13 point 9: the agent's HTTPS API authorizes every request, and the API server talks
only to the agent of the node it means to reach.

Any certificate from the cluster CA used to read any pod's logs from any agent (another node,
the service proxy, a user's client certificate). And the API server dialled whatever address
and port a Node reports (a node writes its own Node) and accepted any cluster certificate
there, so a compromised node could receive requests meant for another node or point the API
server at any server holding a cluster certificate.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import aiohttp
import pytest

from berth.agent import server as agent_server
from berth.agent.authz import AgentAuthorizer, Identity, Request, subject_access_reviewer
from berth.client.http import HttpClient
from berth.machinery.clock import FakeClock
from tests.harness.apiserver import ServerHandle, TestPKI
from tests.integration.apiserver.helpers import Raw, node, pod, serve_requiring_client_certs

pytestmark = pytest.mark.timeout(60)
SECRET_LOG = b"db password is hunter2\n"

# -- the agent's server ------------------------------------------------------------------------


class OnePodManager:
    """What the agent's server reads from the pod manager: one pod with one container."""

    records: dict[str, Any] = {}

    def container_id(self, ns: str, pod: str, container: str, *, previous: bool) -> str | None:
        return "cid-1" if (ns, pod, container, previous) == ("prod", "db", "db", False) else None


class LogRuntime:
    async def logs(self, cid: str, *, tail_lines: int | None, follow: bool) -> AsyncIterator[bytes]:
        assert cid == "cid-1"
        yield SECRET_LOG


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("pki"))


def _client_ctx(pki: TestPKI, user: str, groups: tuple[str, ...] = ()) -> ssl.SSLContext:
    stem = f"client-{user.replace(':', '-')}-{len(groups)}"
    cert, key = pki.issue(stem, common_name=user, organizations=groups)
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


async def _get_logs(
    pki: TestPKI, authorizer: AgentAuthorizer, who: tuple[str, tuple[str, ...]]
) -> tuple[int, bytes]:
    """Serve the agent's real app over mTLS and GET a pod's logs as ``who``."""
    cert, key = pki.issue(
        "agent-n1", common_name="system:node:n1", organizations=["system:nodes"], server=True,
        ips=["127.0.0.1"], dns=["n1"],
    )  # fmt: skip
    app = agent_server.make_app(
        cast(Any, OnePodManager()),
        cast(Any, LogRuntime()),
        authorizer=authorizer,
        default_node="n1",
    )
    tls = agent_server.tls_context(
        cert_file=str(cert), key_file=str(key), client_ca_file=str(pki.ca_cert)
    )
    runner = await agent_server.serve(app, address="127.0.0.1", port=0, ssl_context=tls)
    try:
        port = runner.addresses[0][1]
        ctx = _client_ctx(pki, *who)
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"https://127.0.0.1:{port}/containerLogs/prod/db/db", ssl=ctx, server_hostname="n1"
            ) as resp,
        ):
            return resp.status, await resp.read()
    finally:
        await runner.cleanup()


APISERVER_CLIENT = ("kube-apiserver-kubelet-client", ("system:masters",))


@pytest.mark.parametrize(
    "who",
    [
        ("system:node:n2", ("system:nodes",)),  # another node
        ("system:kube-proxy", ()),  # the service proxy
        ("mallory", ()),  # any identity the CA ever signed
        ("mallory", ("system:authenticated",)),
    ],
    ids=lambda w: w[0],
)
def test_other_cluster_identities_are_forbidden(pki: TestPKI, who: Any) -> None:
    status, body = asyncio.run(_get_logs(pki, AgentAuthorizer(FakeClock()), who))
    assert status == 403
    assert SECRET_LOG not in body
    assert f"user={who[0]}".encode() in body
    assert b"resource=nodes, subresource(s)=[proxy]" in body


def test_the_api_servers_agent_client_reads_logs(pki: TestPKI) -> None:
    status, body = asyncio.run(_get_logs(pki, AgentAuthorizer(FakeClock()), APISERVER_CLIENT))
    assert (status, body) == (200, SECRET_LOG)


def test_other_identities_are_asked_about_with_a_subject_access_review(pki: TestPKI) -> None:
    asked: list[tuple[Identity, Request]] = []

    async def reviewer(who: Identity, request: Request) -> bool:
        asked.append((who, request))
        return who.user == "ops"

    authorizer = AgentAuthorizer(FakeClock(), reviewer)
    assert asyncio.run(_get_logs(pki, authorizer, ("ops", ()))) == (200, SECRET_LOG)
    assert asyncio.run(_get_logs(pki, authorizer, ("system:node:n2", ("system:nodes",))))[0] == 403
    assert asked == [
        (Identity("ops", ()), Request("get", "proxy", "n1")),
        (Identity("system:node:n2", ("system:nodes",)), Request("get", "proxy", "n1")),
    ]


# -- the SubjectAccessReview against a real API server ------------------------------------------


def test_subject_access_review_follows_rbac(server: ServerHandle) -> None:
    admin = Raw(server, server.client_cert("admin", ["system:masters"]))
    role = {
        "metadata": {"name": "node-proxy"},
        "rules": [{"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]}],
    }
    binding = {
        "metadata": {"name": "ops-node-proxy"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "node-proxy",
        },
        "subjects": [{"kind": "User", "name": "ops"}],
    }
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    for path, obj in ((f"{rbac}/clusterroles", role), (f"{rbac}/clusterrolebindings", binding)):
        status, _, data = admin.request("POST", path, obj)
        assert status == 201, data
    admin.close()

    async def decide() -> list[bool]:
        client = HttpClient.from_kubeconfig(server.kubeconfig("admin", groups=["system:masters"]))
        try:
            review = subject_access_reviewer(client)
            asked = Request("get", "proxy", "n1")
            return [
                await review(Identity("ops", ()), asked),
                await review(Identity("system:node:n2", ("system:nodes",)), asked),
                await review(Identity("ops", ()), Request("create", "proxy", "n1")),
            ]
        finally:
            await client.close()

    assert asyncio.run(decide()) == [True, False, False]


# -- the API server dialling an agent --------------------------------------------------------


class StandInAgent(ThreadingHTTPServer):
    requests: list[str]


class Handler(BaseHTTPRequestHandler):
    server: StandInAgent

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"logs from the agent that answered\n")


@pytest.fixture(scope="module")
def agent_of(server: ServerHandle) -> Iterator[Any]:
    """Start a stand-in agent whose serving certificate names ``cert_node``."""
    started: list[tuple[StandInAgent, threading.Thread]] = []

    def start(cert_node: str) -> StandInAgent:
        cert, key = server.pki.issue(
            f"serving-{cert_node}", common_name=f"system:node:{cert_node}",
            organizations=["system:nodes"], server=True, ips=["127.0.0.1"], dns=[cert_node],
        )  # fmt: skip
        httpd = StandInAgent(("127.0.0.1", 0), Handler)
        httpd.requests = []
        t = serve_requiring_client_certs(httpd, cert, key, server.pki.ca_cert)
        started.append((httpd, t))
        return httpd

    yield start
    for httpd, t in started:
        httpd.shutdown()
        httpd.server_close()
        t.join(5)


def _pod_logs(server: ServerHandle, node_name: str, port: int) -> tuple[int, dict[str, Any]]:
    admin = Raw(server, server.client_cert("admin", ["system:masters"]))
    try:
        status, _, data = admin.request(
            "POST", "/api/v1/nodes", node(node_name, ip="127.0.0.1", port=port)
        )
        assert status == 201, data
        status, _, data = admin.request(
            "POST", "/api/v1/namespaces/default/pods", pod(f"on-{node_name}", node_name=node_name)
        )
        assert status == 201, data
        status, _, data = admin.request(
            "GET", f"/api/v1/namespaces/default/pods/on-{node_name}/log"
        )
        return status, (json.loads(data) if status != 200 else {"text": data.decode()})
    finally:
        admin.close()


def test_the_api_server_reaches_the_agent_of_the_pods_node(
    server: ServerHandle, agent_of: Any
) -> None:
    agent = agent_of("good-node")
    status, body = _pod_logs(server, "good-node", agent.server_address[1])
    assert status == 200, body
    assert agent.requests == ["/containerLogs/default/on-good-node/app"]


def test_the_api_server_refuses_an_agent_whose_certificate_names_another_node(
    server: ServerHandle, agent_of: Any
) -> None:
    """The victim's Node points at an agent holding the attacker node's certificate (the
    attacker took over the address, or the victim's Node status was rewritten)."""
    impostor = agent_of("attacker")
    status, body = _pod_logs(server, "victim", impostor.server_address[1])
    assert status == 502, body
    assert "does not present the serving certificate of node victim" in body["message"]
    assert impostor.requests == [], "not one request reaches the impostor"


def test_a_node_cannot_point_the_api_server_at_another_cluster_server(server: ServerHandle) -> None:
    """A Node whose agent port is the API server's own: a server with a cluster certificate
    that is not the node's (server-side request forgery with the API server's credentials)."""
    status, body = _pod_logs(server, "ssrf", server.server.port)
    assert status == 502, body
    assert "does not present the serving certificate of node ssrf" in body["message"]
