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

Goal (issue 15): through the ingress >= 90 % of the direct requests/s. Everything here (client,
ingress, pod) shares this machine's cores, where on a cluster the client and the pod are
elsewhere: the ratio is a floor.

Usage: ``python bench/ingress.py [--seconds 5] [--rounds 2] [--connections 32]
[--ingresses 200] [--pod memory|busybox]`` (needs ``haproxy``, ``wrk`` and ``busybox`` from
Debian: the Makefile's apt list).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from berth.ingress.haproxy import Listen  # noqa: E402
from berth.ingress.proxy import HAPROXY, HaproxyProxy  # noqa: E402
from berth.ingress.routes import build_routes  # noqa: E402

HOST = "bench.example.com"
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


def _wrk(url: str, host: str, seconds: int, connections: int) -> tuple[float, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Host: {host}",
         url],
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


async def _main(args: argparse.Namespace) -> None:
    for tool in ("wrk", HAPROXY):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install haproxy wrk (Makefile)")
    work = Path(tempfile.mkdtemp(prefix="berth-bench-ingress-"))
    pod_port, http_port, https_port = _free_port(), _free_port(), _free_port()
    if args.pod == "busybox":
        (work / "www").mkdir()
        (work / "www" / "index.html").write_text("pod\n")
        pod = await asyncio.create_subprocess_exec(
            "busybox", "httpd", "-f", "-p", f"127.0.0.1:{pod_port}", "-h", str(work / "www")
        )
    else:
        (work / "pod.cfg").write_text(POD_CONFIG.format(port=pod_port))
        pod = await asyncio.create_subprocess_exec(HAPROXY, "-f", str(work / "pod.cfg"))
    ingresses, services, slices = _objects(pod_port, args.ingresses)
    routes = build_routes(ingresses, [CONTROLLER_CLASS], services, slices, [])
    assert not routes.problems, routes.problems
    proxy = HaproxyProxy(work / "ingress", listen=Listen("127.0.0.1", http_port, https_port))
    proxy.prepare()
    try:
        applied = await proxy.apply(routes)
        assert applied.ok, applied.error
        await asyncio.sleep(0.5)
        direct_url = f"http://127.0.0.1:{pod_port}/"
        ingress_url = f"http://127.0.0.1:{http_port}/"
        await asyncio.to_thread(_wrk, ingress_url, HOST, 1, args.connections)  # warm up
        await asyncio.to_thread(_wrk, direct_url, HOST, 1, args.connections)
        results: dict[str, list[tuple[float, float]]] = {"direct": [], "ingress": []}
        for _ in range(args.rounds):
            for name, url in (("direct", direct_url), ("ingress", ingress_url)):
                run = await asyncio.to_thread(_wrk, url, HOST, args.seconds, args.connections)
                results[name].append(run)
    finally:
        await proxy.stop()
        pod.terminate()
        await pod.wait()
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"pod: {args.pod}; wrk -t2 -c{args.connections}, {args.seconds}s x {args.rounds} rounds;"
        " ingress maps "
        f"hold {len(routes.routes)} routes of {len(ingresses)} Ingresses"
    )
    print(f"{'path':<10}{'requests/s':>14}{'p99 ms':>10}")
    summary = {}
    for name, runs in results.items():
        rps = statistics.median(r for r, _ in runs)
        p99 = statistics.median(p for _, p in runs)
        summary[name] = (rps, p99)
        print(f"{name:<10}{rps:>14,.0f}{p99:>10.2f}")
    ratio = summary["ingress"][0] / summary["direct"][0]
    print(f"through the ingress: {ratio:.0%} of direct requests/s (goal >= 90%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--ingresses", type=int, default=200, help="other Ingresses in the maps")
    parser.add_argument("--pod", choices=("memory", "busybox"), default="memory")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
