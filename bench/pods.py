"""Pod startup latency and Service (ClusterIP) throughput with berth's node runtime on the lab.

Boots a 3-host lab, installs runc/CNI/nftables and berth's node packages on n1 and n2, puts a
busybox image in a registry on the lab bridge and pulls it there (so "image present"), then:

1. **startup**: 30 pods (15 per host, n1 and n2 at once), each = sandbox (netns + CNI ADD of
   lo and eth0, pod files, a ConfigMap volume) + bundle (rootfs overlay or copy, config.json) +
   ``runc create`` through the shim + ``runc start``, timed inside one runtime process per
   host. Peer, same hosts, same run: the bare floor — ``runc run -d`` of a ready-made bundle
   with no network and no volumes.
2. **throughput**, from host n1's network namespace to a pod on n2: small GETs per second and
   MB/s of a 1.9 MB file, through the ClusterIP (nftables DNAT, one endpoint) vs the pod IP.
3. **through the agent**, same hosts and image: ``berth apply`` (runc nodes, all 3 hosts),
   then a Deployment (after a warm-up that pulls the image) of 30 replicas on n1 and n2 (node
   affinity), then of 150 replicas on all 3. A pod watch stamps, per pod, when it sees the pod
   ADDED (t0: the ReplicaSet created it), bound to a node, in phase Running and Ready. Printed
   next to section 1's per-pod runtime figures, with the issue's goals: created -> Running p99
   <= 1.0 s (30 pods) and <= 1.5 s (150 pods), scheduled -> Running within 3x of the runtime
   alone, and the Deployment deleted -> its pods gone from the API and from the nodes (no
   sandbox left in the runtime's state) <= 2 s for the 30 pods. The pods exit on SIGTERM and
   have the default 30 s grace period.

``--workers 8,32`` runs the 30-pod burst once per pod-worker count (every agent restarted
with that count in its config between), to size the pool by measurement; the 150-pod burst
runs once, with the last count.

``--timeline`` also prints, per pod and as p50/p99 per stage, where section 3's time between
bound and Running goes: the agents run with ``BERTH_POD_TIMELINE=1`` (see
:mod:`berth.runtime.timeline`) and log monotonic stamps per pod, which the bench joins with its
own watch stamps (same kernel, same monotonic clock). ``--agent-only`` skips sections 1 and 2.

``--profile DIR`` runs the agents under cProfile (``BERTH_AGENT_PROFILE``) and fetches their
stats to ``DIR/<host>.prof`` after the bursts, and profiles the API server over each measured
burst, start and delete (``BERTH_APISERVER_PROFILE``, toggled by SIGUSR1), into
``DIR/apiserver-<pods>.prof``; ``--bursts 30`` runs only the 30-pod burst. cProfile charges
many small Python calls (``copy.deepcopy``) far more than they cost unprofiled: confirm a
finding without it.
Section 3 prints CPU per pod per host, and of it the agent's unit split into the agent
process (its Python), the tools it ran (CNI plugins, runc, ip, cp: its waited-for
children) and the rest of the unit (the shims). The control plane's CPU per pod (API
server, scheduler, controller manager units) is printed beside it.

Run as root: ``.venv/bin/python bench/pods.py [--timeline] [--agent-only] [--workers N,M]``.
The machine blackholes the pod and service CIDRs for the duration; all traffic stays on the lab
bridge.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

# The lab helpers live with the lab tests (they are not part of the installed packages).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from berth.api.resources import PODS
from berth.client.http import HttpClient
from berth.runtime import timeline
from provisioner.lab import Lab
from tests.lab.workloads import (
    CLUSTER_CIDR,
    REMOTE_BERTH,
    SERVICE_CIDR,
    STATE_DIR,
    Node,
    Registry,
    blackhole_routes,
    build_busybox_layout,
    download_debs,
    require_machine_tools,
    setup_nodes,
    teardown_node,
    web_service,
)

PODS_PER_NODE = 15
CLUSTER_IP = "10.96.0.10"

STARTUP = """
import asyncio, json, os, shutil, subprocess, time
from berth.runtime.cli import _runtime, parser
from berth.runtime.k8s import pod_from_k8s

args = parser().parse_args(["--state-dir", "{state}", "--pod-cidr", "{cidr}",
                            "--insecure-registry", "{registry}", "status"])
rt = _runtime(args)
pods = json.loads({pods!r})

