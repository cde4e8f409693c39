"""An HA cluster by ``berth apply`` on lab hosts: three control-plane hosts on a 3-member etcd
(``datastore: etcd``) and one worker, every host with ``berth-lb`` in front of the three API
servers.

The control plane mixes releases: n1 runs Debian 13 (trixie: python 3.13), n2 and n3 Debian 12
(bookworm: python 3.11), the worker n4 Debian 12. etcd members of 3.4 and 3.5 may share a
cluster only mid-upgrade, so every member runs Debian 13's etcd 3.5 (one etcd release shipped to
every member, the newest of their releases): an HA cluster with one Debian 13 member, through
apply, faults, upgrade (each host its own bundle), rollback and destroy. tests/lab/test_ha.py
keeps the etcd layer on Debian 12's etcd 3.4.

* apply builds it: every node Ready, each host on its release's bundle, Debian 13's etcd 3.5 on
  every member and all three healthy, ``kubernetes`` Endpoints list the three API servers, a
  second apply changes nothing;
* power cut of the control-plane host leading the controller manager: the API keeps serving
  reads and writes through the other two within 10 s, the controller manager's leadership
  moves, and a Deployment scaled during the outage converges;
* power cut of the host holding the API VIP (``apiServer.vip``, which the admin kubeconfig
  dials): a client writing through the VIP is answered again by another host within seconds, and
  kubectl keeps working with the same kubeconfig;
* partition of one control-plane host from the other two: its API server refuses writes (no
  split brain) while the majority keeps accepting them, and it catches up once healed;
* a StatefulSet keeps its data in a berth-local volume on the worker through all of it (the
  upgrade's drain of its node included, and the rollback to the etcd snapshot);
* destroy leaves every host as it was before berth (a snapshot taken before the first apply):
  no etcd unit mask, ``/var/lib/etcd``, etcd or node packages, ``/run/berth`` or CNI state.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client
from kubernetes import config as kconfig
from kubernetes.client import ApiException

from provisioner.lab import Lab, run
from provisioner.phases.etcd.created import was_created
from provisioner.smoke_image import smoke_image
from provisioner.state import ClusterState
from tests.lab import clusters, ledger
from tests.lab.builds import OLD, make_build
from tests.lab.clusters import admin_client_for
from tests.lab.conftest import LabFactory
from tests.lab.host_snapshot import Snapshot, differences, snapshot

# per test, the module's lab boot included in the first: the upgrade test alone runs an upgrade
# (500 s bound) and a rollback (600 s bound); a hang guard, sized for a loaded machine
pytestmark = [pytest.mark.lab, pytest.mark.timeout(1500)]

BERTH = [sys.executable, "-m", "provisioner.cli.main"]
REPO = Path(__file__).resolve().parents[2]
CONTROL_PLANE = ("n1", "n2", "n3")
NEW = "0.2.0"
RELEASES = ("trixie", "bookworm", "bookworm", "bookworm")  # n1..n4
DEBIAN_12 = "Debian GNU/Linux 12 (bookworm)"
DEBIAN_13 = "Debian GNU/Linux 13 (trixie)"
ETCDCTL = (
    "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/berth/etcd/pki/ca.crt"
    " --cert=/etc/berth/etcd/pki/client.crt --key=/etc/berth/etcd/pki/client.key"
)
# Seconds without an acknowledged write through the VIP after a power cut of its holder. The
# nominal move is ~4-6 s: the 4 s lease, a 0.5 s retry, an etcd election when the victim also
# led etcd, the writer's 1 s request bound. With the earlier 2 s lease it measured 0.1-3.8 s on
# the busy shared machine and 8.3 s once in a full `make test` run; the lease grew by 2 s (so
# that renewals survive a loaded API server), the budget by the same. 14 s still fails a holder
# that waits for anything like Kubernetes' default 15 s lease, or one that never lets go.
VIP_MOVE_BUDGET = 14.0
SERVE_BUDGET = 10.0  # seconds after a power cut until the API answers reads and writes again
# for work with no time promise that depends on CPU (pods, elections after a heal, propagation):
# generous, the machine may be loaded by other labs
CONVERGE_BUDGET = 120.0
T = TypeVar("T")


@dataclass
class HaCluster:
    lab: Lab
    workdir: Path
    state_dir: Path
    commit: str
    before: dict[str, Snapshot]
    """Each host as it was before berth's first apply."""
    ledger_first: ledger.Record | None = None
    """The ledger StatefulSet's first pod, once made."""

    @property
    def spec_path(self) -> Path:
        document: dict[str, Any] = yaml.safe_load(self.lab.spec_path.read_text())
        body = document["spec"]
        body["ssh"]["identityFile"] = str(self.lab.key_path)
        body["ssh"]["knownHostsFile"] = str(self.lab.known_hosts_path)
        # the product default (10 s): an SSH handshake with a busy lab host can take seconds
        body["ssh"].update(connectTimeout=10, retries=1)
        for host in body["hosts"]:
            cp = host["name"] in CONTROL_PLANE
            host["roles"] = ["control-plane", "worker"] if cp else ["worker"]
        body["datastore"] = {"type": "etcd"}
        body["apiServer"] = {"vip": self.vip}
        path = self.workdir / "cluster-ha.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    @property
    def vip(self) -> str:
        """The API VIP: a free address of the lab's subnet (hosts are .11 and up)."""
        return str(ipaddress.ip_network(self.lab.subnet).network_address + 200)

    @property
    def admin_kubeconfig(self) -> Path:
        return self.state_dir / self.lab.name / "kubeconfigs" / "admin.conf"

    def berth(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "BERTH_STATE_DIR": str(self.state_dir),
            "BERTH_BUNDLE_SOURCE": self.commit,
        }
        return subprocess.run(
            [*BERTH, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
        )

    def api(self, host: str) -> client.ApiClient:
        """An admin client dialling ``host``'s API server directly (not the spec endpoint)."""
        return admin_client_for(
            self.state_dir / self.lab.name / "kubeconfigs" / "admin.conf",
            self.lab.host(host).address,
            self.workdir,
            host,
        )

    def core(self, host: str) -> Any:
        return client.CoreV1Api(self.api(host))

    def apps(self, host: str) -> Any:
        return client.AppsV1Api(self.api(host))

    def sh(self, host: str, command: str) -> str:
        code, out, err = run(self.lab, host, command)
        assert code == 0, f"{host}: {command}: {err}"
        return out


@pytest.fixture(scope="module")
def ha(lab_factory: LabFactory, tmp_path_factory: pytest.TempPathFactory) -> HaCluster:
    lab = lab_factory(len(RELEASES), releases=RELEASES)
    work = tmp_path_factory.mktemp("ha-cluster")
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    before = {host: snapshot(lab, host) for host in (*CONTROL_PLANE, "n4")}
    return HaCluster(lab, work, work / "state", commit, before)


def _until(what: str, budget: float, probe: Callable[[], T | None]) -> tuple[T, float]:
    """Call ``probe`` until it returns something (exceptions count as not yet); returns it
    with the seconds it took."""
    started = time.monotonic()
    last: BaseException | None = None
    while True:
        try:
            result = probe()
        except (ApiException, OSError, Exception) as exc:  # the API is down: try again
            last, result = exc, None
        if result is not None:
            return result, time.monotonic() - started
        if time.monotonic() - started > budget:
            raise AssertionError(f"{what}: not within {budget:.0f} s (last error: {last!r})")
        time.sleep(0.25)


def _ready(node: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def _all_serving(ha: HaCluster) -> None:
    """Wait until every control-plane host's API server answers: each fault test starts from
    a whole cluster, even when the test before it failed before waiting for its victim to
    come back (in one CI run, a failed VIP test left n1 restarting and the next two tests met
    its refused connections)."""
    for host in CONTROL_PLANE:
        core = ha.core(host)
        _until(f"{host}'s API server serves", CONVERGE_BUDGET, core.list_node)


def _create_configmap(core: Any, name: str, **kwargs: Any) -> bool:
    """Create ConfigMap ``name``; True once it exists. A retry of a create whose answer was
    lost (timed out, but committed) meets 409 AlreadyExists: that is a success too."""
    try:
        core.create_namespaced_config_map("default", _configmap(name), **kwargs)
    except ApiException as exc:
        if exc.status != 409:
            raise
    return True


def _holder(ha: HaCluster, via: str, lease: str) -> str:
    """The host whose process holds ``lease`` (identities are ``<hostname>_<pid>``)."""
    coordination: Any = client.CoordinationV1Api(ha.api(via))
    obj = coordination.read_namespaced_lease(lease, "kube-system")
    return str(obj.spec.holder_identity).split("_", 1)[0]


def _deployment(replicas: int) -> dict[str, Any]:
    labels = {"app": "ha-web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "ha-web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    # on the worker, which no fault touches: convergence is the control
                    # plane's work, not a node's
                    "nodeSelector": {"kubernetes.io/hostname": "n4"},
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "web",
                            "image": smoke_image().reference,
                            "imagePullPolicy": "Never",
                            "command": ["/bin/sh", "-c", "exec sleep 3600"],
                        }
                    ],
                },
            },
        },
    }


