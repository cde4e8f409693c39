"""Memory and CPU of every berth component on a 3-node lab cluster, idle and with 100 pods per node.

Boots a 3-host lab, ``berth apply``s its spec (runc nodes; the same path as bench/bootstrap.py
and bench/pods.py section 3), then samples every process of each host from this machine (lab
hosts are nspawn containers: their processes are ours to read, found through the host's cgroup):
resident memory (RSS from ``/proc/PID/status``; PSS from ``/proc/PID/smaps_rollup``, which
splits shared pages among their users, so PSS sums honestly where RSS double-counts) and CPU
(``utime + stime`` from ``/proc/PID/stat`` over a measured window, as % of one core). Processes
are told apart by their command line: API server (with SQLite inside it; etcd if the cluster
has one), scheduler, controller manager, agent (the Service proxy and NetworkPolicy sync run
inside it), DNS, ingress controller + HAProxy, LB speaker, VIP, the per-container shims, and
the rest (runc, the pods' own processes, the host's systemd/sshd/journald) shown apart.

Twice: idle (a minute after apply), then with 100 pause-like pods per node (three Deployments
of ``sleep`` from berth's smoke image, one per node by nodeSelector), each beside k3s's
published resource profile and the issue's goals. ``--soak MINUTES`` then keeps the pods
churning (a share of them deleted every few seconds, their ReplicaSets making new ones) and
compares RSS at minute 5 with RSS at the end (leak check: within 10 %).

Also prints Python's start-up cost for each entry point as deployed on a lab host
(``python3 -X importtime``: what a component restart and every container's shim pay).

The load average is printed with the figures: RSS is robust to a loaded machine, idle CPU % is
not. Run as root: ``.venv/bin/python bench/footprint.py [--soak MINUTES] [--window SECONDS]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# The lab helpers live with the lab tests (they are not part of the installed packages).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PODS_PER_NODE = 100
LABEL = "bench-footprint"
MIB = 2**20
MB = 10**6  # the goals are in MB: 250 MB is 238.4 MiB
K3S = {
    # k3s resource profiling, v1.26.5, SQLite datastore, with a workload (the anchors);
    # v1.19's figures in brackets
    "server": "6 % of a core, 1,596 MB (v1.19: 768 MB)",
    "agent": "3 % of a core, 275 MB (v1.19: 256 MB)",
}
CONTROL_PLANE_GOAL_MB = 250.0
CONTROL_PLANE_GOAL_CPU = 5.0
AGENT_GOAL_MB = 80.0
LEAK_TOLERANCE = 0.10

COMPONENTS = (
    "apiserver",
    "etcd",
    "scheduler",
    "controller-manager",
    "agent",
    "dns",
    "ingress",
    "haproxy",
    "lb",
    "vip",
    "shim",
    "runc",
    "pods",
    "host os",
)
"""Every row the bench prints, in order; ``pods`` and ``host os`` are not berth's."""
CONTROL_PLANE = ("apiserver", "scheduler", "controller-manager")
BERTH_MODULES = {
    "berth.apiserver": "apiserver",
    "berth.scheduler": "scheduler",
    "berth.controllers": "controller-manager",
    "berth.agent": "agent",
    "berth.dns": "dns",
    "berth.ingress": "ingress",
    "berth.lb": "lb",
    "berth.vip": "vip",
}
ENTRY_POINTS = tuple(BERTH_MODULES)


# ---- /proc parsing (pure; tests/unit/bench/test_footprint.py) ----------------------------------


@dataclass(frozen=True)
class Stat:
    """The fields of ``/proc/PID/stat`` the bench uses."""

    ppid: int
    ticks: int  # utime + stime, in clock ticks
    start: int  # starttime: tells a reused pid from the process sampled before


def parse_stat(text: str) -> Stat:
    """Parse ``/proc/PID/stat``. The command name (field 2) is in parentheses and may itself
    hold spaces and parentheses, so the fields are counted from the *last* ``)``."""
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): field n is rest[n - 3]
    return Stat(ppid=int(rest[1]), ticks=int(rest[11]) + int(rest[12]), start=int(rest[19]))