async def main():
    out = {{"berth": [], "runc": [], "sandbox": [], "create": [], "start": []}}
    for doc in pods:
        given = doc["files"]
        files = lambda kind, name: {{k: v.encode() for k, v in given[kind + "/" + name].items()}}
        pod, (container,) = pod_from_k8s(doc, files=files)
        t0 = time.monotonic()
        await rt.run_pod_sandbox(pod)
        t1 = time.monotonic()
        cid = await rt.create_container(pod, container)
        t2 = time.monotonic()
        await rt.start_container(cid)
        status = await rt.container_status(cid)
        t3 = time.monotonic()
        assert status.state == "running", status
        out["berth"].append(t3 - t0)
        out["sandbox"].append(t1 - t0)
        out["create"].append(t2 - t1)
        out["start"].append(t3 - t2)
    result = {{"containers": [cid]}}
    # the floor: runc run -d of a ready bundle (no netns, no volumes), same image
    first = result["containers"][0]
    cfg = json.load(open(rt.containers_dir / first / "config.json"))
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "network"]
    cfg["mounts"] = [m for m in cfg["mounts"] if m["type"] != "bind"]
    image = await rt.pull_image("{image}")
    snapshot = rt.images.rootfs_snapshot(image)
    base = "/var/lib/berth/bench-floor"
    shutil.rmtree(base, ignore_errors=True)
    for i in range({n}):
        bundle = f"{{base}}/b{{i}}"
        os.makedirs(bundle)
        subprocess.run(["cp", "-al", f"{{snapshot}}/.", f"{{bundle}}/rootfs"], check=True)
        cfg["root"]["path"] = f"{{bundle}}/rootfs"
        cfg["linux"]["cgroupsPath"] = f"/berth-floor/b{{i}}"
        json.dump(cfg, open(f"{{bundle}}/config.json", "w"))
        started = time.monotonic()
        subprocess.run(["runc", "--root", "/run/berth-floor", "run", "-d", "--bundle", bundle,
                        f"floor{{i}}"], check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out["runc"].append(time.monotonic() - started)
    for i in range({n}):
        subprocess.run(["runc", "--root", "/run/berth-floor", "delete", "--force", f"floor{{i}}"])
    shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(out))

asyncio.run(main())
"""

THROUGHPUT = """
import json, time, urllib.request
def rate(url, n):
    started = time.monotonic(); size = 0
    for _ in range(n):
        with urllib.request.urlopen(url, timeout=5) as r:
            size += len(r.read())
    took = time.monotonic() - started
    return {{"per_s": n / took, "mb_s": size / took / 1e6}}
out = {{}}
for label, base in (("direct", "http://{pod_ip}:8080"), ("clusterip", "http://{cluster_ip}")):
    rate(base + "/etc/hostname", 20)  # warm up (ARP, conntrack)
    out[label] = {{"small": rate(base + "/etc/hostname", {small}),
                  "big": rate(base + "/bin/busybox", {big})}}