def _configmap(name: str) -> client.V1ConfigMap:
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name), data={"at": str(time.time())}
    )


def _abis(ha: HaCluster, host: str) -> set[str]:
    """The CPython tags of the compiled modules in the bundle ``host`` runs (its wheels)."""
    found = ha.sh(host, "find /opt/berth/current/site/ -name '*.cpython-*-x86_64-linux-gnu.so'")
    return {line.rsplit(".cpython-", 1)[1].split("-")[0] for line in found.split()}


def _healthy_members(ha: HaCluster) -> set[str] | None:
    """The addresses of the etcd members ``etcdctl endpoint health --cluster`` run on n2 finds
    healthy, once all three are (its plain lines read the same in etcd 3.4 and 3.5:
    ``https://10.0.0.1:2379 is healthy: successfully committed proposal ...``)."""
    code, out, _ = run(ha.lab, "n2", f"{ETCDCTL} endpoint health --cluster")
    ok = {line.split()[0] for line in out.splitlines() if " is healthy" in line}
    return {e.split("//")[1].rsplit(":", 1)[0] for e in ok} if code == 0 and len(ok) == 3 else None


# a cold HA apply (three members joined one at a time, two bundles, then verify) took 8.5 min,
# and then over 10, at load 70-116 on this 2-core machine
def test_apply_builds_three_api_servers_on_etcd_behind_every_hosts_balancer(
    ha: HaCluster,
) -> None:
    result = ha.berth("apply", "-i", str(ha.spec_path), "--yes", timeout=1300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # verify's smoke lines: how long each node waited for every pod behind the smoke Service
    print("\n".join(line for line in result.stdout.splitlines() if "smoke" in line))
    core = ha.core("n2")
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert sorted(nodes) == ["n1", "n2", "n3", "n4"]
    assert all(_ready(n) for n in nodes.values())
    assert {name: n.status.node_info.os_image for name, n in nodes.items()} == {
        "n1": DEBIAN_13, "n2": DEBIAN_12, "n3": DEBIAN_12, "n4": DEBIAN_12,
    }  # fmt: skip
    # each host runs the bundle built for its own python3
    assert {host: _abis(ha, host) for host in nodes} == {
        "n1": {"313"}, "n2": {"311"}, "n3": {"311"}, "n4": {"311"},
    }  # fmt: skip
    # Debian 13's etcd .debs on every member, the Debian 12 ones included, serving one cluster
    query = "dpkg-query -W -f '${Package} ${Version}\\n' etcd-server etcd-client"
    for host in CONTROL_PLANE:
        assert ha.sh(host, "etcd --version").startswith("etcd Version: 3.5."), host
        shipped = dict(line.split() for line in ha.sh(host, query).splitlines())
        assert sorted(shipped) == ["etcd-client", "etcd-server"], f"{host}: {shipped}"
        assert all(v.startswith("3.5.") for v in shipped.values()), f"{host}: {shipped}"
    members, _ = _until("every etcd member healthy", CONVERGE_BUDGET, lambda: _healthy_members(ha))
    assert members == {ha.lab.host(h).address for h in CONTROL_PLANE}
    for host in ("n1", "n2", "n3", "n4"):
        assert ha.sh(host, "systemctl is-active berth-lb").strip() == "active"
        # the agent dials its own balancer
        agent = ha.sh(host, "cat /etc/berth/agent.yaml")
        assert "/etc/berth/kubeconfigs/lb/agent.conf" in agent
    addresses = {ha.lab.host(h).address for h in CONTROL_PLANE}

    def endpoints() -> bool | None:
        ep = core.read_namespaced_endpoints("kubernetes", "default")
        listed = {a.ip for s in ep.subsets or [] for a in s.addresses or []}
        return True if listed == addresses else None

    _until("the kubernetes Endpoints list the three API servers", CONVERGE_BUDGET, endpoints)
    again = ha.berth("apply", "-i", str(ha.spec_path), "--yes")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    changed = [line for line in again.stdout.splitlines() if line.startswith("[")]
    assert "plan: 0 change(s)" in again.stdout, "\n".join(changed)


def test_a_statefulset_writes_to_a_local_volume_on_the_worker(ha: HaCluster) -> None:
    """Data the faults below must not lose: the ledger on n4 (the worker no power cut
    touches; the upgrade drains it)."""
    keeper = ledger.Ledger(ha.lab, ha.admin_kubeconfig)
    first = keeper.create(placement={"nodeSelector": {"kubernetes.io/hostname": "n4"}})
    assert first.node == "n4"
    assert keeper.pinned_node(first.volume) == ["n4"]
    ha.ledger_first = first


def test_power_cut_of_a_control_plane_host_the_others_keep_serving(ha: HaCluster) -> None:
    _all_serving(ha)
    apps = ha.apps("n2")
    apps.create_namespaced_deployment("default", _deployment(2))
    _until(
        "the Deployment is ready before the fault",
        CONVERGE_BUDGET,
        lambda: (
            True
            if (apps.read_namespaced_deployment("ha-web", "default").status.ready_replicas or 0)
            == 2
            else None
        ),
    )
    victim = _holder(ha, "n2", "kube-controller-manager")
    assert victim in CONTROL_PLANE
    survivor = next(h for h in CONTROL_PLANE if h != victim)
    core = ha.core(survivor)
    apps = ha.apps(survivor)
    ha.lab.kill(victim)
    try:
        _, read_after = _until(
            "a read through a surviving API server", SERVE_BUDGET, core.list_node
        )
        _, write_after = _until(
            "a write through a surviving API server",
            SERVE_BUDGET,
            lambda: _create_configmap(core, "after-cut"),
        )
        assert read_after < SERVE_BUDGET
        assert write_after < SERVE_BUDGET
        apps.patch_namespaced_deployment_scale("ha-web", "default", {"spec": {"replicas": 4}})
        new_leader, moved_after = _until(
            "the controller manager's leadership moves",
            CONVERGE_BUDGET,  # a 15 s lease, then an election on a loaded machine
            lambda: (
                h if (h := _holder(ha, survivor, "kube-controller-manager")) != victim else None
            ),
        )
        assert new_leader in CONTROL_PLANE
        _until(
            "the Deployment scaled during the outage converges",
            CONVERGE_BUDGET,
            lambda: (
                True
                if (apps.read_namespaced_deployment("ha-web", "default").status.ready_replicas or 0)
                == 4
                else None
            ),
        )
        print(
            f"power cut of {victim}: reads after {read_after:.1f} s, writes after "
            f"{write_after:.1f} s, controller manager leadership to {new_leader} after "
            f"{moved_after:.1f} s"
        )
    finally:
        ha.lab.start(victim)
    # the victim's API server comes back on the same datastore and sees the outage's writes
    back = ha.core(victim)
    _until(
        "the restarted API server serves the write made while it was down",
        CONVERGE_BUDGET,
        lambda: back.read_namespaced_config_map("after-cut", "default"),
    )


@dataclass
class VipWriter:
    """Creates ConfigMaps one after another through the admin kubeconfig (the VIP), each
    request bounded (0.5 s to connect, 1 s to answer), and records when each write was
    acknowledged."""

    kubeconfig: Path
    acked: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        configuration = client.Configuration()
        kconfig.load_kube_config(str(self.kubeconfig), client_configuration=configuration)  # type: ignore[no-untyped-call]
        configuration.retries = 0
        core: Any = client.CoreV1Api(client.ApiClient(configuration))
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                core.create_namespaced_config_map(
                    "default", _configmap(f"vip-write-{n}"), _request_timeout=(0.5, 1)
                )
            except Exception:
                time.sleep(0.05)
                continue
            self.acked.append(time.monotonic())

    def acks_after(self, moment: float) -> int:
        return sum(1 for t in self.acked if t > moment)

    def longest_gap_since(self, moment: float) -> float:
        """The longest time without an acknowledged write, from the last one before
        ``moment`` on (the power cut lands somewhere after ``moment``)."""
        times = [max(t for t in self.acked if t <= moment)]
        times += [t for t in self.acked if t > moment]
        return max(b - a for a, b in itertools.pairwise(times))


def test_power_cut_of_the_vip_holder_moves_the_vip_within_seconds(ha: HaCluster) -> None:
    """The admin kubeconfig dials the VIP; a power cut of the host holding it moves it to a
    surviving control-plane host within seconds (VIP_MOVE_BUDGET) while a client keeps
    writing, and kubectl keeps working with the unchanged admin kubeconfig."""
    _all_serving(ha)
    admin = yaml.safe_load(ha.admin_kubeconfig.read_text())
    assert admin["clusters"][0]["cluster"]["server"] == f"https://{ha.vip}:6443"
    # polled: under load a holder that missed its renew deadline has dropped the address
    # while the Lease still names it, until it renews or another host takes over
    victim, _ = _until("a host holds the VIP lease and its address", CONVERGE_BUDGET, lambda: (
        h if f"{ha.vip}/32" in ha.sh(h := _holder(ha, "n2", "berth-vip"), "ip -o -4 addr show")
        else None))  # fmt: skip
    assert victim in CONTROL_PLANE
    survivor = next(h for h in CONTROL_PLANE if h != victim)
    writer = VipWriter(ha.admin_kubeconfig)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    try:
        _until(
            "writes through the VIP",
            CONVERGE_BUDGET,
            lambda: True if len(writer.acked) >= 5 else None,
        )
        cut, cut_at = time.monotonic(), dt.datetime.now(dt.UTC)
        ha.lab.kill(victim)
        dead = time.monotonic()  # the victim's processes are gone by now
        _until(
            "writes through the VIP after the power cut",
            VIP_MOVE_BUDGET * 4,
            lambda: True if writer.acks_after(dead) >= 5 else None,
        )
    finally:
        writer.stop.set()
        thread.join(timeout=10)
    gap = writer.longest_gap_since(cut)
    new_holder = _holder(ha, survivor, "berth-vip")
    print(
        f"power cut of VIP holder {victim}: VIP moved to {new_holder}; no acknowledged write "
        f"for {gap:.2f} s"
    )
    try:
        assert new_holder != victim
        assert new_holder in CONTROL_PLANE
        assert gap < VIP_MOVE_BUDGET, f"the VIP answered again only after {gap:.2f} s"
        kubectl = subprocess.run(
            ["kubectl", "--kubeconfig", str(ha.admin_kubeconfig), "get", "nodes", "-o", "name"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert kubectl.returncode == 0, kubectl.stderr
        assert "node/n4" in kubectl.stdout
    finally:
        ha.lab.start(victim)
    # The restarted host serves again and never took the VIP while another host held it. The
    # holder itself may have changed meanwhile: every lab host shares this 2-core machine, and
    # at load 30-50 a renewal through a busy API server outlasts the 1.5 s renew deadline now
    # and then (the holder drops the VIP, another host takes the lease: ~15 moves in 4 minutes
    # of a loaded HA apply, in a run that logged every one, none overlapping). So the test
    # checks what must hold under any load: the takes and drops berth-vip logged since the
    # cut never overlap, and the VIP ends on its lease holder alone.
    _until("the restarted API server serves", CONVERGE_BUDGET, ha.core(victim).list_node)
    events = _vip_log(ha, since=cut_at)
    moves = "\n".join(f"{when:%H:%M:%S.%f} {host} {what}" for when, host, what in events)
    print(moves)
    assert not _overlaps(events), moves
    assert any(what == "holds" for _, _, what in events), moves  # the take after the cut

    def alone() -> str | None:
        holder = _holder(ha, survivor, "berth-vip")
        on = [h for h in CONTROL_PLANE if f"{ha.vip}/32" in ha.sh(h, "ip -o -4 addr show")]
        return holder if on == [holder] else None

    _until("the VIP on its lease holder alone", CONVERGE_BUDGET, alone)


def _vip_log(ha: HaCluster, since: dt.datetime) -> list[tuple[dt.datetime, str, str]]:
    """Each control-plane host's takes (``holds``) and drops (``drops``) of the VIP logged by
    berth-vip from ``since`` on, in time order: ``(when, host, what)``. The times are the
    processes' own (the journal's receive times lag under load), lab hosts run UTC on the one
    kernel clock of this machine."""
    events = []
    for host in CONTROL_PLANE:
        for line in ha.sh(host, "journalctl -u berth-vip --no-pager -o cat").splitlines():
            # "2026-12-07 04:42:17,010 INFO vip: n3 holds 10.231.2.200"
            what = next((w for w in ("holds", "drops") if f" vip: {host} {w} " in line), None)
            if what is None:
                continue
            when = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=dt.UTC)
            if when >= since:
                events.append((when, host, what))
    return sorted(events)


def _overlaps(events: list[tuple[dt.datetime, str, str]]) -> list[str]:
    """A host taking the VIP while another still held it (by ``events``, which begin with
    nobody holding it)."""
    holding: set[str] = set()
    found = []
    for when, host, what in events:
        if what == "drops":
            holding.discard(host)
            continue
        if others := sorted(holding - {host}):
            found.append(f"{when:%H:%M:%S.%f}: {host} took it while {', '.join(others)} held it")
        holding.add(host)
    return found


def test_partitioned_control_plane_host_refuses_writes_and_catches_up(ha: HaCluster) -> None:
    _all_serving(ha)
    minority, *majority = CONTROL_PLANE
    for other in majority:
        ha.lab.partition(minority, other)
    try:
        isolated = ha.core(minority)
        # A write sent in the second before the minority's etcd member notices it lost the
        # leader is ambiguous (etcd may still commit the forwarded proposal after the heal),
        # and the API server says so ("may still be applied"). Probe with throwaway writes
        # until the server refuses one outright for want of quorum: from then on nothing is
        # proposed, and the write that matters must never appear.
        probes = iter(range(1000))
        # no time promise here (what matters is that it refuses): its etcd member must notice
        # it lost the leader, and a probe may take its whole 15 s request bound meanwhile
        _until(
            "the isolated API server refuses writes for want of quorum",
            CONVERGE_BUDGET,
            lambda: _refused_unsent(isolated, f"probe-{next(probes)}"),
        )
        with pytest.raises(ApiException) as refused:
            isolated.create_namespaced_config_map(
                "default", _configmap("split-brain"), _request_timeout=15
            )
        assert refused.value.status == 503, refused.value.body
        assert "quorum" in str(refused.value.body)
        assert "may still be applied" not in str(refused.value.body)
        kept = ha.core(majority[0])
        _until(
            "the majority accepts writes during the partition",
            CONVERGE_BUDGET,  # an etcd election if the minority led etcd
            lambda: _create_configmap(kept, "majority"),
        )
    finally:
        for other in majority:
            ha.lab.unpartition(minority, other)
    healed = ha.core(minority)
    _until(
        "the healed host serves the majority's write",
        CONVERGE_BUDGET,
        lambda: healed.read_namespaced_config_map("majority", "default"),
    )
    names = {c.metadata.name for c in healed.list_namespaced_config_map("default").items}
    assert "split-brain" not in names, "the isolated API server's write must not exist"


def _refused_unsent(core: Any, name: str) -> bool | None:
    """True when creating ConfigMap ``name`` is refused with 503 for want of quorum before
    anything was proposed (the refusal does not say the write may still be applied)."""
    try:
        core.create_namespaced_config_map("default", _configmap(name), _request_timeout=15)
    except ApiException as exc:
        body = str(exc.body)
        if exc.status == 503 and "quorum" in body and "may still be applied" not in body:
            return True
    return None


def _current_release(ha: HaCluster, host: str) -> str:
    """The release of the bundle ``/opt/berth/current`` names (``<release>-<hash>``)."""
    return ha.sh(host, "readlink /opt/berth/current").strip().rsplit("/", 1)[-1].split("-")[0]


def test_an_upgrade_snapshots_etcd_and_rollback_restores_it(ha: HaCluster, tmp_path: Path) -> None:
    """A rolling upgrade of the HA cluster takes an etcd snapshot before any change;
    ``berth rollback --restore-snapshot`` returns every host to the old release and etcd to
    that snapshot (what was written after it is gone, what was before it is there)."""
    build = make_build(tmp_path, NEW)
    spec = ha.spec_path
    new_spec = spec.with_name("cluster-ha-new.yaml")
    new_spec.write_text(spec.read_text().replace(f"version: {OLD}", f"version: {NEW}"))
    _all_serving(ha)
    _until("a write before the upgrade", CONVERGE_BUDGET,
           lambda: _create_configmap(ha.core("n2"), "before-upgrade"))  # fmt: skip
    env = {**os.environ, "BERTH_STATE_DIR": str(ha.state_dir),
           "BERTH_BUNDLE_SOURCE": "worktree", "PYTHONPATH": str(build.tree)}  # fmt: skip
    upgraded = subprocess.run(
        [*BERTH, "upgrade", "-i", str(new_spec), "--to", NEW, "--yes"], cwd=build.tree,
        env=env, capture_output=True, text=True, timeout=500, check=False,
    )  # fmt: skip
    assert upgraded.returncode == 0, upgraded.stdout[-4000:] + upgraded.stderr[-3000:]
    assert "datastore snapshot:" in upgraded.stdout, upgraded.stdout[-3000:]
    assert {_current_release(ha, h) for h in ("n1", "n2", "n3", "n4")} == {NEW}
    _until("a write after the upgrade", CONVERGE_BUDGET,
           lambda: _create_configmap(ha.core("n3"), "after-upgrade"))  # fmt: skip
    back = ha.berth("rollback", "-i", str(spec), "--restore-snapshot", "--yes")
    assert back.returncode == 0, back.stdout[-4000:] + back.stderr[-3000:]
    assert {_current_release(ha, h) for h in ("n1", "n2", "n3", "n4")} == {OLD}

    def restored() -> list[str] | None:
        names = [c.metadata.name for c in ha.core("n1").list_namespaced_config_map("default").items]
        return names if "before-upgrade" in names and "after-upgrade" not in names else None

    _until("etcd back at the snapshot", CONVERGE_BUDGET, restored)
    nodes, _ = _until("every node Ready on the old release", 180, lambda: (
        items if len(items := ha.core("n2").list_node().items) == 4
        and all(_ready(n) for n in items) else None))  # fmt: skip
    assert all(n.status.node_info.kubelet_version.endswith(f"+berth.{OLD}") for n in nodes)
    # The ledger was made before the snapshot, its data lives on n4's disk: after the drain
    # (its pod evicted, back on n4 once uncordoned) and the restore, its pod runs on n4 again
    # with everything it wrote.
    first = ha.ledger_first
    assert first is not None, "the ledger test did not run"
    keeper = ledger.Ledger(ha.lab, ha.admin_kubeconfig)
    record = keeper.wait_running(timeout=180)
    assert (record.node, record.volume) == (first.node, first.volume)
    assert record.starts[0] == first.starts[0], record.starts
    assert len(record.starts) >= 2, record.starts  # the drain's replacement started there too

    def logged() -> str | None:
        # the pod the API names really runs on n4 (a stale restored status would not log)
        out = clusters.kubectl(ha.admin_kubeconfig, "logs", ledger.POD)
        return out.stdout if out.returncode == 0 and first.starts[0] in out.stdout else None

    clusters.wait_for(f"{ledger.POD} logs its volume's first line", logged, timeout=120)


def test_destroy_removes_etcd_and_the_balancer_everywhere(ha: HaCluster) -> None:
    state = ClusterState.open(ha.lab.name, state_dir=ha.state_dir)
    assert was_created(state)
    result = ha.berth("destroy", "-i", str(ha.spec_path), "--yes")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert not was_created(state), "the members' data is gone: the next apply bootstraps anew"
    assert result.stdout.count("verified clean") == 4
    for host in ("n1", "n2", "n3", "n4"):
        units = ha.sh(host, "systemctl list-unit-files 'berth*' --no-legend || true")
        assert "berth" not in units, f"{host}: {units}"
    # as before berth: no etcd mask, /var/lib/etcd, etcd or node packages, /run/berth, CNI state
    report = [
        f"{h}: {line}" for h in ha.before for line in differences(ha.before[h], snapshot(ha.lab, h))
    ]
    assert not report, "not as before berth:\n" + "\n".join(report)
