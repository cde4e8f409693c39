"""Upgrade in place against a real 1+2 lab cluster, with two real builds of berth.

The *old* build is this checkout; the *new* ones are copies of it made by the test with the
version in ``pyproject.toml`` bumped (and, for the broken build, an agent that always reports
``Ready=False``). Each build runs as its own operator process (``python -m
provisioner.cli.main`` with ``PYTHONPATH`` on its tree) and ships its own bundle.

* a skipped minor release and a downgrade are refused before any host changes;
* a broken build: the first node fails its health gate, is rolled back automatically, the
  upgrade halts naming the node, the check and the logs, and the cluster is healthy on the old
  release;
* a good build: every host ends on the new bundle and healthy (``berth verify`` passes but for
  the previous release kept for rollback), while a Deployment of 2 replicas under a
  PodDisruptionBudget, one replica on each worker, never has zero Ready pods as seen through the
  API (real runc containers of the verify smoke image), and a client on n1 hitting its ClusterIP
  Service every 50 ms through the whole upgrade (retrying a refused or reset connection once)
  sees no failed request and replies from both workers;
  ``berth rollback`` brings it back;
* the operator killed half-way: ``--resume`` finishes, and ``berth rollback --restore-snapshot``
  returns every host and the datastore to before the upgrade.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from berth.api.resources import DEPLOYMENTS, PODDISRUPTIONBUDGETS, PODS, SERVICES
from berth.client.http import HttpClient
from provisioner.artifacts.berth_bundle import Bundle
from provisioner.lab import Lab
from provisioner.smoke_image import SERVE_PORT, smoke_image
from provisioner.spec import load_spec
from provisioner.state import ClusterState
from provisioner.upgrade.cluster import SshClusterOps
from provisioner.upgrade.gate import evaluate
from provisioner.upgrade.journal import Journal, RunStatus
from tests.lab import clusters, ledger
from tests.lab.builds import OLD, Build, make_build
from tests.lab.conftest import LabFactory

# the module's cluster is applied inside the first test's setup: 3 hosts, one of them Debian 13
# (its own bundle and packages), on a machine running other lab modules side by side
pytestmark = [pytest.mark.lab, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
NEW = "0.2.0"
LONG_AGO = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


@dataclass
class Cluster:
    lab: Lab
    spec_path: Path
    env: dict[str, str]
    state: ClusterState

    def spec_for(self, version: str) -> Path:
        """The lab's spec with ``spec.version: version`` (next to it: relative paths hold)."""
        path = self.spec_path.with_name(f"cluster-{version}.yaml")
        path.write_text(
            self.spec_path.read_text().replace(f"  version: {OLD}\n", f"  version: {version}\n")
        )
        return path

    def berth(
        self, build: Build | None, *args: str, check: bool = False, timeout: float = 400
    ) -> subprocess.CompletedProcess[str]:
        tree = build.tree if build else ROOT
        result = subprocess.run(
            [sys.executable, "-m", "provisioner.cli.main", *args],
            env={**self.env, "PYTHONPATH": str(tree)}, cwd=tree, capture_output=True,
            text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if check:
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result

    def popen(self, build: Build, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "provisioner.cli.main", *args],
            env={**self.env, "PYTHONPATH": str(build.tree)}, cwd=build.tree,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    def ops(self) -> SshClusterOps:
        spec = load_spec(self.spec_path)
        placeholder = Bundle("0.0.0-000000000000", Path("/dev/null"))
        return SshClusterOps(
            spec, self.state, bundle=placeholder, cache_dir=Path(self.env["BERTH_CACHE_DIR"]),
            gate_timeout=60,
        )  # fmt: skip

    def running(self) -> dict[str, str | None]:
        with self.ops() as ops:
            return ops.running()

    def assert_healthy_on(self, release: str) -> dict[str, str | None]:
        """Every host runs one bundle of ``release``, its units run it, its Node is Ready, the
        API server answers /readyz (the gate's checks, with a deadline)."""
        with self.ops() as ops:
            running = ops.running()
            assert {b.split("-")[0] for b in running.values() if b} == {release}, running
            for host, bundle in running.items():
                assert bundle is not None
                deadline = time.monotonic() + 180  # restarts and a Node's first status: CPU
                while True:
                    failures = evaluate(
                        ops.observe(host), bundle=bundle, since=LONG_AGO,
                        control_plane=ops.is_control_plane(host),
                    )  # fmt: skip
                    if not failures or time.monotonic() > deadline:
                        break
                    time.sleep(1)
                assert failures == [], f"{host}: {failures}"
        return running

    def verify_failures(self, build: Build | None, spec: Path) -> list[str]:
        """``berth verify`` of ``build``: its FAIL lines (smoke pods included)."""
        result = self.berth(build, "verify", "-i", str(spec), timeout=300)
        fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL ")]
        assert (result.returncode == 0) == (not fails), result.stdout[-2000:] + result.stderr
        return fails

    def journal(self) -> Journal:
        journal = Journal.latest(self.state.journal_dir)
        assert journal is not None
        return journal


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Build]:
    base = tmp_path_factory.mktemp("builds")
    return {
        "new": make_build(base, NEW),
        "broken": make_build(base, NEW, broken=True),
        "skip": make_build(base, "0.3.0"),
        "down": make_build(base, "0.0.9"),
    }