print(json.dumps(out))
"""


def web_pod(name: str, image: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "bench", "uid": str(uuid.uuid4())},
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": image,
                    "command": ["/bin/httpd", "-f", "-p", "8080", "-h", "/"],
                    "securityContext": {"readOnlyRootFilesystem": True},
                    "volumeMounts": [{"name": "conf", "mountPath": "/conf"}],
                }
            ],
            "volumes": [{"name": "conf", "configMap": {"name": "conf"}}],
        },
        "files": {"configMap/conf": {"name": name}},
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def startup(node: Node, image: str) -> dict[str, list[float]]:
    pods = [web_pod(f"{node.name}-p{i}", image) for i in range(PODS_PER_NODE)]
    code = STARTUP.format(
        state=STATE_DIR, cidr=node.pod_cidr, registry=node.registry, image=image,
        pods=json.dumps(pods), n=PODS_PER_NODE,
    )  # fmt: skip
    result: dict[str, list[float]] = node.python(code, env=f"PYTHONPATH={REMOTE_BERTH}")
    return result


def _is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class PodClock:
    """Watches pods (one label selector, one namespace) from a thread of its own and stamps,
    per pod uid, the local monotonic time the watch first delivered each milestone:
    ``added`` (the ADDED event of a pod created after the watch began), ``scheduled``
    (``spec.nodeName`` set), ``running`` (``status.phase == Running``), ``ready`` (condition
    Ready True) and ``deleted``. No object timestamps (1 s resolution) and no polling."""

    MILESTONES = ("added", "scheduled", "running", "ready", "deleted")

    def __init__(self, kubeconfig: Path, *, namespace: str, selector: str) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.selector = selector
        self.times: dict[str, dict[str, float]] = {}
        self.nodes: dict[str, str] = {}
        self._changed = threading.Condition()
        self._synced = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, name="pod-clock", daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> PodClock:
        self._thread.start()
        if not self._synced.wait(60):
            raise SystemExit(f"pod watch did not start: {self._error!r}")
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            await self._watch()

        try:
            asyncio.run(main())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # reported by wait(), which would otherwise hang
            self._error = exc
            with self._changed:
                self._changed.notify_all()

    async def _watch(self) -> None:
        client = HttpClient.from_kubeconfig(self.kubeconfig, user_agent="bench-pods")
        try:
            listed = await client.list(PODS, namespace=self.namespace, label_selector=self.selector)
            version = listed.resource_version
            self._synced.set()
            while True:  # the server ends a watch after its timeout: resume where it stopped
                async for event in client.watch(
                    PODS, namespace=self.namespace, resource_version=version,
                    label_selector=self.selector, timeout_seconds=600,
                ):  # fmt: skip
                    seen = time.monotonic()
                    version = str(event.object["metadata"].get("resourceVersion") or version)
                    if event.type != "BOOKMARK":
                        self._stamp(event.type, event.object, seen)
        finally:
            await client.close()

    def _stamp(self, kind: str, pod: dict[str, Any], seen: float) -> None:
        uid = str(pod["metadata"]["uid"])
        with self._changed:
            if kind == "ADDED" and uid not in self.times:
                self.times[uid] = {"added": seen}
            marks = self.times.get(uid)
            if marks is None:  # existed before the watch: not timed
                return
            status = pod.get("status") or {}
            node = (pod.get("spec") or {}).get("nodeName")
            if node:
                marks.setdefault("scheduled", seen)
                self.nodes[uid] = str(node)
            if status.get("phase") == "Running":
                marks.setdefault("running", seen)
            if _is_ready(pod):
                marks.setdefault("ready", seen)
            if kind == "DELETED":
                marks.setdefault("deleted", seen)
            self._changed.notify_all()

    def count(self, milestone: str) -> int:
        return sum(1 for marks in self.times.values() if milestone in marks)

    def wait(self, milestone: str, n: int, *, timeout: float) -> float:
        """Block until ``n`` pods reached ``milestone``; returns when (monotonic)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.count(milestone) < n:
                if self._error is not None:
                    raise SystemExit(f"pod watch failed: {self._error!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"timed out: {self.count(milestone)}/{n} pods {milestone}")
                self._changed.wait(left)
            return time.monotonic()

    def spans(self, start: str, end: str) -> list[float]:
        """Per pod, seconds from ``start`` to ``end`` (pods that reached both)."""
        with self._changed:
            return [m[end] - m[start] for m in self.times.values() if start in m and end in m]

    def reset(self) -> None:
        with self._changed:
            self.times.clear()
            self.nodes.clear()


# Section 3's stages, in order: (stamp that ends it, label). ``scheduled`` and ``running`` are
# the bench's watch stamps; the others are the agent's and runtime's (berth.runtime.timeline).
STAGES = (
    ("seen", "informer delivery to the agent"),
    ("dequeued", "queueing (wait for a worker)"),
    ("volumes", "volumes (configMap, token)"),
    ("netns", "sandbox: netns"),
    ("cni", "sandbox: CNI ADD"),
    ("sandbox", "sandbox: pod files"),
    ("image", "image (present)"),
    ("bundle", "bundle (rootfs, config)"),
    ("created", "shim + runc create"),
    ("started", "runc start"),
    ("patched", "status patch"),
    ("running", "watch back to the client"),
)
PROFILE_PATH = "/var/lib/berth/agent.prof"
PROFILE_DROPIN = (
    "mkdir -p /etc/systemd/system/berth-agent.service.d && printf "
    f"'[Service]\\nEnvironment=BERTH_AGENT_PROFILE={PROFILE_PATH}\\n' "
    "> /etc/systemd/system/berth-agent.service.d/profile.conf"
)
APISERVER_PROFILE_PATH = "/var/lib/berth/datastore/apiserver.prof"  # its one writable dir
APISERVER_PROFILE_DROPIN = (
    "mkdir -p /etc/systemd/system/berth-apiserver.service.d && printf "
    f"'[Service]\\nEnvironment=BERTH_APISERVER_PROFILE={APISERVER_PROFILE_PATH}\\n' "
    "> /etc/systemd/system/berth-apiserver.service.d/profile.conf"
)
APISERVER_PROFILE_TOGGLE = "systemctl kill -s USR1 --kill-whom=main berth-apiserver"
"""Starts, then stops and writes, the API server's profile (see berth.apiserver.__main__)."""
TIMELINE_DROPIN = (
    "mkdir -p /etc/systemd/system/berth-agent.service.d && printf "
    "'[Service]\\nEnvironment=BERTH_POD_TIMELINE=1\\n' "
    "> /etc/systemd/system/berth-agent.service.d/timeline.conf"
)


def agent_stamps(lab: Lab) -> dict[str, dict[str, Any]]:
    """Every timeline line the lab's agents logged, by pod uid."""
    out: dict[str, dict[str, Any]] = {}
    for host in lab.hosts:
        argv = lab.ssh_argv(
            host.name, ["journalctl", "-u", "berth-agent", "-o", "cat", "--no-pager"]
        )
        text = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False).stdout
        for line in text.splitlines():
            doc = timeline.parse(line)
            if doc is not None:
                out.setdefault(str(doc["uid"]), doc)  # the first: its start
    return out


def stage_spans(marks: dict[str, float]) -> dict[str, float]:
    """Per stage, seconds from the previous stamp present to this one's."""
    spans: dict[str, float] = {}
    prev = marks.get("scheduled")
    for stage, _label in STAGES:
        at = marks.get(stage)
        if at is None or prev is None:
            continue
        spans[stage] = at - prev
        prev = at
    return spans


