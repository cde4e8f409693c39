"""Streams benchmark: port-forward throughput (MB/s) and exec round-trip latency through the
API server and the node agent, beside the same transfer straight to the "pod", in one run.

Everything runs on this machine: the API server (``python -m berth.apiserver``, memory store)
and the real agent app (mTLS, its own process) whose runtime runs exec'd commands here and
forwards ports to 127.0.0.1 (the runc runtime adds only a connection made in the pod's network
namespace); the "pod" is a small TCP server (its own process) that sends N bytes on ``SEND N``
and echoes after ``ECHO``. Paths measured:

* direct: a TCP connection to the pod server (what a client on the pod network gets);
* ``kubectl port-forward`` 1.32 over its WebSocket tunnel, and over SPDY
  (``KUBECTL_PORT_FORWARD_WEBSOCKETS=false``): client -> kubectl -> API server -> agent -> pod;
* exec: a ``cat`` started through ``pods/exec`` (WebSocket ``v5.channel.k8s.io``), one byte
  written and its echo awaited, many times; against the same one-byte echo over TCP.

Goal (issue 17): port-forward >= 50 MB/s and within 3x of direct.

Usage: ``python bench/streams.py [--mb 64] [--rounds 3] [--echoes 300]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import cast

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from berth.agent.authz import AgentAuthorizer  # noqa: E402
from berth.agent.pods import PodManager, PodRecord  # noqa: E402
from berth.agent.runtime import ContainerStatus, Runtime, Usage, UsageSample  # noqa: E402
from berth.agent.server import make_app, tls_context  # noqa: E402
from berth.client.keys import ObjectKey  # noqa: E402
from berth.machinery.clock import RealClock  # noqa: E402
from tests.harness.apiserver import ServerFiles, prepare, start_process  # noqa: E402

KUBECTL = "/usr/bin/kubectl"
NS, POD, NODE = "default", "bench", "bench-node"
GOAL_MBPS = 50.0
GOAL_RATIO = 3.0

POD_SERVER = r"""
import asyncio, sys
async def handle(reader, writer):
    line = await reader.readline()
    if line.startswith(b"SEND "):
        left = int(line.split()[1])
        block = b"x" * (256 * 1024)
        while left > 0:
            writer.write(block[: min(left, len(block))])
            left -= len(block)
            await writer.drain()
    elif line.startswith(b"ECHO"):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()
asyncio.run(main())
"""


class HostRuntime:
    """Runs exec'd commands on this machine; forwards to this machine's ports."""

    name = "host"
    assigns_pod_ips = False

    def exec_argv(self, container_id: str, command: Sequence[str], *, tty: bool) -> list[str]:
        return list(command)

    async def connect_port(
        self, sandbox_id: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)

    async def container_status(self, container_id: str) -> ContainerStatus:
        now = datetime.now(UTC)
        return ContainerStatus(container_id, "sb", "app", "bench", "running", now, now)

    async def usage(self, container_ids: Sequence[str]) -> UsageSample:
        """The stats endpoint (scraped by the metrics pipeline): this stand-in cannot tell."""
        return UsageSample(datetime.now(UTC), Usage(None, None))


class Records:
    def __init__(self) -> None:
        key = ObjectKey(f"{NS}/{POD}")
        self.records = {key: PodRecord(uid="u-bench", key=key, node=NODE, sandbox="sb")}

    def container_id(
        self, ns: str, name: str, container: str, *, previous: bool = False
    ) -> str | None:
        return "cid" if (ns, name, container) == (NS, POD, "app") else None


def run_agent(cert: str, key: str, ca: str, report: Connection) -> None:
    """The agent's HTTPS app in this (child) process; sends its port back."""
    ctx = tls_context(cert_file=cert, key_file=key, client_ca_file=ca)
    app = make_app(
        cast(PodManager, Records()),
        cast(Runtime, HostRuntime()),
        authorizer=AgentAuthorizer(RealClock()),
        default_node=NODE,
    )

    async def serve() -> None:
        from aiohttp import web  # noqa: PLC0415 - the child's own loop

        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        report.send(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(serve())


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), *args],
        input=stdin, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr}")
    return out.stdout