def parse_kib(text: str, key: str) -> int | None:
    """The value of ``key:`` (in kB) in a ``/proc`` status-like file, in bytes."""
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0]) * 1024
    return None


def classify(argv: list[str]) -> str | None:
    """The component a command line belongs to, or ``None`` (the caller decides: a pod's own
    process, or the host's)."""
    if not argv:
        return None
    if len(argv) >= 3 and argv[1] == "-m" and argv[2] in BERTH_MODULES:
        return BERTH_MODULES[argv[2]]
    name = os.path.basename(argv[0])
    if any(arg.endswith("berth/runtime/shim.py") for arg in argv[1:3]):
        return "shim"
    if name in ("etcd", "haproxy", "runc"):
        return name
    return None


def importtime_us(stderr: str) -> int:
    """Total import time (microseconds) from ``python -X importtime`` output: the sum of the
    ``self`` column over every row (rows nest; the self times add up to the whole, the
    interpreter's own start-up imports included, which sit at odd levels)."""
    total = 0
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        fields = line[len("import time:") :].split("|")
        if len(fields) == 3 and fields[0].strip().isdigit():  # not the header row
            total += int(fields[0])
    return total


def cpu_percent(ticks: int, seconds: float, hz: int) -> float:
    """CPU ticks over ``seconds`` of wall time, as % of one core."""
    return 100.0 * ticks / hz / seconds if seconds > 0 else 0.0


# ---- sampling ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    host: str
    component: str
    stat: Stat
    rss: int  # bytes
    pss: int | None


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return None  # gone meanwhile


def sample(hosts: Mapping[str, Iterable[int]]) -> dict[int, Proc]:
    """One reading of every process of every host (host name -> its pids)."""
    raw: dict[int, tuple[str, str | None, Stat, int, int | None]] = {}
    for host, pids in hosts.items():
        for pid in pids:
            stat_text = _read(f"/proc/{pid}/stat")
            status = _read(f"/proc/{pid}/status")
            cmdline = _read(f"/proc/{pid}/cmdline")
            if stat_text is None or status is None or cmdline is None:
                continue
            rss = parse_kib(status, "VmRSS")
            if rss is None:  # a kernel thread or a zombie
                continue
            rollup = _read(f"/proc/{pid}/smaps_rollup")
            pss = parse_kib(rollup, "Pss") if rollup else None
            argv = cmdline.rstrip("\0").split("\0")
            raw[pid] = (host, classify(argv), parse_stat(stat_text), rss, pss)
    out: dict[int, Proc] = {}
    for pid, (host, named, stat, rss, pss) in raw.items():
        component = named or ("pods" if _under_shim(pid, raw) else "host os")
        out[pid] = Proc(host, component, stat, rss, pss)
    return out


def _under_shim(pid: int, raw: Mapping[int, tuple[str, str | None, Stat, int, int | None]]) -> bool:
    seen: set[int] = set()
    while pid in raw and pid not in seen:
        seen.add(pid)
        _host, component, stat, _rss, _pss = raw[pid]
        if component == "shim":
            return True
        pid = stat.ppid
    return False


@dataclass
class Usage:
    """One component on one host."""

    processes: int = 0
    rss: int = 0
    pss: int = 0
    cpu: float = 0.0  # % of one core over the window


def measure(host_pids: Any, window: float) -> dict[tuple[str, str], Usage]:
    """Memory at the end of a ``window``-second span and CPU over it, per (host, component).
    ``host_pids()`` returns host name -> pids now."""
    hz = os.sysconf("SC_CLK_TCK")
    before = sample(host_pids())
    started = time.monotonic()
    time.sleep(window)
    after = sample(host_pids())
    seconds = time.monotonic() - started
    usage: dict[tuple[str, str], Usage] = {}
    for pid, proc in after.items():
        row = usage.setdefault((proc.host, proc.component), Usage())
        row.processes += 1
        row.rss += proc.rss
        row.pss += proc.pss if proc.pss is not None else proc.rss
        old = before.get(pid)
        if old is not None and old.stat.start == proc.stat.start:
            row.cpu += cpu_percent(proc.stat.ticks - old.stat.ticks, seconds, hz)
    return usage


