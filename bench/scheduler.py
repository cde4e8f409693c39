"""Scheduler throughput and pod startup latency on simulated nodes.

Three measurements, each printed beside its goal and Kubernetes' published figure:

1. **Scheduling algorithm** (in process, in-memory fake API): 10,000 pending pods onto 1,000
   nodes — the cost of filtering, scoring and assuming alone; then again with every pod using
   its own claim of a WaitForFirstConsumer class (the VolumeBinding plugin, and the claim's
   ``selected-node`` write), whose throughput should stay within 30% of the plain case.
2. **Scheduling end to end**: the API server (``python -m berth.apiserver``, memory store) and
   the scheduler (``python -m berth.scheduler``) as separate processes; 1,000 nodes and 10,000
   pending pods are created first, then the scheduler starts; throughput is bound pods per
   second between the first and last binding observed through a watch (as scheduler_perf
   counts). Kubernetes: clusterloader2's scheduler-throughput threshold, 100 pods/s.
3. **Pod startup latency**: API server, scheduler, controller manager and a 1,000-node
   simulated agent fleet (``python -m berth.agent``) as processes; pods are created at a steady
   rate and each one's latency runs from its create call returning to a watch event showing
   it Running. Kubernetes' SLO: p99 <= 5 s (creation to running, observed via watch).

Run: ``.venv/bin/python bench/scheduler.py [--nodes 1000 --pods 10000 --latency-pods 1000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

# the API server harness lives under tests/ (it is not shipped): import it from the checkout
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from berth.api.resources import (  # noqa: E402
    NODES,
    PERSISTENTVOLUMECLAIMS,
    PODS,
    STORAGECLASSES,
)
from berth.api.storage import default_storage_class  # noqa: E402
from berth.client.http import HttpClient  # noqa: E402
from berth.client.interface import Obj  # noqa: E402
from berth.machinery.clock import RealClock  # noqa: E402
from berth.machinery.events import EventRecorder  # noqa: E402
from berth.machinery.informer import InformerFactory  # noqa: E402
from berth.scheduler.scheduler import Scheduler, SchedulerConfig  # noqa: E402
from tests.harness.apiserver import ServerProcess, prepare, start_process  # noqa: E402
from tests.harness.fake_client import FakeClient  # noqa: E402

GOAL_THROUGHPUT = 300.0
K8S_THROUGHPUT = 100.0
GOAL_P99 = 1.0
K8S_P99 = 5.0


def node_body(i: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": f"node-{i}", "labels": {"kubernetes.io/hostname": f"node-{i}"}},
        "status": {
            "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
            "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        },
    }


def pod_body(i: int, *, prefix: str = "bench") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{prefix}-{i}", "namespace": "default", "labels": {"bench": prefix}},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "pause",
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                }
            ],
            "terminationGracePeriodSeconds": 0,
        },
    }


async def bounded(n: int, limit: int, make: Any) -> None:
    sem = asyncio.Semaphore(limit)

    async def one(i: int) -> None:
        async with sem:
            await make(i)

    await asyncio.gather(*(one(i) for i in range(n)))


def claim_body(i: int) -> Obj:
    return {
        "metadata": {"name": f"data-{i}", "namespace": "default"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "berth-local",
        },
    }


def pod_with_claim(i: int) -> Obj:
    pod = pod_body(i)
    pod["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": f"data-{i}"}}]
    return pod


# ---- 1. algorithm only --------------------------------------------------------------------
async def algorithm(nodes: int, pods: int, *, wffc: bool = False) -> float:
    clock = RealClock()
    api = FakeClient()
    for i in range(nodes):
        api.seed(NODES, node_body(i))
    if wffc:
        api.seed(STORAGECLASSES, default_storage_class())
    for i in range(pods):
        if wffc:
            api.seed(PERSISTENTVOLUMECLAIMS, claim_body(i))
        api.seed(PODS, pod_with_claim(i) if wffc else pod_body(i))
    informers = InformerFactory(api, clock=clock)
    sched = Scheduler(
        api,
        informers,
        clock,
        recorder=EventRecorder(api, clock, component="bench"),
        config=SchedulerConfig(report_status=False),
    )
    for inf in informers.all():
        await inf.relist()
    sched.recorder.record = _no_event  # type: ignore[method-assign]
    start = time.perf_counter()
    while (key := sched.queue.get_nowait()) is not None:
        await sched.schedule_one(key)
        sched.queue.done(key)
    await sched.wait_binds()
    elapsed = time.perf_counter() - start
    assert sched.scheduled == pods, f"only {sched.scheduled} of {pods} pods were bound"
    return pods / elapsed


async def _no_event(*_a: Any, **_k: Any) -> None:
    return None


# ---- processes ------------------------------------------------------------------------------
def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=err)


def stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def api_server(tmp: Path) -> Any:
    files = prepare(tmp / "apiserver")
    server: ServerProcess = start_process(files)
    try:
        yield server
    finally:
        stop(server.process)


# ---- 2. end to end throughput ---------------------------------------------------------------
async def end_to_end(tmp: Path, nodes: int, pods: int) -> tuple[float, float]:
    with api_server(tmp) as server:
        kubeconfig = server.kubeconfig()
        api = HttpClient.from_kubeconfig(kubeconfig)
        t0 = time.perf_counter()
        await bounded(nodes, 32, lambda i: api.create(NODES, node_body(i)))
        await bounded(pods, 32, lambda i: api.create(PODS, pod_body(i)))
        create_rate = (nodes + pods) / (time.perf_counter() - t0)
        start_rv = (await api.list(NODES)).resource_version
        bound: list[float] = []
        done = asyncio.Event()

        async def watch() -> None:
            seen: set[str] = set()
            async for ev in api.watch(PODS, namespace="default", resource_version=start_rv):
                if ev.type != "MODIFIED" or not ev.object.get("spec", {}).get("nodeName"):
                    continue
                name = ev.object["metadata"]["name"]
                if name not in seen:
                    seen.add(name)
                    bound.append(time.perf_counter())
                    if len(seen) == pods:
                        done.set()
                        return

        watcher = asyncio.create_task(watch())
        sched = spawn(
            ["-m", "berth.scheduler", "--kubeconfig", str(kubeconfig), "--no-leader-elect"],
            tmp / "scheduler.log",
        )
        try:
            await asyncio.wait_for(done.wait(), timeout=600)
        finally:
            stop(sched)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await api.close()
            await asyncio.sleep(0.25)
        throughput = (len(bound) - 1) / (bound[-1] - bound[0]) if len(bound) > 1 else 0.0
        return throughput, create_rate


# ---- 3. pod startup latency ------------------------------------------------------------------
async def startup_latency(tmp: Path, nodes: int, pods: int, rate: float) -> list[float]:
    with api_server(tmp) as server:
        kubeconfig = server.kubeconfig()
        agent_cfg = tmp / "agent.yaml"
        agent_cfg.write_text(
            yaml.safe_dump(
                {
                    "kubeconfig": str(kubeconfig),
                    "simulate": {
                        "count": nodes,
                        "namePrefix": "sim-",
                        "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                    },
                    "renewIntervalSeconds": 10,
                    "statusCheckSeconds": 60,
                    "statusReportSeconds": 300,
                    "workers": 16,
                }
            )
        )
        procs = [
            spawn(["-m", "berth.agent", "--config", str(agent_cfg)], tmp / "agent.log"),
            spawn(
                ["-m", "berth.scheduler", "--kubeconfig", str(kubeconfig), "--no-leader-elect"],
                tmp / "scheduler-2.log",
            ),
            spawn(
                ["-m", "berth.controllers", "--kubeconfig", str(kubeconfig), "--no-leader-elect"],
                tmp / "controllers.log",
            ),
        ]
        api = HttpClient.from_kubeconfig(kubeconfig)
        try:
            deadline = time.monotonic() + 300
            while len((await api.list(NODES)).items) < nodes:
                if time.monotonic() > deadline:
                    raise RuntimeError("simulated nodes did not register in 300s")
                await asyncio.sleep(1)
            await asyncio.sleep(2)  # let registrations settle
            created: dict[str, float] = {}
            running_at: dict[str, float] = {}
            done = asyncio.Event()
            start_rv = (await api.list(PODS, namespace="default")).resource_version

            async def watch() -> None:
                async for ev in api.watch(PODS, namespace="default", resource_version=start_rv):
                    name = ev.object["metadata"]["name"]
                    if (ev.object.get("status") or {}).get("phase") != "Running":
                        continue
                    if name not in running_at:
                        running_at[name] = time.perf_counter()
                        if len(running_at) == pods:
                            done.set()
                            return

            watcher = asyncio.create_task(watch())
            interval = 1.0 / rate
            t0 = time.perf_counter()
            for i in range(pods):
                target = t0 + i * interval
                delay = target - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                body = pod_body(i, prefix="lat")
                # From the moment the create is sent (kube's SLO starts at creationTimestamp).
                created[body["metadata"]["name"]] = time.perf_counter()
                await api.create(PODS, body)
            await asyncio.wait_for(done.wait(), timeout=300)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            return sorted(running_at[n] - t for n, t in created.items())
        finally:
            for p in procs:
                stop(p)
            await api.close()
            await asyncio.sleep(0.25)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--latency-pods", type=int, default=1000)
    parser.add_argument("--latency-rate", type=float, default=50.0, help="pods created per second")
    parser.add_argument(
        "--algorithm-only", action="store_true", help="only the in-process measurements"
    )
    args = parser.parse_args()
    print(f"== scheduler bench: {args.nodes} nodes, {args.pods} pending pods")
    algo = await algorithm(args.nodes, args.pods)
    print(f"algorithm only (fake API):      {algo:8.0f} pods/s")
    wffc = await algorithm(args.nodes, args.pods, wffc=True)
    verdict = "within" if wffc >= 0.7 * algo else "NOT within"
    print(
        f"  with a WFFC claim per pod:    {wffc:8.0f} pods/s ({wffc / algo:.0%} of plain:"
        f" {verdict} 30%)"
    )
    if args.algorithm_only:
        return
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as d:
        e2e, create_rate = await end_to_end(Path(d) / "tp", args.nodes, args.pods)
        print(f"(setup: created nodes+pods at {create_rate:.0f} objects/s)")
        lat = await startup_latency(
            Path(d) / "lat", args.nodes, args.latency_pods, args.latency_rate
        )
    print()
    print(f"{'measure':36} {'berth':>10} {'goal':>10} {'kubernetes':>11} {'vs k8s':>8}")
    print(
        f"{'scheduling throughput (pods/s)':36} {e2e:10.0f} {GOAL_THROUGHPUT:10.0f} "
        f"{K8S_THROUGHPUT:11.0f} {e2e / K8S_THROUGHPUT:7.1f}x"
    )
    p50, p99 = statistics.median(lat), pct(lat, 0.99)
    print(f"{'pod startup p50 (s)':36} {p50:10.3f} {'':>10} {'':>11} {'':>8}")
    print(
        f"{'pod startup p99 (s)':36} {p99:10.3f} {GOAL_P99:10.1f} {K8S_P99:11.1f} "
        f"{K8S_P99 / p99:7.1f}x"
    )
    print(
        f"\nthroughput goal {'MET' if e2e >= GOAL_THROUGHPUT else 'NOT MET'}; "
        f"p99 goal {'MET' if p99 <= GOAL_P99 else 'NOT MET'} "
        f"({len(lat)} pods at {args.latency_rate:.0f}/s on {args.nodes} simulated nodes)"
    )


if __name__ == "__main__":
    asyncio.run(main())