@pytest.fixture(scope="module")
def cluster(lab_factory: LabFactory, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    # n3 runs Debian 13 (python 3.13): each upgrade ships it the new release's cp313 bundle
    lab = lab_factory(3, releases=["bookworm", "bookworm", "trixie"])
    base = tmp_path_factory.mktemp("upgrade")
    env = {
        **os.environ,
        "BERTH_STATE_DIR": str(base / "state"),
        "BERTH_CACHE_DIR": str(base / "cache"),
    }
    spec = load_spec(lab.spec_path)
    state = ClusterState.open(spec.name, state_dir=base / "state")
    made = Cluster(lab, lab.spec_path, env, state)
    made.berth(None, "apply", "-i", str(lab.spec_path), "--yes", check=True)
    made.assert_healthy_on(OLD)
    return made


@pytest.fixture(autouse=True)
def starts_on_old(cluster: Cluster) -> None:
    """Each test starts from the old release on every host: a test that failed half-way (its
    rollback never ran) must not turn the next one into a no-op upgrade."""
    running = cluster.running()
    if all(b and b.startswith(f"{OLD}-") for b in running.values()):
        return
    back = cluster.berth(None, "rollback", "-i", str(cluster.spec_path), "--yes")
    assert cluster.assert_healthy_on(OLD), (running, back.stdout[-2000:], back.stderr[-2000:])


def test_skipped_minor_and_downgrade_are_refused_before_any_change(
    cluster: Cluster, builds: dict[str, Build]
) -> None:
    before = cluster.running()
    other = cluster.berth(None, "upgrade", "-i", str(cluster.spec_for(NEW)), "--to", NEW, "--yes")
    assert other.returncode == 3, other.stderr
    assert f"--to {NEW}: this is berth {OLD}, which can only install itself" in other.stderr
    skip = cluster.berth(builds["skip"], "upgrade", "-i", str(cluster.spec_for("0.3.0")),
                         "--to", "0.3.0", "--yes")  # fmt: skip
    assert skip.returncode == 4, skip.stderr
    assert "n1: 0.1.0 -> 0.3.0 skips minor release(s) 0.2; upgrade one minor release at a time" \
        in skip.stderr  # fmt: skip
    assert "upgrade refused before any change: 3 problem(s)" in skip.stderr
    down = cluster.berth(builds["down"], "upgrade", "-i", str(cluster.spec_for("0.0.9")),
                         "--to", "0.0.9", "--yes")  # fmt: skip
    assert down.returncode == 4, down.stderr
    assert "n2: runs 0.1.0; 0.0.9 would be a downgrade (pass --allow-downgrade" in down.stderr
    assert cluster.running() == before
    assert Journal.latest(cluster.state.journal_dir) is None
    with cluster.ops() as ops:
        versions = ops.sh("n1", "ls /opt/berth/versions", "listing bundles")
    assert versions.split() == [b for b in {before["n1"]} if b]


def test_a_broken_build_is_rolled_back_on_its_first_node_and_halts(
    cluster: Cluster, builds: dict[str, Build]
) -> None:
    before = cluster.running()
    # The gate waits its whole timeout for a broken build. 60 s, not 20: in a full make test
    # run n1's restarted API server did not answer /readyz within 20 s, so the last
    # observation could not read the Node, and the report lacked the agent's own Ready=False.
    result = cluster.berth(
        builds["broken"], "upgrade", "-i", str(cluster.spec_for(NEW)), "--to", NEW, "--yes",
        "--gate-timeout", "60",
    )  # fmt: skip
    assert result.returncode == 6, result.stdout + result.stderr
    err = result.stderr
    assert "halted: health gate failed on n1: n1: node-ready" in err
    assert "n1: failed check node-ready: Ready=False (KubeletNotReady" in err
    assert f"n1: rolled back to {before['n1']} automatically; healthy again" in err
    assert "log line(s):" in err
    assert "berth-agent" in err
    assert "berth upgrade --resume" in err
    progress = cluster.journal().replay()
    assert progress.status is RunStatus.HALTED
    assert progress.on_target == set()
    assert progress.done == set()
    assert cluster.assert_healthy_on(OLD) == before
    # n2 and n3 were never touched: no new bundle there
    with cluster.ops() as ops:
        assert ops.sh("n2", "ls /opt/berth/versions", "ls").split() == [before["n2"]]
    # close the halted run: nothing was switched, so nothing to take back
    back = cluster.berth(None, "rollback", "-i", str(cluster.spec_path), "--yes", check=True)
    assert "no host" in back.stdout
    assert cluster.verify_failures(None, cluster.spec_path) == []  # broken bundle removed too


class ReadyWatcher:
    """Polls the Deployment's pods through the API while the upgrade runs: the least number
    of Ready pods seen, and how many polls could not reach the API (its restart). It also
    records where the ``ledger`` StatefulSet's pod is at each poll: (uid, node or "")."""

    def __init__(self, kubeconfig: Path, name: str) -> None:
        self.kubeconfig = kubeconfig
        self.name = name
        self.samples: list[int] = []
        self.ledger: list[tuple[str, str]] = []
        self.unreachable = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ReadyWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        async def loop() -> None:
            client = HttpClient.from_kubeconfig(self.kubeconfig)
            try:
                while not self._stop.is_set():
                    try:
                        pods = await client.list(
                            PODS, namespace="default",
                            label_selector=f"app in ({self.name},{ledger.NAME})",
                        )  # fmt: skip
                        apps = [(p["metadata"]["labels"]["app"], p) for p in pods.items]
                        self.samples.append(sum(_ready(p) for a, p in apps if a == self.name))
                        self.ledger += [
                            (str(p["metadata"]["uid"]), str(p["spec"].get("nodeName") or ""))
                            for a, p in apps if a == ledger.NAME
                        ]  # fmt: skip
                    except Exception:
                        self.unreachable += 1
                    await asyncio.sleep(0.2)
            finally:
                await client.close()

        asyncio.run(loop())


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


NOT_ON_N1 = {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["n1"]}


def _pod_names(kubeconfig: Path, app: str) -> list[str]:
    async def names() -> list[str]:
        client = HttpClient.from_kubeconfig(kubeconfig)
        try:
            pods = await client.list(PODS, namespace="default", label_selector=f"app={app}")
            return [str(p["metadata"]["name"]) for p in pods.items]
        finally:
            await client.close()

    return asyncio.run(names())


def _deploy(kubeconfig: Path, name: str) -> tuple[str, dict[str, str]]:
    """A 2-replica Deployment under a PodDisruptionBudget and a ClusterIP Service over it;
    once both replicas are Ready: the Service's ClusterIP and the node of each replica."""
    body = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": 2, "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    # on the two workers, one replica each (the scheduler spreads a workload's
                    # pods); n1 stays free for the client, whose host is upgraded too
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                        {"nodeSelectorTerms": [{"matchExpressions": [NOT_ON_N1]}]},
                    }},
                    "terminationGracePeriodSeconds": 10,
                    "containers": [{
                        # the verify smoke image every runc node holds (busybox httpd): no registry
                        "name": "web", "image": smoke_image().reference, "imagePullPolicy": "Never",
                        "command": ["/bin/sh", "-c", SERVE_NODE_NAME],
                        "env": [{"name": "NODE_NAME",
                                 "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                        "ports": [{"containerPort": SERVE_PORT, "name": "http"}],
                        # endpoints follow readiness: a replica is a backend once it answers
                        "readinessProbe": {"httpGet": {"path": "/", "port": SERVE_PORT},
                                           "periodSeconds": 1},
                    }],
                },
            },
        },
    }  # fmt: skip

    budget = {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": name}}},
    }  # fmt: skip

    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": name},
                 "ports": [{"port": 80, "targetPort": "http", "protocol": "TCP"}]},
    }  # fmt: skip

    async def create_and_wait() -> tuple[str, dict[str, str]]:
        client = HttpClient.from_kubeconfig(kubeconfig)
        try:
            await client.create(DEPLOYMENTS, body, namespace="default")
            # as an operator would: the drain's evictions must leave one replica running
            await client.create(PODDISRUPTIONBUDGETS, budget, namespace="default")
            created = await client.create(SERVICES, service, namespace="default")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                pods = await client.list(PODS, namespace="default", label_selector=f"app={name}")
                ready = [p for p in pods.items if _ready(p)]
                if len(ready) >= 2:
                    nodes = {str(p["metadata"]["name"]): str(p["spec"]["nodeName"]) for p in ready}
                    return str(created["spec"]["clusterIP"]), nodes
                await asyncio.sleep(0.5)
            raise AssertionError(f"deployment {name} never had 2 ready pods")
        finally:
            await client.close()

    return asyncio.run(create_and_wait())