# ---- the lab -------------------------------------------------------------------------------------


def host_pids_of(lab: Any) -> Any:
    from provisioner.lab import cgroups  # noqa: PLC0415 - lab-only
    from provisioner.lab.names import HostName, LabName, cgroup_relpath  # noqa: PLC0415

    names = [h.name for h in lab.hosts]

    def now() -> dict[str, set[int]]:
        return {n: cgroups.pids(cgroup_relpath(LabName(lab.name), HostName(n))) for n in names}

    return now


def workload(image: str, node: str, replicas: int) -> dict[str, Any]:
    """A Deployment of pause-like pods (busybox ``sleep``) pinned to ``node``."""
    labels = {"app": LABEL, "node": node}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{LABEL}-{node}", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
                    # sleep as PID 1 ignores SIGTERM: do not wait out 30 s per deleted pod
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "pause",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "command": ["/bin/sleep", "1000000"],
                        }
                    ],
                },
            },
        },
    }


def running_per_node(cluster: Any) -> dict[str, int]:
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "get", "pods", "-l", f"app={LABEL}",
         "-o", "jsonpath={range .items[*]}{.spec.nodeName} {.status.phase}{\"\\n\"}{end}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    counts: dict[str, int] = {}
    for line in result.stdout.splitlines():
        node, _, phase = line.partition(" ")
        if phase == "Running":
            counts[node] = counts.get(node, 0) + 1
    return counts


def start_pods(cluster: Any, nodes: list[str], per_node: int) -> float:
    """Scale to ``per_node`` pods on each node; seconds until all of them are Running."""
    from tests.lab.clusters import wait_for  # noqa: PLC0415 - lab-only

    started = time.monotonic()
    docs = [workload(cluster.image, node, per_node) for node in nodes]
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))

    def all_running() -> bool:
        counts = running_per_node(cluster)
        print(f"  running: {counts}", flush=True)
        time.sleep(5)
        return all(counts.get(n, 0) >= per_node for n in nodes)

    wait_for(f"{per_node} pods Running on each node", all_running, timeout=1800)
    return time.monotonic() - started


def churn_once(cluster: Any, share: float) -> int:
    """Delete ``share`` of the bench's pods (the oldest first); their ReplicaSets replace them."""
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "get", "pods", "-l", f"app={LABEL}",
         "--sort-by=.metadata.creationTimestamp", "-o", "name"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    names = result.stdout.split()
    victims = names[: max(1, int(len(names) * share))]
    if victims:
        subprocess.run(
            ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "delete", "--wait=false",
             *victims],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    return len(victims)


def import_costs(lab: Any, host: str) -> dict[str, tuple[float, float]]:
    """Per entry point as deployed on ``host``: (import time in ms from ``-X importtime``,
    wall ms of the whole ``python3`` run), medians of 3. ``python3`` alone and the shim too."""
    script = r"""
import json, subprocess, sys, time
def run(argv):
    walls, imports = [], []
    for _ in range(3):
        t = time.monotonic()
        p = subprocess.run(argv, capture_output=True, text=True)
        walls.append(time.monotonic() - t)
        imports.append(p.stderr)
    return walls, imports
import berth.runtime.shim as shim
out = {}
entries = %r
for name in entries:
    out[name] = run([sys.executable, "-X", "importtime", "-c", "import %%s.__main__" %% name])
out["shim (python3 -S)"] = run([sys.executable, "-S", "-X", "importtime", shim.__file__])
out["python3 -c pass"] = run([sys.executable, "-X", "importtime", "-c", "pass"])
print(json.dumps(out))
""" % (ENTRY_POINTS,)  # noqa: UP031 - %r of a tuple
    # the agent unit's environment (PYTHONPATH to berth's site, no .pyc writing): as deployed
    env = "$(systemctl show -p Environment --value berth-agent)"
    argv = lab.ssh_argv(host, [f"env {env} python3 -c {_quote(script)}"])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        print(f"import costs unavailable: {done.stderr[-500:]}")
        return {}
    import json  # noqa: PLC0415

    doc = json.loads(done.stdout)
    return {
        name: (
            statistics.median(importtime_us(e) for e in errs) / 1000,
            statistics.median(walls) * 1000,
        )
        for name, (walls, errs) in doc.items()
    }