def print_timeline(per_pod: list[dict[str, float]]) -> None:
    ms = 1000
    print(f"startup timeline, {len(per_pod)} pods: bound -> Running by stage, milliseconds")
    short = [stage[:7] for stage, _ in STAGES]
    print("  per pod (t0 = bound; each column the stage's own time)")
    print(f"  {'pod':>4} " + " ".join(f"{s:>7}" for s in short) + f" {'total':>7}")
    ordered = sorted(per_pod, key=lambda m: m.get("running", 0.0) - m["scheduled"])
    for i, marks in enumerate(ordered):
        spans = stage_spans(marks)
        cells = " ".join(f"{spans[s] * ms:7.0f}" if s in spans else f"{'-':>7}" for s, _ in STAGES)
        total = (marks.get("running", marks["scheduled"]) - marks["scheduled"]) * ms
        print(f"  {i:>4} {cells} {total:7.0f}")
    print(f"  {'stage':40} {'p50':>8} {'p99':>8} {'mean':>8}")
    for stage, label in STAGES:
        values = [sp[stage] for sp in map(stage_spans, per_pod) if stage in sp]
        if values:
            print(f"  {label:40} {pct(values, 0.5) * ms:8.1f} {pct(values, 0.99) * ms:8.1f} "
                  f"{statistics.mean(values) * ms:8.1f}")  # fmt: skip


# Section 3's pod command exits on SIGTERM (the shell traps it; httpd runs as its child), so a
# deletion measures the agent's teardown, not the grace period running out.
SERVE = "trap 'exit 0' TERM; hostname > /www/index.html; httpd -f -p 8080 -h /www & wait"
GRACE_SECONDS = 30  # the default: a pod that waited it out would show as 30 s, not 2
DELETE_GOAL = 2.0  # seconds, 30 pods deleted -> gone from the API and every node
BURSTS = ((30, 2, 1.0), (150, 3, 1.5))  # (pods, nodes, goal p99 created -> Running)


def _node_uids(lab: Lab, hosts: list[str]) -> set[str]:
    """Pod uids with a sandbox left in the runtime's state on ``hosts``."""
    found: set[str] = set()
    for host in hosts:
        argv = lab.ssh_argv(host, ["ls", "-1", "/var/lib/berth/runtime/pods"])
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        found.update(line.strip() for line in out.stdout.splitlines() if line.strip())
    return found


def _host_cpu(lab: Lab) -> dict[str, float]:
    """CPU seconds each lab host (everything in it: agent, shims, runc, CNI plugins, and the
    control plane on n1) used so far, from the machine's cpuacct cgroup: what a burst costs
    whatever else runs on the machine."""
    out: dict[str, float] = {}
    for host in lab.hosts:
        path = Path("/sys/fs/cgroup/cpuacct/berth-lab") / lab.name / host.name / "cpuacct.usage"
        try:
            out[host.name] = int(path.read_text()) / 1e9
        except (OSError, ValueError):
            continue  # a cgroup2-only machine: no figure
        out.update(_agent_cpu(lab, host.name))
        out.update(_control_plane_cpu(lab, host.name))
    return out


CONTROL_PLANE_UNITS = ("apiserver", "scheduler", "controller-manager")
"""The control plane's units (``berth-<name>.service``), on the hosts that run them."""


def _control_plane_cpu(lab: Lab, host: str) -> dict[str, float]:
    """CPU seconds so far of each control-plane unit on ``host`` (keyed ``cp/<name>``; none
    where the unit does not run), from the machine's cgroup2 tree as for the agent."""
    slice_ = Path("/sys/fs/cgroup/unified/berth-lab") / lab.name / host / "payload/system.slice"
    out: dict[str, float] = {}
    for unit in CONTROL_PLANE_UNITS:
        try:
            stat = (slice_ / f"berth-{unit}.service" / "cpu.stat").read_text().split()
        except OSError:
            continue
        out[f"cp/{unit}"] = int(stat[stat.index("usage_usec") + 1]) / 1e6
    return out


AGENT_CGROUP = "payload/system.slice/berth-agent.service"
"""The agent's unit inside a lab host, under the machine's cgroup2 tree of that host: the
agent, the tools it runs (CNI plugins, runc, ip, cp) and the containers' shims."""


def _agent_cpu(lab: Lab, host: str) -> dict[str, float]:
    """CPU seconds so far of ``host``'s agent unit, split (keys suffixed to ``host``):
    ``/agent`` the agent process itself (its Python), ``/tools`` the children it has
    waited for (every CNI plugin, ``runc``, ``ip``, ``cp``, and the shim's first process),
    ``/unit`` the whole unit (``/unit`` minus both: the shims that stay, and the ``runc
    create`` each runs). Read from the machine (it sees the host's processes): no ssh."""
    unit = Path("/sys/fs/cgroup/unified/berth-lab") / lab.name / host / AGENT_CGROUP
    out: dict[str, float] = {}
    try:
        stat = (unit / "cpu.stat").read_text().split()
        out[f"{host}/unit"] = int(stat[stat.index("usage_usec") + 1]) / 1e6
        pids = (unit / "cgroup.procs").read_text().split()
    except (OSError, ValueError):
        return out
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            if b"berth.agent" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        utime, stime, cutime, cstime = (int(f) / ticks for f in fields[11:15])
        out[f"{host}/agent"] = utime + stime
        out[f"{host}/tools"] = cutime + cstime
        out[f"{host}/pid"] = float(pid)
    return out