# busybox httpd behind a shell that serves this replica's node name and exits at once on
# SIGTERM (a drain's eviction) - no preStop-style grace sleep: the Service must have dropped the
# replica before the agent stops it. (A shell that is PID 1 ignores an untrapped SIGTERM, which
# would hold every eviction until the SIGKILL at the end of the grace period.)
SERVE_NODE_NAME = (
    f"mkdir -p /tmp/www; echo $NODE_NAME > /tmp/www/index.html; "
    f"httpd -f -p {SERVE_PORT} -h /tmp/www & server=$!; "
    "trap 'kill $server; exit 0' TERM; wait $server"
)

# The client on a lab host: GET the Service every 50 ms for the whole upgrade, one line per
# request (wall time, ok NODE | error KIND, attempts). Retry policy, as the issue's "clients that
# retry": a refused or reset connection is retried once, immediately; a timeout (2 s) or any
# other error is a failure. It stops when STOP exists, or after a time bound if the test dies.
SERVICE_CLIENT = """
import os, sys, time, urllib.error, urllib.request
url, log, stop, bound = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
deadline = time.monotonic() + bound
with open(log, "w", buffering=1) as out:
    while time.monotonic() < deadline and not os.path.exists(stop):
        started = time.time()
        for attempt in (1, 2):
            try:
                with urllib.request.urlopen(url, timeout=2) as reply:
                    result = "ok " + reply.read().decode().strip()
                break
            except Exception as error:
                cause = error.reason if isinstance(error, urllib.error.URLError) else error
                result = "error " + type(cause).__name__
                if not isinstance(cause, (ConnectionRefusedError, ConnectionResetError)):
                    break
        out.write(f"{started:.3f} {result} {attempt}\\n")
        time.sleep(0.05)
"""