def _quote(text: str) -> str:
    import shlex  # noqa: PLC0415

    return shlex.quote(text)


# ---- printing ------------------------------------------------------------------------------------


def print_usage(title: str, usage: dict[tuple[str, str], Usage], hosts: list[str]) -> None:
    print(f"\n{title}: per host, RSS MiB / PSS MiB / CPU % of one core (processes)")
    head = "".join(f"{h:>30}" for h in hosts)
    print(f"{'component':20}{head}")
    for component in COMPONENTS:
        cells = []
        for host in hosts:
            u = usage.get((host, component))
            cells.append(
                f"{u.rss / MIB:8.1f} {u.pss / MIB:7.1f} {u.cpu:6.2f}% ({u.processes:>3})"
                if u
                else f"{'-':>30}"
            )
        if any(c.strip() != "-" for c in cells):
            print(f"{component:20}" + "".join(f"{c:>30}" for c in cells))


def control_plane(usage: dict[tuple[str, str], Usage], hosts: list[str]) -> tuple[str, Usage]:
    """The host with the API server and its control plane's totals."""
    for host in hosts:
        if (host, "apiserver") in usage:
            total = Usage()
            for component in CONTROL_PLANE:
                u = usage.get((host, component), Usage())
                total.processes += u.processes
                total.rss += u.rss
                total.pss += u.pss
                total.cpu += u.cpu
            return host, total
    return "?", Usage()


def print_goals(usage: dict[tuple[str, str], Usage], hosts: list[str], *, loaded: bool) -> None:
    host, cp = control_plane(usage, hosts)
    print(f"control plane (API server with SQLite + scheduler + controller manager, {host}): "
          f"RSS {cp.rss / MIB:.0f} MiB ({cp.rss / MB:.0f} MB), PSS {cp.pss / MIB:.0f} MiB, "
          f"CPU {cp.cpu:.2f} %")  # fmt: skip
    mem = "meets" if cp.rss / MB <= CONTROL_PLANE_GOAL_MB else "MISSES"
    cpu = "meets" if cp.cpu <= CONTROL_PLANE_GOAL_CPU else "MISSES"
    print(
        f"  goal <= {CONTROL_PLANE_GOAL_MB:.0f} MB RSS: {mem} it"
        + ("" if loaded else f"; goal <= {CONTROL_PLANE_GOAL_CPU:.0f} % idle: {cpu} it")
    )
    node_side = ("agent", "dns", "ingress", "haproxy", "lb", "shim")
    for h in hosts:
        agent = usage.get((h, "agent"), Usage())
        extra = sum(usage.get((h, c), Usage()).rss for c in node_side)
        shims = usage.get((h, "shim"), Usage())
        per_shim = shims.rss / shims.processes / MIB if shims.processes else 0.0
        verdict = "meets" if agent.rss / MB <= AGENT_GOAL_MB else "MISSES"
        print(f"agent {h}: RSS {agent.rss / MIB:.0f} MiB, CPU {agent.cpu:.2f} %"
              + (f" (goal <= {AGENT_GOAL_MB:.0f} MB with 100 pods: {verdict} it)" if loaded else "")
              + f"; all node components (agent, DNS, ingress + HAProxy, LB, {shims.processes} shims"
              f" at {per_shim:.1f} MiB RSS each) {extra / MIB:.0f} MiB")  # fmt: skip
    print(f"k3s (published): server {K3S['server']}; agent {K3S['agent']}")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (5 min {five:.1f}) on {os.cpu_count()} cores"