def _cpu_since(lab: Lab, before: dict[str, float]) -> dict[str, float]:
    now = _host_cpu(lab)
    if any(now.get(k) != v for k, v in before.items() if k.endswith("/pid")):
        # An agent restarted in between: its process figures start again from zero.
        now = {k: v for k, v in now.items() if "/" not in k}
    return {h: now[h] - before[h] for h in before if h in now and not h.endswith("/pid")}


IDLE_SECONDS = 5.0


def _idle_rate(lab: Lab) -> dict[str, float]:
    """CPU seconds per second each host (and agent part) uses with no burst going (leases,
    node status, informers; the control plane on n1): taken off a burst's CPU in proportion
    to how long it ran, so that a burst slowed by the machine's load does not look costlier
    per pod."""
    before = _host_cpu(lab)
    time.sleep(IDLE_SECONDS)
    return {k: v / IDLE_SECONDS for k, v in _cpu_since(lab, before).items()}


def _net_of(idle: dict[str, float], used: dict[str, float], seconds: float) -> dict[str, float]:
    return {k: v - idle.get(k, 0.0) * seconds for k, v in used.items()}


def _set_workers(lab: Lab, c: Any, workers: int) -> None:
    """Every agent with ``workers`` pod workers (its config key), restarted; returns once every
    node is Ready again."""
    for host in lab.hosts:
        command = (
            "sed -i '/^workers:/d' /etc/berth/agent.yaml && "
            f"echo 'workers: {workers}' >> /etc/berth/agent.yaml && "
            "systemctl restart berth-agent"
        )
        subprocess.run(lab.ssh_argv(host.name, [command]), check=True, timeout=120)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        got = c.kubectl("get", "nodes", "-o", "json")
        nodes = json.loads(got.stdout).get("items", []) if got.returncode == 0 else []
        ready = [n for n in nodes if _is_ready(n)]
        if len(ready) == len(lab.hosts):
            time.sleep(2)  # the agents' pod informers list after the node is Ready
            return
        time.sleep(1)
    raise SystemExit("agents not Ready after a restart")