@dataclass(frozen=True)
class ClientRun:
    """What the Service client saw: one (wall time, outcome, attempts) per request."""

    lines: list[tuple[float, str, int]]

    @classmethod
    def parse(cls, log: str) -> ClientRun:
        lines = []
        for line in log.splitlines():
            stamp, *outcome, attempts = line.split()
            lines.append((float(stamp), " ".join(outcome), int(attempts)))
        return cls(lines)

    @property
    def failed(self) -> list[tuple[float, str, int]]:
        return [line for line in self.lines if not line[1].startswith("ok ")]

    @property
    def retried(self) -> int:
        return sum(attempts > 1 for _, _, attempts in self.lines)

    @property
    def responders(self) -> set[str]:
        return {outcome.removeprefix("ok ") for _, outcome, _ in self.lines} - {
            o for _, o, _ in self.failed
        }

    @property
    def max_gap(self) -> float:
        """The longest time between two successive requests' starts (a slow reply shows)."""
        stamps = [stamp for stamp, _, _ in self.lines]
        return max((b - a for a, b in itertools.pairwise(stamps)), default=0.0)


class ServiceClient:
    """:data:`SERVICE_CLIENT` running in the background on ``host`` while the block runs."""

    def __init__(self, cluster: Cluster, host: str, url: str) -> None:
        self.cluster, self.host, self.url = cluster, host, url
        self.run = ClientRun([])

    def __enter__(self) -> ServiceClient:
        argv = f"{shlex.quote(SERVICE_CLIENT)} {self.url} {CLIENT_LOG} {CLIENT_STOP} 1200"
        start = (
            f"rm -f {CLIENT_LOG} {CLIENT_STOP} && "
            f"setsid nohup python3 -c {argv} >/dev/null 2>&1 </dev/null &"
        )
        with self.cluster.ops() as ops:
            ops.sh(self.host, start, "starting the Service client")
        return self

    def wait_started(self, *, within: float = 90) -> None:
        """Until the client has logged a request (its python3 starts on a loaded host)."""

        def logged() -> bool:
            with self.cluster.ops() as ops:
                out = ops.sh(self.host, f"wc -l < {CLIENT_LOG} 2>/dev/null || echo 0",
                             "reading the Service client's log")  # fmt: skip
            return int(out.strip() or 0) > 0

        clusters.wait_for("the Service client's first request", logged, timeout=within)

    def __exit__(self, *exc: object) -> None:
        with self.cluster.ops() as ops:
            log = ops.sh(self.host, f"touch {CLIENT_STOP}; sleep 3; cat {CLIENT_LOG} || true",
                         "stopping the Service client")  # fmt: skip
        self.run = ClientRun.parse(log)