# ---- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--window", type=float, default=60.0, help="CPU sampling seconds")
    parser.add_argument("--soak", type=float, default=0.0, help="minutes of pod churn (>= 6)")
    parser.add_argument("--pods", type=int, default=PODS_PER_NODE, help="pods per node")
    parser.add_argument("--name", default=f"footprint{os.getpid()}", help="lab name")
    args = parser.parse_args()
    from provisioner.lab import Lab  # noqa: PLC0415 - lab-only
    from tests.lab.clusters import LabCluster  # noqa: PLC0415 - lab-only

    lab = Lab(args.name)
    with tempfile.TemporaryDirectory(prefix="berth-footprint-") as tmp:
        try:
            lab.up(3, replace=True)
            cluster = LabCluster.apply(lab, Path(tmp))
            hosts = [h.name for h in lab.hosts]
            pids = host_pids_of(lab)
            print(f"costs of Python start-up on {hosts[0]} (median of 3): import ms, run ms")
            for name, (imports, wall) in import_costs(lab, hosts[0]).items():
                print(f"  {name:24} {imports:8.1f} {wall:8.1f}")
            time.sleep(30)  # let apply's own traffic settle
            idle = measure(pids, args.window)
            print_usage(f"idle, {args.window:.0f} s window, {load()}", idle, hosts)
            print_goals(idle, hosts, loaded=False)

            took = start_pods(cluster, hosts, args.pods)
            print(f"\n{args.pods} pods per node Running after {took:.0f} s")
            time.sleep(30)
            busy = measure(pids, args.window)
            print_usage(f"{args.pods} pods per node, {args.window:.0f} s window, {load()}",
                        busy, hosts)  # fmt: skip
            print_goals(busy, hosts, loaded=True)
            if args.soak:
                soak(cluster, pids, hosts, args.soak)
        finally:
            lab.down()


def soak(cluster: Any, pids: Any, hosts: list[str], minutes: float) -> None:
    """Churn pods for ``minutes``; RSS per component at minute 5 vs at the end."""
    print(f"\nsoak: {minutes:.0f} minutes, 5 % of the pods deleted (and replaced) every 20 s")
    started = time.monotonic()
    marks: dict[str, dict[tuple[str, str], Usage]] = {}
    deleted = 0
    while (elapsed := time.monotonic() - started) < minutes * 60:
        minute = int(elapsed // 300) * 5  # a mark every 5 minutes shows the trend, not only ends
        if minute and str(minute) not in marks:
            marks[str(minute)] = sample = measure(pids, 1.0)
            _, cp = control_plane(sample, hosts)
            parts = ", ".join(
                f"{c} {sum(u.rss for (_, comp), u in sample.items() if comp == c) / MIB:.1f}"
                for c in CONTROL_PLANE
            )
            print(f"  minute {minute}: control plane {cp.rss / MIB:.1f} MiB RSS ({parts});"
                  f" {deleted} pods deleted so far, {load()}", flush=True)  # fmt: skip
        deleted += churn_once(cluster, 0.05)
        time.sleep(20)
    marks["end"] = measure(pids, 1.0)
    first = marks.get("5")
    if first is None:
        print("soak shorter than 6 minutes: no minute-5 mark")
        return
    print(f"soak end after {minutes:.0f} min, {deleted} pods deleted and replaced, {load()}")
    print(f"{'component':20}{'host':>6}{'RSS min 5':>12}{'RSS end':>10}{'change':>9}")
    for component in COMPONENTS:
        if component in ("pods", "host os", "runc"):
            continue
        for host in hosts:
            a, b = first.get((host, component)), marks["end"].get((host, component))
            if a is None or b is None or not a.rss:
                continue
            # shims come and go with the pods: compare one shim's RSS, not their sum
            ra, rb = (
                (a.rss / a.processes, b.rss / b.processes)
                if component == "shim"
                else (a.rss, b.rss)
            )
            change = rb / ra - 1
            flag = "" if abs(change) <= LEAK_TOLERANCE else "  > 10 %"
            label = f"{component} (each)" if component == "shim" else component
            print(f"{label:20}{host:>6}{ra / MIB:11.1f}M{rb / MIB:9.1f}M"
                  f"{change * 100:8.1f}%{flag}")  # fmt: skip


if __name__ == "__main__":
    main()