def through_agent(
    lab: Lab,
    work: Path,
    *,
    with_timeline: bool = False,
    workers: tuple[int, ...] = (),
    sizes: tuple[int, ...] = (),
    profile: Path | None = None,
) -> list[dict[str, Any]]:
    """Section 3: pods through API server, scheduler and agent, on the runc nodes `berth apply`
    installs, with berth's smoke image (preloaded on every node by apply). One result per burst
    of :data:`BURSTS` (the 30-pod burst once per ``workers`` value, the agents restarted with
    that many pod workers between): per pod spans (seconds) from a pod watch, wall times of the
    whole Deployment, and the deletion (API and node)."""
    from provisioner.smoke_image import smoke_image  # noqa: PLC0415 - lab-only
    from tests.lab.test_cluster_workloads import Cluster, _web  # noqa: PLC0415 - lab-only

    document: dict[str, Any] = yaml.safe_load(lab.spec_path.read_text())
    document["spec"]["ssh"]["identityFile"] = str(lab.key_path)
    document["spec"]["ssh"]["knownHostsFile"] = str(lab.known_hosts_path)
    document["spec"]["network"] = {"podCIDR": CLUSTER_CIDR, "serviceCIDR": SERVICE_CIDR}
    spec = work / "cluster.yaml"
    spec.write_text(yaml.safe_dump(document, sort_keys=False))
    image = smoke_image().reference
    c = Cluster(lab, work, spec, work / "state", image, {})
    if with_timeline:  # before apply, which loads the agent's unit with this drop-in
        for host in lab.hosts:
            subprocess.run(lab.ssh_argv(host.name, [TIMELINE_DROPIN]), check=True)
    if profile is not None:
        for host in lab.hosts:
            subprocess.run(lab.ssh_argv(host.name, [PROFILE_DROPIN]), check=True)
        subprocess.run(lab.ssh_argv(lab.hosts[0].name, [APISERVER_PROFILE_DROPIN]), check=True)
    hosts = [h.name for h in lab.hosts]
    try:
        applied = c.berth("apply", "-i", str(spec), "--yes")
        if applied.returncode != 0:
            tail = applied.stdout[-3000:] + applied.stderr[-2000:]
            raise SystemExit(f"berth apply failed: {tail}")
        objects = {o["kind"]: o for o in _web(image)}
        c.apply(objects["ConfigMap"])  # the replicas mount it
        deployment = objects["Deployment"]
        template = deployment["spec"]["template"]["spec"]
        template["terminationGracePeriodSeconds"] = GRACE_SECONDS
        container = template["containers"][0]
        container["command"] = ["/bin/sh", "-c", SERVE]
        del container["readinessProbe"]  # Ready = running, as section 1 measures
        selector = ",".join(
            f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items()
        )

        with PodClock(c.kubeconfig, namespace="default", selector=selector) as pods:

            def run(replicas: int, on: list[str]) -> dict[str, Any]:
                pods.reset()
                deployment["spec"]["replicas"] = replicas
                template["affinity"] = {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpressions": [{
                                "key": "kubernetes.io/hostname", "operator": "In", "values": on,
                            }]}]
                        }
                    }
                }  # fmt: skip
                idle = _idle_rate(lab)
                cpu = _host_cpu(lab)
                started = time.monotonic()
                c.apply(deployment)
                ready = pods.wait("ready", replicas, timeout=600)
                up_cpu = _net_of(idle, _cpu_since(lab, cpu), time.monotonic() - started)
                spans = {
                    "running": pods.spans("added", "running"),
                    "ready": pods.spans("added", "ready"),
                    "scheduled": pods.spans("added", "scheduled"),
                    "node": pods.spans("scheduled", "running"),
                }
                spans["first_added"] = [min(m["added"] for m in pods.times.values()) - started]
                spans["last_added"] = [max(m["added"] for m in pods.times.values()) - started]
                per_node = {n: list(pods.nodes.values()).count(n) for n in set(pods.nodes.values())}
                marks = {uid: dict(m) for uid, m in pods.times.items()}
                cpu = _host_cpu(lab)
                gone_from = time.monotonic()
                c.kubectl("delete", "deployment", "web", "--wait=false")
                api_gone = pods.wait("deleted", replicas, timeout=600) - gone_from
                # ... and from the nodes: no sandbox of these pods left in the runtime's state
                # (asked over ssh, ~20 ms a host: the figure is that much coarse).
                deadline = time.monotonic() + 120
                while set(marks) & _node_uids(lab, on):
                    if time.monotonic() > deadline:
                        raise SystemExit("deleted pods still on their nodes after 120 s")
                    time.sleep(0.05)
                node_gone = time.monotonic() - gone_from
                down_cpu = _net_of(idle, _cpu_since(lab, cpu), time.monotonic() - gone_from)
                stamps = agent_stamps(lab) if with_timeline else {}
                per_pod = [
                    {**stamps[uid], **m}
                    for uid, m in marks.items()
                    if uid in stamps and "scheduled" in m
                ]
                return {
                    **spans, "up": ready - started, "down": api_gone, "node_down": node_gone,
                    "nodes": per_node, "timeline": per_pod, "up_cpu": up_cpu,
                    "down_cpu": down_cpu,
                }  # fmt: skip

            results: list[dict[str, Any]] = []
            counts = workers or (0,)
            for count in counts:
                if count:
                    _set_workers(lab, c, count)
                run(len(lab.hosts), hosts)  # warm-up
                for replicas, n_nodes, goal in BURSTS:
                    if n_nodes > len(hosts) or (replicas != BURSTS[0][0] and count != counts[-1]):
                        continue  # the larger bursts run once, with the last worker count
                    if sizes and replicas not in sizes:
                        continue
                    toggle = lab.ssh_argv(hosts[0], [APISERVER_PROFILE_TOGGLE])
                    if profile is not None:  # the API server's profile: the bursts only
                        subprocess.run(toggle, check=True, timeout=60)
                    result = run(replicas, hosts[:n_nodes])
                    if profile is not None:
                        subprocess.run(toggle, check=True, timeout=60)
                        time.sleep(2)  # it writes its stats
                        argv = lab.ssh_argv(hosts[0], ["cat", APISERVER_PROFILE_PATH])
                        got = subprocess.run(argv, capture_output=True, timeout=120, check=True)
                        profile.mkdir(parents=True, exist_ok=True)
                        (profile / f"apiserver-{replicas}.prof").write_bytes(got.stdout)
                    results.append({**result, "workers": count, "goal": goal})
            if profile is not None:
                _fetch_profiles(lab, profile)
            return results
    finally:
        c.berth("destroy", "-i", str(spec), "--yes")


def _fetch_profiles(lab: Lab, into: Path) -> None:
    """Stop every agent (it writes its cProfile stats as it stops) and copy the stats to
    ``into/<host>.prof``."""
    into.mkdir(parents=True, exist_ok=True)
    for host in lab.hosts:
        subprocess.run(lab.ssh_argv(host.name, ["systemctl", "stop", "berth-agent"]), check=True)
        argv = lab.ssh_argv(host.name, ["cat", PROFILE_PATH])
        got = subprocess.run(argv, capture_output=True, timeout=120, check=True)
        (into / f"{host.name}.prof").write_bytes(got.stdout)