CLIENT_LOG, CLIENT_STOP = "/tmp/berth-service-client.log", "/tmp/berth-service-client.stop"


def test_a_rolling_upgrade_keeps_the_workload_up_and_rollback_returns(
    cluster: Cluster, builds: dict[str, Build]
) -> None:
    before = cluster.running()
    kubeconfig = cluster.state.kubeconfig_dir / "admin.conf"
    cluster_ip, placed = _deploy(kubeconfig, "web")
    assert sorted(placed.values()) == ["n2", "n3"], f"replicas not spread: {placed}"
    # a StatefulSet with data in a berth-local volume on a worker (n1 runs the client)
    keeper = ledger.Ledger(cluster.lab, kubeconfig)
    off_n1 = {"nodeSelectorTerms": [{"matchExpressions": [NOT_ON_N1]}]}
    first = keeper.create(
        placement={
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": off_n1}}
        }
    )
    assert keeper.pinned_node(first.volume) == [first.node]
    url = f"http://{cluster_ip}/"
    with ServiceClient(cluster, "n1", url) as client, ReadyWatcher(kubeconfig, "web") as watcher:
        # the client is under way before the first drain (polled: 'sleep 2' was not always
        # enough for a python3 start on a loaded host, and the test then failed on
        # 'the client ran through the whole upgrade')
        client.wait_started()
        began = time.time()
        cluster.berth(builds["new"], "upgrade", "-i", str(cluster.spec_for(NEW)), "--to", NEW,
                      "--yes", check=True)  # fmt: skip
        ended = time.time()
    run = client.run
    print(
        f"service client: {len(run.lines)} requests, {len(run.failed)} failed, "
        f"{run.retried} retried once, max gap {run.max_gap:.2f}s, from {sorted(run.responders)}; "
        f"upgrade {ended - began:.1f}s"
    )
    assert len(run.lines) > 100, f"the client ran {len(run.lines)} request(s)"
    # the client ran through the whole upgrade (the lab hosts share this machine's clock)
    assert run.lines[0][0] < began, (began, run.lines[0])
    assert run.lines[-1][0] > ended, (ended, run.lines[-1])
    assert run.failed == [], f"{len(run.failed)} of {len(run.lines)} failed: {run.failed[:20]}"
    assert run.responders >= {"n2", "n3"}, run.responders
    # both first replicas were evicted by the drains while the client ran: replaced, not kept
    assert set(_pod_names(kubeconfig, "web")).isdisjoint(placed), placed
    after = cluster.assert_healthy_on(NEW)
    assert len(set(after.values())) == 1
    # verify passes except that the previous release is kept beside the new one, on purpose:
    # it is what `berth rollback` switches back to
    kept = {f"FAIL [{h}] no other berth versions left: {before[h]}" for h in before}
    assert set(cluster.verify_failures(builds["new"], cluster.spec_for(NEW))) <= kept
    assert cluster.journal().replay().status is RunStatus.COMPLETED
    assert watcher.samples, "the API never answered during the upgrade"
    assert min(watcher.samples) >= 1, f"no ready replica at some point: {watcher.samples}"
    snapshot = cluster.journal().replay().snapshot
    assert snapshot is not None
    assert Path(snapshot).stat().st_mode & 0o777 == 0o600
    # The drain of its node evicted ledger-0; the replacement waited unscheduled while the node
    # was cordoned (its volume is there and nowhere else), then came back on it to its data.
    again = keeper.wait_running(other_than=first.uid, timeout=240)
    assert (again.node, again.volume) == (first.node, first.volume)
    assert len(again.starts) == 2, again.starts
    assert again.starts[0] == first.starts[0], again.starts
    waited = [uid for uid, node in watcher.ledger if uid != first.uid and not node]
    assert waited, f"the replacement was never seen waiting for its node: {watcher.ledger}"
    assert {node for _, node in watcher.ledger} <= {"", first.node}, watcher.ledger
    cluster.berth(None, "rollback", "-i", str(cluster.spec_path), "--yes", check=True)
    assert cluster.assert_healthy_on(OLD) == before
    assert cluster.journal().replay().status is RunStatus.ROLLED_BACK
    still = keeper.wait_running(timeout=120)  # a rollback restarts the agents, drains nothing
    assert still.starts[:2] == again.starts, still.starts
    keeper.delete(still)


