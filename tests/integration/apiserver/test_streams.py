"""``pods/exec``, ``pods/attach``-style streams and ``pods/portforward`` end to end: real
kubectl 1.32 (WebSocket, and SPDY when told to) and 1.20 (SPDY), the Python client's
``stream``, through the API server to the real agent app over mTLS. The agent here runs a
stand-in runtime that executes commands on this machine and forwards to this machine's
ports (the runc runtime, which joins the container, is exercised by the lab)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import json
import os
import pty
import select
import socket
import socketserver
import ssl
import struct
import subprocess
import tempfile
import termios
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import aiohttp
import pytest
from aiohttp import web
from kubernetes import client as k8s
from kubernetes.stream import stream

from berth.agent.authz import AgentAuthorizer
from berth.agent.pods import PodManager, PodRecord
from berth.agent.runtime import ContainerStatus, Runtime, Usage, UsageSample
from berth.agent.server import make_app, tls_context
from berth.client.keys import ObjectKey
from berth.machinery.clock import RealClock
from berth.runtime.shim import StdioHolder
from tests.harness.apiserver import ServerHandle
from tests.harness.port_forward import port_forward

from .conftest import make_kubectl
from .helpers import Kubectl, Raw, core_api, grant, node, pod

pytestmark = pytest.mark.timeout(120)
STREAM_SECONDS = 60
"""The most a stream's end is waited for (ends far sooner; generous for a loaded machine)."""
AGENT_CLOSE_SECONDS = 30
"""The most the agent's stop waits for its open connections to close (takes milliseconds)."""
NS = "streams"
NODE = "stream-node"


