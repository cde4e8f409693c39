"""Ingress benchmark: requests/s and p99 latency through berth's ingress data plane against the
same requests sent straight to the "pod", with the same client (wrk), in one run.

The pod is a stand-in web server: ``--pod memory`` (default) an HAProxy answering every request
with ``http-request return``, so the backend is never the bottleneck and the figure shows what
the extra hop costs; ``--pod busybox`` busybox ``httpd`` serving a file, what the lab's pods
run (a process per request: the pod is the bottleneck, as with many real pods).
The ingress is berth's own path: synthetic Ingress, IngressClass,
Service and EndpointSlice objects go through :func:`berth.ingress.routes.build_routes`, the
configuration :func:`berth.ingress.haproxy.render` writes (host map, prefix map) and
:class:`berth.ingress.proxy.HaproxyProxy` (the checked generation, master-worker HAProxy), with
``--ingresses`` other Ingresses' hosts and paths in its maps. Rounds alternate direct and
through-ingress runs (this machine is shared: alternation spreads the noise over both).

Goal (issue 15): through the ingress >= 90 % of the direct requests/s. Two placements run side
by side, each with its own pod and ingress, rounds going through all four runs:

- ``shared CPUs``: client (``wrk -t2``), ingress and pod float over all of this machine's
  cores (2 here). The direct run gets the CPU the proxy otherwise uses, so its ratio measures
  the proxy's CPU cost against the client's and the pod's, not what a client sees.
- ``proxy on its own core``: models separate machines with CPU affinity: client (``wrk -t1``)
  and pod pinned to the first core, HAProxy to the second (started pinned, so it runs one
  thread, as on a one-core ingress node); the direct run is pinned the same way, so the only
  difference is the hop. This is what the issue's ratio means on a cluster, where the ingress
  runs on its own node. Below it, the proxy's CPU bound: one core divided by HAProxy's CPU per
  request, beside the direct requests/s.

Each run reports requests/s, wrk's p99 and HAProxy's CPU time per request (user + system of
the master and its workers, from /proc). On a machine loaded by other work a pinned process
competes for its one core with everything scheduled there, so compare the ratios within one
run, and the CPU per request (the least noisy figure) across runs.

Usage: ``python bench/ingress.py [--seconds 5] [--rounds 3] [--connections 32]
[--ingresses 200] [--pod memory|busybox] [--placement both|shared|own-core]`` (needs
``haproxy``, ``wrk`` and ``busybox`` from Debian: the Makefile's apt list).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from berth.ingress.haproxy import Listen  # noqa: E402
from berth.ingress.proxy import HAPROXY, HaproxyProxy  # noqa: E402
from berth.ingress.routes import build_routes  # noqa: E402

HOST = "bench.example.com"


@dataclass(frozen=True)
class Placement:
    """Which CPUs each party may use (``None``: any)."""

    name: str
    title: str
    client: set[int] | None
    backend: set[int] | None
    proxy: set[int] | None


@dataclass(frozen=True)
class Run:
    rps: float
    p99_ms: float
    cpu_us: float
    """HAProxy's CPU time (user + system, all its processes and threads) per request."""