def print_burst(agent: dict[str, Any], runtime: list[float] | None) -> None:
    """One burst's figures, beside the runtime-only ones of section 1 when given."""
    ms = 1000
    n = len(agent["running"])
    placed = ", ".join(f"{node} {count}" for node, count in sorted(agent["nodes"].items()))
    pool = f", {agent['workers']} pod workers" if agent["workers"] else ""
    print(f"through the API: Deployment of {n} replicas ({placed}){pool}, image present, ms")
    print("  per pod, t0 = the pod watch sees the ReplicaSet's pod ADDED (not object timestamps)")
    print(f"{'':34} {'p50':>8} {'p99':>8} {'max':>8}")
    rows = [
        ("created -> Running (agent)", agent["running"]),
        ("created -> Ready (agent)", agent["ready"]),
        ("  of which created -> scheduled", agent["scheduled"]),
        ("  of which scheduled -> Running", agent["node"]),
    ]
    if runtime:
        rows.append(("runtime directly (section 1)", runtime))
    for label, values in rows:
        print(f"{label:34} {pct(values, 0.5) * ms:8.1f} {pct(values, 0.99) * ms:8.1f} "
              f"{max(values) * ms:8.1f}")  # fmt: skip
    p99 = pct(agent["running"], 0.99)
    goal = agent["goal"]
    verdict = "meets" if p99 <= goal else "MISSES"
    print(f"goal p99 created -> Running <= {goal:.1f} s: {p99:.2f} s, {verdict} it")
    if runtime:
        node = agent["node"]
        ratio = pct(node, 0.99) / pct(runtime, 0.99)
        mid = pct(node, 0.5) / pct(runtime, 0.5)
        verdict = "meets" if ratio <= 3 else "MISSES"
        print(f"scheduled -> Running / runtime alone: p50 {mid:.1f}x, p99 {ratio:.1f}x "
              f"(goal <= 3x: {verdict} it)")  # fmt: skip
    print(f"{'kubectl apply -> all Ready':34} {agent['up']:8.2f} s")
    down, node_down = agent["down"], agent["node_down"]
    verdict = "meets" if max(down, node_down) <= DELETE_GOAL else "MISSES"
    print(f"{'kubectl delete -> all gone (API)':34} {down:8.2f} s")
    print(f"{'kubectl delete -> all gone (nodes)':34} {node_down:8.2f} s"
          + (f"  goal <= {DELETE_GOAL:.0f} s: {verdict} it" if n <= 30 else ""))  # fmt: skip
    # CPU per pod of each host running pods (n1 also runs the control plane), net of what the
    # host uses idle over as long as the burst ran: load-insensitive.
    # Of which the agent's unit: its Python, the tools it ran, the rest of the unit (shims).
    for label, used in (("start", agent["up_cpu"]), ("delete", agent["down_cpu"])):
        cells = ", ".join(
            f"{h} {used[h] / agent['nodes'][h] * ms:.0f}"
            for h in sorted(used)
            if h in agent["nodes"]
        )
        if cells:
            print(f"{'CPU ms per pod, ' + label + ' (net of idle)':34} {cells}")
        parts = (
            ("agent", "agent process"),
            ("tools", "tools it ran"),
            ("unit", "rest of its unit (shims)"),
        )
        for part, what in parts:
            cells = ", ".join(
                f"{h} {_unit_part(used, h, part) / agent['nodes'][h] * ms:.0f}"
                for h in sorted(agent["nodes"])
                if f"{h}/{part}" in used
            )
            if cells:
                print(f"{'  of which ' + what:34} {cells}")
        # The control plane works for every pod of the burst, wherever it runs.
        cells = ", ".join(
            f"{unit} {used[f'cp/{unit}'] / n * ms:.1f}"
            for unit in CONTROL_PLANE_UNITS
            if f"cp/{unit}" in used
        )
        if cells:
            print(f"{'  control plane, ms per pod':34} {cells}")