class HostRuntime:
    """Runs "container" commands on this machine; forwards to this machine's ports."""

    name = "host"
    assigns_pod_ips = False

    def exec_argv(self, container_id: str, command: Sequence[str], *, tty: bool) -> list[str]:
        return list(command)

    async def connect_port(
        self, sandbox_id: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", port)

    async def logs(
        self, container_id: str, *, tail_lines: int | None = None, follow: bool = False
    ) -> AsyncIterator[bytes]:
        """What the container writes from now on (``tail_lines=0``), until it ends."""
        assert (tail_lines, follow) == (0, True)
        yield b"written after the attach\n"

    async def connect_attach(
        self, container_id: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Each attach starts a fresh "container" whose stdio the shim's own holder keeps."""
        if container_id not in ("cid-attach", "cid-tty"):
            return None
        sock = _attached_container(tty=container_id == "cid-tty")
        return await asyncio.open_unix_connection(str(sock))

    async def container_status(self, container_id: str) -> ContainerStatus:
        now = datetime.now(UTC)
        return ContainerStatus(container_id, "sb", "app", "busybox", "running", now, now)

    async def usage(self, container_ids: Sequence[str]) -> UsageSample:
        """The stats endpoint (scraped by the metrics pipeline): this stand-in cannot tell."""
        return UsageSample(datetime.now(UTC), Usage(None, None))


# A "container" reading its stdin: answers each line, reports its terminal size on "size"
# and exits on "bye".
ATTACHED = (
    'while read l; do [ "$l" = size ] && l="$(stty size)"; echo "got $l";'
    ' [ "$l" = bye ] && { echo done >&2; exit 0; }; done'
)


def _attached_container(*, tty: bool) -> Path:
    sock = Path(tempfile.mkdtemp(prefix="attach-")) / "a.sock"
    log_fd = os.open(os.devnull, os.O_WRONLY)
    if tty:
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            ["sh", "-c", ATTACHED], stdin=slave, stdout=slave, stderr=slave, start_new_session=True
        )
        os.close(slave)
        holder = StdioHolder(master=master, outputs=[(1, master)], log_fd=log_fd)
    else:
        proc = subprocess.Popen(
            ["sh", "-c", ATTACHED],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        holder = StdioHolder(
            master=None,
            outputs=[(1, proc.stdout.fileno()), (2, proc.stderr.fileno())],
            log_fd=log_fd,
            stdin=proc.stdin.fileno(),
        )
    holder.serve(str(sock), stdin_once=False)

    def reap() -> None:  # what the shim's main thread does once the process ended
        proc.wait()
        holder.finish(2.0)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        for fd in (log_fd, *([holder.master] if holder.master is not None else [])):
            with contextlib.suppress(OSError):
                os.close(fd)

    threading.Thread(target=reap, daemon=True).start()
    return sock


class Records:
    def __init__(self) -> None:
        key = ObjectKey(f"{NS}/runner")
        self.records = {key: PodRecord(uid="u-runner", key=key, node=NODE, sandbox="sb")}

    def container_id(
        self, ns: str, name: str, container: str, *, previous: bool = False
    ) -> str | None:
        return {
            (NS, "runner", "app"): "cid-app",
            (NS, "attachee", "app"): "cid-attach",
            (NS, "ttyee", "app"): "cid-tty",
        }.get((ns, name, container))


class AgentThread:
    def __init__(self, server: ServerHandle) -> None:
        cert, key = server.pki.issue(
            "stream-agent",
            common_name=f"system:node:{NODE}",
            server=True,
            ips=["127.0.0.1"],
            dns=[NODE],
        )
        ctx = tls_context(
            cert_file=str(cert), key_file=str(key), client_ca_file=str(server.pki.ca_cert)
        )
        app = make_app(
            cast(PodManager, Records()),
            cast(Runtime, HostRuntime()),
            authorizer=AgentAuthorizer(RealClock()),
            default_node=NODE,
        )
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=ctx)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        closing = asyncio.run_coroutine_threadsafe(self._close(), self.loop)
        closing.result(AGENT_CLOSE_SECONDS + 10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _close(self) -> None:
        """Stop serving, then wait until the connections still open are really closed (the
        API server's metrics scraper keeps one): closing a TLS connection waits for the peer's
        close_notify, and a loop stopped before that leaves the socket to the garbage
        collector, whose ResourceWarning then fails whichever test runs at that moment."""
        server = self.runner.server
        handlers = server.connections if server is not None else []
        socks = [h.transport.get_extra_info("socket") for h in handlers if h.transport]
        await self.runner.cleanup()
        deadline = self.loop.time() + AGENT_CLOSE_SECONDS
        while self.loop.time() < deadline:
            if all(s.fileno() == -1 for s in socks):  # -1: the socket itself is closed
                break
            await asyncio.sleep(0.05)


class Echo(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class EchoHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        prefix = self.server.prefix  # type: ignore[attr-defined]
        while line := self.rfile.readline():
            self.wfile.write(prefix + line)


@pytest.fixture(scope="module")
def agent(server: ServerHandle, api: k8s.ApiClient) -> Iterator[AgentThread]:
    a = AgentThread(server)
    core = core_api(api)
    core.create_namespace({"metadata": {"name": NS}})
    core.create_node(node(NODE, ip="127.0.0.1", port=a.port))
    core.create_namespaced_pod(NS, pod("runner", node_name=NODE))
    # kubectl port-forward and attach insist on a running pod
    core.patch_namespaced_pod_status("runner", NS, {"status": {"phase": "Running"}})
    for name, tty in (("attachee", False), ("ttyee", True)):
        spec = pod(name, node_name=NODE)
        spec["spec"]["containers"][0].update({"stdin": True, "tty": tty})
        core.create_namespaced_pod(NS, spec)
        core.patch_namespaced_pod_status(name, NS, {"status": {"phase": "Running"}})
    core.create_namespaced_pod(NS, pod("elsewhere"))
    yield a
    a.stop()


@pytest.fixture(scope="module")
def echo_ports() -> Iterator[list[int]]:
    servers = []
    for prefix in (b"one:", b"two:"):
        srv = Echo(("127.0.0.1", 0), EchoHandler)
        srv.prefix = prefix  # type: ignore[attr-defined]
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    yield [s.server_address[1] for s in servers]
    for s in servers:
        s.shutdown()
        s.server_close()


KubectlWithEnv = tuple[Kubectl, dict[str, str]]
"""A kubectl and the environment that picks its protocol."""


def _protocols(switch: str, websocket: str) -> pytest.MarkDecorator:
    """Run a test with every protocol of a kubectl command: 1.32's WebSocket one, SPDY (1.32
    told so by the environment variable ``switch``, and 1.20, which has nothing else)."""
    return pytest.mark.parametrize(
        "kubectl_client",
        [
            pytest.param(("1.32", {}), id=f"1.32-{websocket}"),
            pytest.param(("1.32", {switch: "false"}), id="1.32-spdy"),
            pytest.param(("1.20", {}), id="1.20-spdy"),
        ],
        indirect=True,
    )


EVERY_STREAM_PROTOCOL = _protocols("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "websocket")
"""exec, attach and cp: WebSocket v5 or SPDY."""
EVERY_FORWARD_PROTOCOL = _protocols("KUBECTL_PORT_FORWARD_WEBSOCKETS", "websocket-tunnel")
"""port-forward: the WebSocket tunnel or SPDY."""


@pytest.fixture
def kubectl_client(
    request: pytest.FixtureRequest,
    kubectl_binaries: dict[str, Path],
    admin_kubeconfig: Path,
    tmp_path: Path,
) -> KubectlWithEnv:
    version, env = request.param
    return make_kubectl(kubectl_binaries, version, admin_kubeconfig, tmp_path), env


@EVERY_STREAM_PROTOCOL
def test_kubectl_exec(
    kubectl_client: KubectlWithEnv,
    agent: AgentThread,
) -> None:
    kubectl, env = kubectl_client
    out = kubectl.run("exec", "runner", "-n", NS, "--", "echo", "hello from exec", env=env)
    assert (out.returncode, out.stdout) == (0, "hello from exec\n"), out.stderr
    # stdin, to its end (v5's close of the stdin channel over WebSocket, FIN over SPDY)
    out = kubectl.run("exec", "-i", "runner", "-n", NS, "--", "cat", stdin="abc\ndef\n", env=env)
    assert (out.returncode, out.stdout) == (0, "abc\ndef\n"), out.stderr
    out = kubectl.run("exec", "runner", "-n", NS, "--", "false", env=env)
    assert out.returncode == 1
    out = kubectl.run(
        "exec", "runner", "-n", NS, "--", "sh", "-c", "echo oops >&2; exit 3", env=env
    )
    assert out.returncode == 3
    assert "oops" in out.stderr
    assert "command terminated with exit code 3" in out.stderr
    out = kubectl.run("exec", "elsewhere", "-n", NS, "--", "true", env=env)
    assert out.returncode != 0
    assert "does not have a host assigned" in out.stderr


@EVERY_STREAM_PROTOCOL
def test_kubectl_attach_with_stdin(
    kubectl_client: KubectlWithEnv,
    agent: AgentThread,
) -> None:
    kubectl, env = kubectl_client
    out = kubectl.run("attach", "-i", "attachee", "-n", NS, stdin="hello\nbye\n", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "got hello\ngot bye\n"
    assert "done" in out.stderr  # the container's stderr, on its own stream


@EVERY_STREAM_PROTOCOL
def test_kubectl_attach_to_a_container_without_kept_stdio_follows_its_output(
    kubectl_client: KubectlWithEnv,
    agent: AgentThread,
) -> None:
    kubectl, env = kubectl_client
    out = kubectl.run("attach", "runner", "-n", NS, env=env)
    assert (out.returncode, out.stdout) == (0, "written after the attach\n"), out.stderr


@EVERY_STREAM_PROTOCOL
def test_kubectl_attach_it_on_a_terminal(
    kubectl_client: KubectlWithEnv,
    agent: AgentThread,
) -> None:
    """``kubectl attach -it`` from a real terminal: raw mode, the terminal's size carried to
    the container's, the session ending with the container."""
    kubectl, env = kubectl_client
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 37, 101, 0, 0))
    proc = subprocess.Popen(
        [str(kubectl.binary), "attach", "-it", "ttyee", "-n", NS],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=kubectl.env({**env, "TERM": "xterm"}),
        start_new_session=True,
    )
    seen = b""
    try:
        deadline = time.monotonic() + STREAM_SECONDS
        last = 0.0
        while time.monotonic() < deadline and b"got bye" not in seen:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                with contextlib.suppress(OSError):
                    seen += os.read(master, 4096)
            # kubectl prints its hint, then makes the terminal raw (dropping what was typed
            # before): ask until the container answers
            if b"pressing enter" in seen and time.monotonic() - last > 1.0:
                os.write(master, b"bye\r" if b"got 37 101" in seen else b"size\r")
                last = time.monotonic()
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"kubectl attach did not end: {seen!r}")
        assert code == 0, seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)
    assert b"got 37 101" in seen, seen
    assert b"got bye" in seen


@EVERY_STREAM_PROTOCOL
def test_kubectl_cp_both_ways(
    kubectl_client: KubectlWithEnv,
    agent: AgentThread,
    tmp_path: Path,
) -> None:
    kubectl, env = kubectl_client
    payload = os.urandom(300_000)
    local = tmp_path / "local.bin"
    local.write_bytes(payload)
    inside = tmp_path / "inside"  # "the container's" file system is this machine's here
    inside.mkdir()
    out = kubectl.run("cp", str(local), f"{NS}/runner:{inside}/copied.bin", env=env)
    assert out.returncode == 0, out.stderr
    assert (inside / "copied.bin").read_bytes() == payload
    back = tmp_path / "back.bin"
    out = kubectl.run("cp", f"{NS}/runner:{inside}/copied.bin", str(back), env=env)
    assert out.returncode == 0, out.stderr
    assert back.read_bytes() == payload


def _port_forward_argv(kubectl: Kubectl, *specs: str) -> list[str]:
    pf = ["port-forward", "--address", "127.0.0.1", "-n", NS, "pod/runner"]
    return [str(kubectl.binary), *pf, *specs]


@EVERY_FORWARD_PROTOCOL
def test_kubectl_port_forward_two_ports(
    kubectl_client: KubectlWithEnv,
    agent: AgentThread,
    echo_ports: list[int],
) -> None:
    kubectl, env = kubectl_client
    # kubectl picks the local ports (":REMOTE"): a port picked here could be bound by another
    # process before kubectl listens on it, and kubectl then serves the other port only
    argv = _port_forward_argv(kubectl, *(f":{rp}" for rp in echo_ports))
    with port_forward(argv, kubectl.env(env), ports=len(echo_ports)) as fwd:
        locals_ = [fwd.local[rp] for rp in echo_ports]
        # several connections at once, on both ports, each with its own bytes
        with contextlib.ExitStack() as stack:
            conns = [
                stack.enter_context(socket.create_connection(("127.0.0.1", lp), timeout=30))
                for lp in locals_ * 2
            ]
            readers = [stack.enter_context(c.makefile("rb")) for c in conns]
            for i, c in enumerate(conns):
                c.sendall(f"hello {i}\n".encode())
            for i, r in enumerate(readers):
                prefix = "one:" if i % 2 == 0 else "two:"
                assert r.readline() == f"{prefix}hello {i}\n".encode()
            big = b"x" * 200_000 + b"\n"
            conns[0].sendall(big)
            assert readers[0].readline() == b"one:" + big
        # closed connections end cleanly; the forward goes on serving new ones
        with (
            socket.create_connection(("127.0.0.1", locals_[0]), timeout=30) as c,
            c.makefile("rb") as r,
        ):
            c.sendall(b"again\n")
            assert r.readline() == b"one:again\n"
        assert fwd.proc.poll() is None


def test_kubectl_port_forward_that_cannot_listen_fails_with_its_stderr(
    agent: AgentThread,
    echo_ports: list[int],
    kubectl_binaries: dict[str, Path],
    admin_kubeconfig: Path,
    tmp_path: Path,
) -> None:
    """The CI hang, forced: a local port asked for is taken when kubectl starts. kubectl
    reports it on stderr and serves the other port forever; the test ends at once, with
    kubectl's own words, instead of waiting for a second "Forwarding from" line."""
    kubectl = make_kubectl(kubectl_binaries, "1.32", admin_kubeconfig, tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = _port_forward_argv(kubectl, f"{port}:{echo_ports[0]}", f":{echo_ports[1]}")
        with (
            pytest.raises(pytest.fail.Exception, match="could not listen") as failed,
            port_forward(argv, kubectl.env(), ports=2),
        ):
            pass
    assert f"Unable to listen on port {port}" in str(failed.value)
    assert "address already in use" in str(failed.value)


# The Python client (websocket-client underneath) drops one TLS socket per stream without
# closing it; collect it inside these tests so its warning does not land on a later one.
PYTHON_CLIENT_LEAK = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture
def collect_leaks() -> Iterator[None]:
    yield
    gc.collect()


@PYTHON_CLIENT_LEAK
@pytest.mark.usefixtures("collect_leaks")
def test_python_client_stream_exec(agent: AgentThread, api: k8s.ApiClient) -> None:
    core = core_api(api)
    # (_preload_content=False throughout: the preloading form leaves its socket open)
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        "runner",
        NS,
        command=["echo", "from python"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    try:
        resp.run_forever(timeout=STREAM_SECONDS)
        assert resp.read_stdout() == "from python\n"
        assert resp.returncode == 0
    finally:
        resp.close()
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        "runner",
        NS,
        command=["sh", "-c", "read line; echo got $line; exit 4"],
        stderr=True,
        stdin=True,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    try:
        resp.write_stdin("ping\n")
        resp.run_forever(timeout=STREAM_SECONDS)
        assert "got ping" in resp.read_stdout()
        assert resp.returncode == 4
    finally:
        resp.close()


@PYTHON_CLIENT_LEAK
@pytest.mark.usefixtures("collect_leaks")
def test_python_client_tty_resize(agent: AgentThread, api: k8s.ApiClient) -> None:
    core = core_api(api)
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        "runner",
        NS,
        command=["sh", "-c", "read go; stty size"],
        stderr=True,
        stdin=True,
        stdout=True,
        tty=True,
        _preload_content=False,
    )
    try:
        resp.write_channel(4, json.dumps({"Width": 123, "Height": 45}))
        time.sleep(0.3)
        resp.write_stdin("go\n")
        resp.run_forever(timeout=STREAM_SECONDS)
        assert "45 123" in resp.read_stdout()
        assert resp.returncode == 0
    finally:
        resp.close()


WS_UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Protocol": "v5.channel.k8s.io",
}
EXEC = f"/api/v1/namespaces/{NS}/pods/runner/exec"


@pytest.mark.parametrize(
    ("query", "headers", "code", "message"),
    [
        ("command=true&stdout=1", {}, 400, "Upgrade request required"),
        ("command=true&stdout=1&container=nope", WS_UPGRADE, 400, "container nope is not valid"),
        ("stdout=1", WS_UPGRADE, 400, "you must specify at least one command"),
        ("command=true", WS_UPGRADE, 400, "you must specify at least 1 of stdin, stdout, stderr"),
        ("command=true&stdout=maybe", WS_UPGRADE, 400, "invalid boolean value"),
        (
            "command=true&stdout=1",
            {**WS_UPGRADE, "Sec-WebSocket-Protocol": "base64.channel.k8s.io"},
            400,
            "none of the WebSocket subprotocols",
        ),
    ],
)
def test_exec_errors_are_statuses(
    agent: AgentThread, raw: Raw, query: str, headers: dict[str, str], code: int, message: str
) -> None:
    status, body = raw.json("GET", f"{EXEC}?{query}", headers=headers)
    assert status == code
    assert body["kind"] == "Status"
    assert message in body["message"]


def test_exec_is_authorized_per_verb(
    agent: AgentThread,
    server: ServerHandle,
    api: k8s.ApiClient,
    kubectl_binaries: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """kube-apiserver 1.32 authorizes the WebSocket upgrade (a GET) as ``get`` and the SPDY
    one (a POST) as ``create``: with ``create`` alone kubectl 1.32 falls back to SPDY."""
    rules = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]},
    ]
    grant(api, "execer", "exec-create", rules, namespace=NS)
    kubectl = make_kubectl(
        kubectl_binaries, "1.32", server.kubeconfig("execer", groups=[]), tmp_path
    )
    out = kubectl.run("exec", "runner", "-n", NS, "--", "echo", "fell back")
    assert (out.returncode, out.stdout) == (0, "fell back\n"), out.stderr
    audited = [
        json.loads(line.removeprefix("AUDIT "))
        for line in capsys.readouterr().err.splitlines()
        if line.startswith("AUDIT ") and '"subresource":"exec"' in line
    ]
    assert {
        "verb": "create",
        "user": "execer",
        "protocol": "SPDY/3.1",
        "command": ["echo", "fell back"],
        "outcome": "Success",
    }.items() <= audited[-1].items()
    nobody = make_kubectl(
        kubectl_binaries, "1.32", server.kubeconfig("nobody", groups=[]), tmp_path
    )
    out = nobody.run("exec", "runner", "-n", NS, "--", "true")
    assert out.returncode != 0
    assert "Forbidden" in out.stderr or "forbidden" in out.stderr
    # pods/exec does not grant attaching: that is pods/attach's own
    out = kubectl.run("attach", "-i", "attachee", "-n", NS, stdin="hello\n")
    assert out.returncode != 0
    assert 'resource "pods/attach"' in out.stderr, out.stderr