def _wait_for_step(
    journal_dir: Path, host: str, step: str, proc: subprocess.Popen[str], *, after: Path
) -> None:
    """Wait until a journal other than ``after`` (the previous run's) records ``step`` for
    ``host``."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        latest = Journal.latest(journal_dir)
        fresh = latest is not None and latest.path != after
        if fresh and latest and any(r.host == host and r.step == step for r in latest.records()):
            return
        assert proc.poll() is None, "the upgrade finished before it could be killed"
        time.sleep(0.05)
    raise AssertionError(f"no journal line {step} for {host}")


def test_a_killed_upgrade_resumes_then_rolls_back_with_the_snapshot(
    cluster: Cluster, builds: dict[str, Build]
) -> None:
    before = cluster.running()
    spec = str(cluster.spec_for(NEW))
    previous_run = cluster.journal().path
    with cluster.popen(builds["new"], "upgrade", "-i", spec, "--to", NEW, "--yes") as proc:
        try:
            _wait_for_step(cluster.state.journal_dir, "n2", "switched", proc, after=previous_run)
        finally:
            os.kill(proc.pid, signal.SIGKILL)  # the operator's process dies mid-upgrade
            proc.wait(30)
    progress = cluster.journal().replay()
    assert progress.status is RunStatus.RUNNING
    assert progress.done == {"n1"}
    assert "n2" in progress.on_target
    resumed = cluster.berth(builds["new"], "upgrade", "-i", spec, "--resume", "--yes",
                            check=True)  # fmt: skip
    assert "resuming upgrade" in resumed.stdout
    assert "n1: runs" not in resumed.stdout  # n1 was done before the kill: not redone
    cluster.assert_healthy_on(NEW)
    assert cluster.journal().replay().status is RunStatus.COMPLETED
    records = [json.loads(r.to_json()) for r in cluster.journal().records()]
    assert [r["step"] for r in records].count("resumed") == 1
    cluster.berth(None, "rollback", "-i", str(cluster.spec_path), "--restore-snapshot", "--yes",
                  check=True)  # fmt: skip
    assert cluster.assert_healthy_on(OLD) == before
    steps = [r.step for r in cluster.journal().records()]
    assert "snapshot-restored" in steps
    assert cluster.verify_failures(None, cluster.spec_path) == []