def _unit_part(used: dict[str, float], host: str, part: str) -> float:
    """``part`` of ``host``'s agent unit; ``unit``: what neither the agent process nor the
    tools it waited for used."""
    if part != "unit":
        return used[f"{host}/{part}"]
    return used[f"{host}/unit"] - used.get(f"{host}/agent", 0.0) - used.get(f"{host}/tools", 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--timeline", action="store_true", help="per-pod startup stages")
    parser.add_argument("--agent-only", action="store_true", help="only section 3")
    parser.add_argument(
        "--workers",
        default="",
        help="comma-separated pod worker counts: the 30-pod burst once per count (agents "
        "restarted with it), the 150-pod burst with the last",
    )
    parser.add_argument(
        "--bursts", default="", help="comma-separated burst sizes to run (default: all)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="run the agents under cProfile and write their stats to DIR/<host>.prof",
    )
    args = parser.parse_args()
    workers = tuple(int(w) for w in args.workers.split(",") if w.strip())
    sizes = tuple(int(b) for b in args.bursts.split(",") if b.strip())
    require_machine_tools()
    if args.agent_only:
        agent_only(with_timeline=args.timeline, workers=workers, sizes=sizes, profile=args.profile)
        return
    lab = Lab(f"benchpods{os.getpid()}")
    with tempfile.TemporaryDirectory() as tmp, blackhole_routes():
        registry: Registry | None = None
        nodes: list[Node] = []
        try:
            lab.up(3, replace=True)  # sections 1 and 2 use n1 and n2; the 150-pod burst all 3
            registry = Registry(lab.gateway, Path(tmp))
            layout = Path(tmp) / "layout"
            image = registry.push(layout, build_busybox_layout(layout), "bench/busybox:1")
            nodes = setup_nodes(lab, registry.host, download_debs(), ["n1", "n2"])
            for node in nodes:
                node.berth("pull", image)
            with ThreadPoolExecutor(max_workers=2) as pool:
                results = list(pool.map(lambda n: startup(n, image), nodes))
            berth = [t for r in results for t in r["berth"]]
            floor = [t for r in results for t in r["runc"]]

            n1, n2 = nodes
            target = n2.berth("status")["sandboxes"][0]["ip"]
            for node in nodes:
                node.berth("proxy", "--cluster-cidr", CLUSTER_CIDR, stdin=web_service([target]))
            tput = n1.python(
                THROUGHPUT.format(pod_ip=target, cluster_ip=CLUSTER_IP, small=500, big=40)
            )
            for node in nodes:
                teardown_node(node)
            bursts = through_agent(
                lab,
                Path(tmp),
                with_timeline=args.timeline,
                workers=workers,
                sizes=sizes,
                profile=args.profile,
            )
        finally:
            for node in nodes:
                teardown_node(node)
            if registry is not None:
                registry.stop()
            lab.down()

    ms = 1000
    print(f"pod startup, {len(berth)} pods on 2 lab hosts (image present), milliseconds")
    print(f"{'':34} {'p50':>8} {'p99':>8} {'mean':>8}")
    for label, values in (("berth (sandbox+CNI+bundle+runc)", berth), ("bare runc run -d", floor)):
        print(f"{label:34} {pct(values, 0.5) * ms:8.1f} {pct(values, 0.99) * ms:8.1f} "
              f"{statistics.mean(values) * ms:8.1f}")  # fmt: skip
    for phase, label in (
        ("sandbox", "  of which sandbox (netns+CNI)"),
        ("create", "  of which create (bundle+shim)"),
        ("start", "  of which start (+status)"),
    ):
        values = [t for r in results for t in r[phase]]
        print(f"{label:34} {pct(values, 0.5) * ms:8.1f} {pct(values, 0.99) * ms:8.1f} "
              f"{statistics.mean(values) * ms:8.1f}")  # fmt: skip
    print(f"ratio berth/bare runc: p50 {pct(berth, 0.5) / pct(floor, 0.5):.2f}x, "
          f"p99 {pct(berth, 0.99) / pct(floor, 0.99):.2f}x")  # fmt: skip
    print()
    print("throughput n1 -> pod on n2 (new TCP connection per request)")
    print(f"{'':12} {'GET/s (small)':>14} {'MB/s (1.9 MB file)':>20}")
    for label in ("direct", "clusterip"):
        row = tput[label]
        print(f"{label:12} {row['small']['per_s']:14.0f} {row['big']['mb_s']:20.1f}")
    direct, svc = tput["direct"], tput["clusterip"]
    print(f"ratio clusterip/direct: GET/s {svc['small']['per_s'] / direct['small']['per_s']:.2f}x, "
          f"MB/s {svc['big']['mb_s'] / direct['big']['mb_s']:.2f}x")  # fmt: skip
    print()
    # Section 1 starts 15 pods one after another on each host, both hosts at once.
    direct_wall = max(sum(r["berth"]) for r in results)
    print(f"runtime directly (section 1), {len(berth)} pods: wall {direct_wall:.2f} s")
    for agent in bursts:
        print()
        print_burst(agent, berth)
        if args.timeline:
            print()
            print_timeline(agent["timeline"])


def agent_only(
    *,
    with_timeline: bool,
    workers: tuple[int, ...],
    sizes: tuple[int, ...] = (),
    profile: Path | None = None,
) -> None:
    """Section 3 alone (no registry, no runtime-only figures)."""
    lab = Lab(f"benchpods{os.getpid()}")
    with tempfile.TemporaryDirectory() as tmp, blackhole_routes():
        try:
            lab.up(3, replace=True)
            bursts = through_agent(
                lab,
                Path(tmp),
                with_timeline=with_timeline,
                workers=workers,
                sizes=sizes,
                profile=profile,
            )
        finally:
            lab.down()
    for agent in bursts:
        print()
        print_burst(agent, None)
        if with_timeline:
            print()
            print_timeline(agent["timeline"])


if __name__ == "__main__":
    main()