CONTROLLER_CLASS = {
    "metadata": {"name": "berth", "annotations": {}},
    "spec": {"controller": "berth.dev/ingress-haproxy"},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _objects(pod_port: int, others: int) -> tuple[list[Any], list[Any], list[Any]]:
    def ingress(name: str, host: str, paths: list[str]) -> dict[str, Any]:
        backend = {"service": {"name": "pod", "port": {"number": 80}}}
        return {
            "metadata": {"name": name, "namespace": "bench"},
            "spec": {
                "ingressClassName": "berth",
                "rules": [
                    {
                        "host": host,
                        "http": {
                            "paths": [
                                {"path": p, "pathType": "Prefix", "backend": backend} for p in paths
                            ]
                        },
                    }
                ],
            },
        }

    ingresses = [ingress("bench", HOST, ["/"])]
    ingresses += [
        ingress(f"other{i}", f"site{i}.example.com", ["/", f"/api{i}", "/static"])
        for i in range(others)
    ]
    services = [
        {
            "metadata": {"name": "pod", "namespace": "bench"},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        }
    ]
    slices = [
        {
            "metadata": {
                "name": "pod-1",
                "namespace": "bench",
                "labels": {"kubernetes.io/service-name": "pod"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": pod_port}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
        }
    ]
    return ingresses, services, slices


POD_CONFIG = """global
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend pod
    bind 127.0.0.1:{port}
    http-request return status 200 content-type text/plain string "pod"
"""


def _wrk(
    url: str, host: str, seconds: int, connections: int, threads: int, cpus: set[int] | None
) -> tuple[float, float]:
    pin = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus is not None else []
    out = subprocess.run(
        [*pin, "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
         "-H", f"Host: {host}", url],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    assert m is not None, out
    p99_ms = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        raise SystemExit(f"wrk saw errors against {url}: {errors.group(0)}")
    return rps, p99_ms


@dataclass
class Stack:
    """One placement's processes: a pod and an ingress routing to it, pinned as it says."""

    placement: Placement
    pod: asyncio.subprocess.Process
    proxy: HaproxyProxy
    direct_url: str
    ingress_url: str
    routes: int = 0


@contextlib.contextmanager
def _pinned(cpus: set[int] | None) -> Iterator[None]:
    """Children started inside inherit ``cpus`` (this thread's affinity is restored after)."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` (all its threads), in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _haproxy_pids(master: int) -> list[int]:
    """The master-worker HAProxy's processes: the master and its workers."""
    children: list[int] = []
    for task in Path(f"/proc/{master}/task").iterdir():
        with contextlib.suppress(OSError):
            children += [int(p) for p in (task / "children").read_text().split()]
    return [master, *children]


def _pod_command(work: Path, kind: str, port: int) -> list[str]:
    work.mkdir()
    if kind == "busybox":
        (work / "www").mkdir()
        (work / "www" / "index.html").write_text("pod\n")
        return ["busybox", "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", str(work / "www")]
    (work / "pod.cfg").write_text(POD_CONFIG.format(port=port))
    return [HAPROXY, "-f", str(work / "pod.cfg")]


async def _start_stack(
    placement: Placement, work: Path, args: argparse.Namespace, ingresses: int
) -> Stack:
    pod_port, http_port, https_port = _free_port(), _free_port(), _free_port()
    with _pinned(placement.backend):
        pod = await asyncio.create_subprocess_exec(*_pod_command(work, args.pod, pod_port))
    ingress_objects, services, slices = _objects(pod_port, ingresses)
    routes = build_routes(ingress_objects, [CONTROLLER_CLASS], services, slices, [])
    assert not routes.problems, routes.problems
    proxy = HaproxyProxy(work / "ingress", listen=Listen("127.0.0.1", http_port, https_port))
    proxy.prepare()
    # HAProxy starts one thread per CPU it may run on: 2 when shared, 1 on its own core
    with _pinned(placement.proxy):
        applied = await proxy.apply(routes)
    assert applied.ok, applied.error
    return Stack(
        placement, pod, proxy,
        f"http://127.0.0.1:{pod_port}/", f"http://127.0.0.1:{http_port}/", len(routes.routes),
    )  # fmt: skip


async def _stop_stack(stack: Stack) -> None:
    await stack.proxy.stop()
    if stack.pod.returncode is None:
        stack.pod.terminate()
    await stack.pod.wait()


def _measure(stack: Stack, url: str, args: argparse.Namespace, seconds: int) -> Run:
    assert stack.proxy.process is not None
    pids = _haproxy_pids(stack.proxy.process.pid)
    before = sum(_cpu_ticks(p) for p in pids)
    threads = 1 if stack.placement.client is not None else 2
    rps, p99 = _wrk(url, HOST, seconds, args.connections, threads, stack.placement.client)
    ticks = sum(_cpu_ticks(p) for p in pids) - before
    cpu_us = ticks / os.sysconf("SC_CLK_TCK") * 1e6 / max(rps * seconds, 1.0)
    return Run(rps, p99, cpu_us)


async def _main(args: argparse.Namespace) -> None:
    for tool in ("wrk", HAPROXY):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install haproxy wrk (Makefile)")
    placements = _placements(args.placement)
    work = Path(tempfile.mkdtemp(prefix="berth-bench-ingress-"))
    load_before = os.getloadavg()
    stacks: list[Stack] = []
    try:
        for p in placements:
            stacks.append(await _start_stack(p, work / p.name, args, args.ingresses))
        await asyncio.sleep(0.5)
        for stack in stacks:  # warm up
            for url in (stack.ingress_url, stack.direct_url):
                await asyncio.to_thread(_measure, stack, url, args, 1)
        results: dict[tuple[str, str], list[Run]] = {}
        # one round: every placement's direct then ingress run, so a burst of load from the
        # machine's other work spreads over all of them
        for _ in range(args.rounds):
            for stack in stacks:
                for path, url in (("direct", stack.direct_url), ("ingress", stack.ingress_url)):
                    run = await asyncio.to_thread(_measure, stack, url, args, args.seconds)
                    results.setdefault((stack.placement.name, path), []).append(run)
    finally:
        for stack in stacks:
            await _stop_stack(stack)
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    print(
        f"pod: {args.pod}; wrk -c{args.connections}, {args.seconds}s x {args.rounds} rounds"
        f" (medians); ingress maps hold {stacks[0].routes} routes of {args.ingresses + 1}"
        f" Ingresses; load average {load_before[0]:.1f} before,"
        f" {load_after[0]:.1f} after"
    )
    print(
        f"{'placement':<26}{'path':<9}{'requests/s':>12}{'p99 ms':>9}"
        f"{'HAProxy CPU/request':>21}{'of direct':>11}"
    )
    for p in placements:
        direct = _median(results[(p.name, "direct")])
        for path in ("direct", "ingress"):
            m = _median(results[(p.name, path)])
            cpu = f"{m.cpu_us:.1f} us" if path == "ingress" else ""
            share = f"{m.rps / direct.rps:.0%}" if path == "ingress" else ""
            print(f"{p.title:<26}{path:<9}{m.rps:>12,.0f}{m.p99_ms:>9.2f}{cpu:>21}{share:>11}")
        if p.proxy is not None:
            # what the proxy's core could carry were it the only bound: its CPU per request
            # counts little of this shared machine's scheduling noise
            cap = 1e6 / _median(results[(p.name, "ingress")]).cpu_us
            print(
                f"{'':<26}HAProxy's CPU bound on its own core: {cap:,.0f}/s ="
                f" {min(cap / direct.rps, 1.0):.0%} of direct"
            )
    print("goal (issue 15): through the ingress >= 90% of direct requests/s")


def _median(runs: list[Run]) -> Run:
    return Run(
        statistics.median(r.rps for r in runs),
        statistics.median(r.p99_ms for r in runs),
        statistics.median(r.cpu_us for r in runs),
    )


def _placements(which: str) -> list[Placement]:
    cpus = sorted(os.sched_getaffinity(0))
    shared = Placement("shared", "shared CPUs", None, None, None)
    if which == "shared":
        return [shared]
    if len(cpus) < 2:
        raise SystemExit("the 'own-core' placement needs 2 CPUs")
    a, b = {cpus[0]}, {cpus[1]}
    own = Placement("own-core", "proxy on its own core", a, a, b)
    return [own] if which == "own-core" else [shared, own]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--ingresses", type=int, default=200, help="other Ingresses in the maps")
    parser.add_argument("--pod", choices=("memory", "busybox"), default="memory")
    parser.add_argument(
        "--placement", choices=("both", "shared", "own-core"), default="both",
        help="shared CPUs, the proxy on its own core, or both side by side",
    )  # fmt: skip
    args = parser.parse_args()
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