@pytest.mark.parametrize("protocol", ["v4.channel.k8s.io", "v5.channel.k8s.io"])
def test_websocket_channel_protocols(
    agent: AgentThread, server: ServerHandle, protocol: str
) -> None:
    """The channel layout of each protocol as a client sees it: output channels, the final
    Status on channel 3 (with the exit code as an ExitCode cause), v5's close of stdin."""
    cert, key = server.client_cert("admin", ["system:masters"])
    ctx = ssl.create_default_context(cafile=str(server.pki.ca_cert))
    ctx.load_cert_chain(str(cert), str(key))
    query = "command=sh&command=-c&command=cat;+echo+done+>%262;+exit+2&stdin=1&stdout=1&stderr=1"

    async def session() -> tuple[str, dict[int, bytes]]:
        got: dict[int, bytes] = {}
        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect(f"{server.url}{EXEC}?{query}", protocols=(protocol,), ssl=ctx) as ws,
        ):
            await ws.send_bytes(b"\x00typed")
            if protocol.startswith("v5"):
                await ws.send_bytes(b"\xff\x00")  # stdin ends: cat finishes
            async for msg in ws:
                got[msg.data[0]] = got.get(msg.data[0], b"") + msg.data[1:]
                if protocol.startswith("v4") and msg.data[0] == 1:
                    break  # v4 cannot end stdin: enough seen
            chosen = str(ws.protocol)
        await asyncio.sleep(0.2)  # aiohttp finishes closing TLS transports in the background
        return chosen, got

    chosen, got = asyncio.run(asyncio.wait_for(session(), STREAM_SECONDS))
    assert chosen == protocol
    assert got[1] == b"typed"
    if protocol.startswith("v5"):
        assert got[2] == b"done\n"
        status = json.loads(got[3])
        assert status["status"] == "Failure"
        assert status["reason"] == "NonZeroExitCode"
        assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "2"}]
        assert "command terminated with non-zero exit code" in status["message"]