def setup_cluster(kubeconfig: Path, agent_port: int) -> None:
    import json  # noqa: PLC0415

    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": agent_port}},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD, "namespace": NS},
        "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "bench:1"}]},
    }
    kubectl(kubeconfig, "create", "-f", "-", stdin=json.dumps(node))
    kubectl(kubeconfig, "create", "-f", "-", stdin=json.dumps(pod))
    patch = json.dumps({"status": {"phase": "Running"}})
    kubectl(kubeconfig, "patch", "pod", POD, "--subresource=status", "-p", patch)


def receive(port: int, size: int) -> float:
    """MB/s of receiving ``size`` bytes sent by the pod server through ``port``."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        started = time.perf_counter()
        conn.sendall(f"SEND {size}\n".encode())
        got = 0
        buf = bytearray(1 << 20)
        while got < size:
            n = conn.recv_into(buf)
            if not n:
                raise RuntimeError(f"the stream ended after {got} of {size} bytes")
            got += n
        return size / (time.perf_counter() - started) / 1e6


def tcp_echo_rtts(port: int, count: int) -> list[float]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sendall(b"ECHO\n")
        out = []
        for _ in range(count):
            started = time.perf_counter()
            conn.sendall(b"x")
            if conn.recv(1) != b"x":
                raise RuntimeError("echo broke")
            out.append(time.perf_counter() - started)
        return out


async def exec_echo_rtts(files: ServerFiles, count: int) -> list[float]:
    ctx = ssl.create_default_context(cafile=str(files.pki.ca_cert))
    cert, key = files.client_cert("admin", ["system:masters"])
    ctx.load_cert_chain(str(cert), str(key))
    url = (
        f"{files.url}/api/v1/namespaces/{NS}/pods/{POD}/exec"
        "?command=cat&stdin=true&stdout=true&container=app"
    )
    out: list[float] = []
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url, protocols=("v5.channel.k8s.io",), ssl=ctx)
        try:
            for _ in range(count):
                started = time.perf_counter()
                await ws.send_bytes(b"\x00x")
                while True:
                    msg = await ws.receive(timeout=30)
                    if msg.type != aiohttp.WSMsgType.BINARY:
                        raise RuntimeError(f"exec ended: {msg.type}")
                    if msg.data[:1] == b"\x01":
                        break
                out.append(time.perf_counter() - started)
        finally:
            await ws.close()
    return out


@contextlib.contextmanager
def port_forward(kubeconfig: Path, pod_port: int, *, websocket: bool) -> Iterator[tuple[int, int]]:
    """(local port, kubectl's pid) of a running ``kubectl port-forward``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
    env = {**os.environ, "KUBECTL_PORT_FORWARD_WEBSOCKETS": "true" if websocket else "false"}
    proc = subprocess.Popen(
        [KUBECTL, "--kubeconfig", str(kubeconfig), "port-forward", "--address", "127.0.0.1",
         f"pod/{POD}", f"{local}:{pod_port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "Forwarding from" not in line:
            raise RuntimeError(f"kubectl port-forward did not start: {line}")
        yield local, proc.pid
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` used so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds the given processes spend during a ``with`` block: on a loaded machine
    the cost per byte is steadier than the throughput."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.used: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        self.used = {n: cpu_seconds(p) - self._start[n] for n, p in self.pids.items()}


def cpu_per_mb(rounds: list[dict[str, float]], mb: int) -> dict[str, float]:
    """Median CPU milliseconds per MB moved, per process, over the rounds."""
    return {proc: statistics.median(r[proc] for r in rounds) * 1000 / mb for proc in rounds[0]}


def _listed(per_mb: dict[str, float]) -> str:
    return ", ".join(f"{proc} {ms:.2f}" for proc, ms in per_mb.items())


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=64, help="MB per transfer")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--echoes", type=int, default=300)
    args = parser.parse_args()
    size = args.mb * 1_000_000
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as tmp:
        files = prepare(Path(tmp))
        server = start_process(files)
        files = server.files
        pod_server = subprocess.Popen(
            [sys.executable, "-c", POD_SERVER], stdout=subprocess.PIPE, text=True
        )
        assert pod_server.stdout is not None
        pod_port = int(pod_server.stdout.readline())
        cert, key = files.pki.issue(
            "bench-agent", common_name=f"system:node:{NODE}", server=True,
            ips=["127.0.0.1"], dns=[NODE],
        )  # fmt: skip
        parent, child = multiprocessing.Pipe()
        agent = multiprocessing.get_context("fork").Process(
            target=run_agent, args=(str(cert), str(key), str(files.pki.ca_cert), child), daemon=True
        )
        agent.start()
        try:
            agent_port = parent.recv()
            kubeconfig = server.kubeconfig()
            setup_cluster(kubeconfig, agent_port)
            results: dict[str, list[float]] = {"direct": [], "pf-websocket": [], "pf-spdy": []}
            cpu: dict[str, list[dict[str, float]]] = {name: [] for name in results}
            # the two ends every path has: this process reads, the pod server writes
            ends = {"client": os.getpid(), "pod": pod_server.pid}
            ours = {**ends, "apiserver": server.process.pid, "agent": int(agent.pid or 0)}
            for _ in range(args.rounds):  # interleaved: the machine's load hits all alike
                with CpuMeter(ends) as meter:
                    results["direct"].append(receive(pod_port, size))
                cpu["direct"].append(meter.used)
                for name, websocket in (("pf-websocket", True), ("pf-spdy", False)):
                    with port_forward(kubeconfig, pod_port, websocket=websocket) as (local, pid):
                        with CpuMeter({**ours, "kubectl": pid}) as meter:
                            results[name].append(receive(local, size))
                        cpu[name].append(meter.used)
            direct_rtt = tcp_echo_rtts(pod_port, args.echoes)
            exec_rtt = asyncio.run(exec_echo_rtts(files, args.echoes))
        finally:
            agent.kill()
            pod_server.kill()
            server.process.kill()
            server.process.wait()
    direct = statistics.median(results["direct"])
    cores = len(os.sched_getaffinity(0))
    print(f"transfer of {args.mb} MB, median of {args.rounds} rounds, {cores} cores:")
    direct_cpu = cpu_per_mb(cpu["direct"], args.mb)
    print(
        f"  {'direct (TCP to the pod)':<34} {direct:9.1f} MB/s"
        f"   CPU ms per MB: {_listed(direct_cpu)}"
    )
    ok = True
    for name in ("pf-websocket", "pf-spdy"):
        mbps = statistics.median(results[name])
        ratio = direct / mbps
        meets = mbps >= GOAL_MBPS and ratio <= GOAL_RATIO
        ok = ok and meets
        print(
            f"  {'kubectl port-forward ' + name[3:]:<34} {mbps:9.1f} MB/s"
            f"   direct/port-forward {ratio:5.1f}x  {'ok' if meets else 'BELOW GOAL'}"
        )
        per_mb = cpu_per_mb(cpu[name], args.mb)
        print(f"  {'':<34} CPU ms per MB: {_listed(per_mb)}")
        # What the CPU allows whatever the scheduling: every byte costs the sum of the
        # processes' CPU per MB, and the machine has `cores` of it. The second ceiling
        # prices the API server and agent at zero: no server could beat it on this machine.
        ceiling = cores * 1000 / sum(per_mb.values())
        free_hops = cores * 1000 / (per_mb["kubectl"] + per_mb["client"] + per_mb["pod"])
        print(
            f"  {'':<34} CPU ceiling {ceiling:7.1f} MB/s (ratio >= {direct / ceiling:4.1f}x);"
            f" with a zero-cost API server and agent {free_hops:7.1f} MB/s"
            f" (ratio >= {direct / free_hops:4.1f}x)"
        )
    print(f"one-byte round trips ({args.echoes}): median / p99")
    print(
        f"  {'direct (TCP echo)':<34} {_ms(direct_rtt, 0.5):7.3f} / {_ms(direct_rtt, 0.99):7.3f} ms"
    )
    median, p99 = _ms(exec_rtt, 0.5), _ms(exec_rtt, 0.99)
    ratio = median / max(_ms(direct_rtt, 0.5), 1e-6)
    print(f"  {'exec cat (WebSocket v5)':<34} {median:7.3f} / {p99:7.3f} ms   ratio {ratio:5.1f}x")
    print(
        f"goal: port-forward >= {GOAL_MBPS:g} MB/s and within {GOAL_RATIO:g}x of direct:"
        f" {'met' if ok else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