@PYTHON_CLIENT_LEAK
@pytest.mark.usefixtures("collect_leaks")
def test_python_client_attach_tty_resize(agent: AgentThread, api: k8s.ApiClient) -> None:
    core = core_api(api)
    resp = stream(
        core.connect_get_namespaced_pod_attach,
        "ttyee",
        NS,
        stdin=True,
        stdout=True,
        tty=True,
        _preload_content=False,
    )
    try:
        resp.write_channel(4, json.dumps({"Width": 80, "Height": 24}))
        time.sleep(0.3)
        resp.write_stdin("size\nbye\n")
        resp.run_forever(timeout=STREAM_SECONDS)
        assert "got 24 80" in resp.read_stdout()
    finally:
        resp.close()


def test_attach_errors_are_statuses(agent: AgentThread, raw: Raw) -> None:
    status, body = raw.json(
        "GET",
        f"/api/v1/namespaces/{NS}/pods/attachee/attach?stdout=1&container=nope",
        headers=WS_UPGRADE,
    )
    assert (status, body["kind"]) == (400, "Status")
    assert "container nope is not valid" in body["message"]


@EVERY_FORWARD_PROTOCOL
def test_kubectl_port_forward_moves_megabytes_intact(
    kubectl_client: KubectlWithEnv,
    agent: AgentThread,
    echo_ports: list[int],
) -> None:
    """Both ways, several MB in one go: the relays join and split what they pass on
    (SPDY frames of up to 256 KiB to the client, reads joined towards the agent), and every
    byte must come out once and in order."""
    kubectl, env = kubectl_client
    argv = _port_forward_argv(kubectl, f":{echo_ports[0]}")
    with port_forward(argv, kubectl.env(env), ports=1) as fwd:
        local = fwd.local[echo_ports[0]]
        payload = os.urandom(6 << 20).replace(b"\n", b"-") + b"\n"
        expected = b"one:" + payload
        with socket.create_connection(("127.0.0.1", local), timeout=120) as conn:
            sender = threading.Thread(target=conn.sendall, args=(payload,), daemon=True)
            sender.start()
            got = bytearray()
            while len(got) < len(expected):
                chunk = conn.recv(1 << 20)
                assert chunk, f"the stream ended after {len(got)} of {len(expected)} bytes"
                got += chunk
            sender.join(STREAM_SECONDS)
        assert bytes(got) == expected
        # the forward goes on serving (and the big one has wound down behind it)
        with socket.create_connection(("127.0.0.1", local), timeout=60) as conn:
            conn.sendall(b"after\n")
            with conn.makefile("rb") as reader:
                assert reader.readline() == b"one:after\n"
        assert fwd.proc.poll() is None
