"""High availability of the datastore on lab hosts: a 3-member etcd cluster installed by the
etcd phase (mTLS, members joined one at a time) on 3 control-plane hosts of a 4-host lab.

A write checker creates keys through every member while faults happen and records each
acknowledged write; afterwards every acknowledged write must be readable with its value.
Faults: a power cut of one member (writes keep flowing through the others within 10 s, the
member rejoins and catches up when it boots again) and a partition of one member from the
other two (it refuses writes — no split brain — and catches up when the partition heals).

This covers the datastore layer alone; tests/lab/test_ha_cluster.py runs the whole control plane
on etcd (API servers behind the node load balancer) through `berth apply`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as kclient  # the official client, unmodified
from kubernetes import config as kconfig

from berth.lb import Backend, HealthConfig, LBConfig, LoadBalancer
from berth.store.etcd import EtcdStore, EtcdTLS
from berth.store.interface import StoreError
from provisioner import snapshot
from provisioner.engine.runner import Engine, HostsFailed, RunContext
from provisioner.lab import Lab, run
from provisioner.phases.etcd import etcd_endpoints, etcd_phase, layout
from provisioner.pki.files import PkiFiles
from provisioner.reporting import CollectingReporter
from provisioner.spec import ClusterSpec, load_spec
from provisioner.state import ClusterState
from provisioner.workflow import select
from provisioner.workflow.inventory import inventory_from_spec
from tests.lab.conftest import LabFactory

pytestmark = pytest.mark.lab

WRITE_GAP_BUDGET = 10.0  # seconds without an acknowledged write while a member is cut
# a host boot and an etcd start catching up, on a machine other labs load (no time promise)
REJOIN_BUDGET = 120.0
SETTLE_BUDGET = 60.0  # an election after a fault, a cluster healthy again (no time promise)


@dataclass
class EtcdLab:
    lab: Lab
    spec: ClusterSpec
    state_dir: Path
    cache: Path

    @property
    def endpoints(self) -> list[str]:
        return etcd_endpoints(self.spec)

    def tls(self) -> EtcdTLS:
        files = PkiFiles(ClusterState.for_spec(self.spec, state_dir=self.state_dir))
        return EtcdTLS(
            files.cert("etcd-ca"),
            files.cert("apiserver-etcd-client"),
            files.key("apiserver-etcd-client"),
        )

    def endpoint(self, host: str) -> str:
        return layout.client_url(self.lab.host(host).address)

    def apply(self) -> tuple[int, CollectingReporter]:
        reporter = CollectingReporter()
        ctx = RunContext(
            inventory_from_spec(self.spec), cache_dir=self.cache, spec=self.spec,
            phase_set="etcd", state_dir=self.state_dir,
        )  # fmt: skip
        with Engine(ctx, select([etcd_phase()]), reporter=reporter) as engine:
            engine.connect_all()
            try:
                summary = engine.apply()
            except HostsFailed as failed:
                raise AssertionError("\n".join(failed.lines())) from failed
        return summary.changed, reporter

    def sh(self, host: str, command: str) -> str:
        code, out, err = run(self.lab, host, command, timeout=60)
        assert code == 0, f"{host}: {command}: {err}"
        return out


def _etcd_spec(
    lab: Lab, directory: Path, control_plane: tuple[str, ...] = ("n1", "n2", "n3")
) -> Path:
    """The lab's spec with ``control_plane`` on etcd, every other host a worker."""
    raw: dict[str, Any] = yaml.safe_load(lab.spec_path.read_text())
    ssh = raw["spec"]["ssh"]
    for key in ("identityFile", "knownHostsFile"):
        ssh[key] = str((lab.spec_path.parent / ssh[key]).resolve())
    for host in raw["spec"]["hosts"]:
        cp = host["name"] in control_plane
        host["roles"] = ["control-plane", "worker"] if cp else ["worker"]
    raw["spec"]["datastore"] = {"type": "etcd"}
    path = directory / f"cluster-{'-'.join(control_plane)}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def etcd_lab(lab_factory: LabFactory, tmp_path_factory: pytest.TempPathFactory) -> EtcdLab:
    lab = lab_factory(4)
    directory = tmp_path_factory.mktemp("etcd-lab")
    spec = load_spec(_etcd_spec(lab, directory))
    return EtcdLab(lab, spec, directory / "state", directory / "cache")


# -- the write checker --------------------------------------------------------------------------


@dataclass
class WriteChecker:
    """Creates ``/ha-check/<n>`` keys one after another through ``store`` and records which
    writes were acknowledged (and when); a failed or timed-out write is *uncertain*: it may or
    may not have been applied, so it is never counted as lost or as present."""

    store: EtcdStore
    prefix: str = "/ha-check/"
    acked: dict[str, bytes] = field(default_factory=dict)
    ack_times: list[float] = field(default_factory=list)
    uncertain: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _next: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            key = f"{self.prefix}{self._next:06}"
            value = f"v{self._next}-{time.time():.3f}".encode()
            self._next += 1
            try:
                async with asyncio.timeout(5):
                    await self.store.create(key, value)
            except (StoreError, TimeoutError) as error:
                self.uncertain.append(key)
                self.errors.append(f"{type(error).__name__}: {error}"[:200])
                await asyncio.sleep(0.2)
                continue
            self.acked[key] = value
            self.ack_times.append(time.monotonic())
            await asyncio.sleep(0.02)

    def longest_gap(self, start: float, end: float) -> float:
        """Longest stretch in ``[start, end]`` without an acknowledged write."""
        points = [start, *(t for t in self.ack_times if start <= t <= end), end]
        return max(b - a for a, b in itertools.pairwise(points))

    async def lost(self, reader: EtcdStore) -> list[str]:
        """Acknowledged writes that are missing or changed (read through ``reader``)."""
        missing = []
        for key, value in self.acked.items():
            kv = await reader.get(key)
            if kv is None or kv.value != value:
                missing.append(key)
        return missing


@contextlib.asynccontextmanager
async def checking(store: EtcdStore) -> Any:
    checker = WriteChecker(store, prefix=f"/ha-check/{time.time_ns()}/")
    stop = asyncio.Event()
    task = asyncio.create_task(checker.run(stop))
    try:
        yield checker
    finally:
        stop.set()
        await task


async def _wait_healthy(store: EtcdStore, budget: float) -> float:
    started = time.monotonic()
    while True:
        try:
            async with asyncio.timeout(3):
                await store.current_revision()
            return time.monotonic() - started
        except (StoreError, TimeoutError):
            assert time.monotonic() - started < budget, f"{store.endpoints} not healthy in time"
            await asyncio.sleep(0.5)


async def _new_leader(etcd: EtcdLab, asking: str, old: str, budget: float) -> str:
    """The leader ``asking``'s member reports once it is not ``old`` (none while electing)."""
    started = time.monotonic()
    while True:
        try:
            found = await asyncio.to_thread(_leader, etcd, asking)
        except Exception:  # no leader yet, or a member not answering: not yet
            found = old
        if found != old:
            return found
        assert time.monotonic() - started < budget, f"no new leader within {budget:.0f}s"
        await asyncio.sleep(1)


async def _until(predicate: Any, budget: float) -> None:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < budget, f"not within {budget:.0f}s"
        await asyncio.sleep(0.2)


ETCDCTL = (
    "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/berth/etcd/pki/ca.crt "
    "--cert=/etc/berth/etcd/pki/client.crt --key=/etc/berth/etcd/pki/client.key"
)


def _members(etcd: EtcdLab, host: str) -> list[dict[str, Any]]:
    out = etcd.sh(host, f"{ETCDCTL} member list -w json")
    members: list[dict[str, Any]] = yaml.safe_load(out)["members"]
    return members


def _leader(etcd: EtcdLab, asking: str) -> str:
    """The host whose member leads, as ``asking``'s member sees the cluster."""
    # exits 1 when a member is down, still printing the status of those that answered
    _, out, _ = run(etcd.lab, asking, f"{ETCDCTL} endpoint status --cluster -w json", timeout=60)
    for entry in yaml.safe_load(out) or ():
        status = entry["Status"]
        if status["header"]["member_id"] == status["leader"]:
            address = entry["Endpoint"].split("//")[1].rsplit(":", 1)[0]
            return next(h.name for h in etcd.lab.hosts if h.address == address)
    raise AssertionError(f"no leader in {out}")


# -- tests --------------------------------------------------------------------------------------


def test_phase_builds_a_three_member_mtls_cluster_and_a_second_apply_changes_nothing(
    etcd_lab: EtcdLab,
) -> None:
    changed, reporter = etcd_lab.apply()
    assert changed > 0
    members = _members(etcd_lab, "n1")
    assert sorted(m["name"] for m in members) == ["n1", "n2", "n3"]
    assert all(m["clientURLs"][0].startswith("https://") for m in members)
    assert all(m["peerURLs"][0].startswith("https://") for m in members)
    # one host at a time: each join phase changed only its own host, in spec order
    joins = [
        (e.phase, e.host)
        for e in reporter.events
        if e.kind == "done" and (e.phase or "").startswith("etcd/join-")
    ]
    assert [host for _, host in dict(joins).items()] == ["n1", "n2", "n3"], joins
    assert all(phase == f"etcd/join-{host[1:]}" for phase, host in joins), joins
    # mTLS: no client certificate, no answer
    code, _, _ = run(
        etcd_lab.lab, "n4",
        f"python3 -c \"import ssl,urllib.request as u;c=ssl.create_default_context();"
        f"c.check_hostname=False;c.verify_mode=ssl.CERT_NONE;"
        f"u.urlopen(u.Request('{etcd_lab.endpoint('n1')}/v3/kv/range',data=b'{{}}'),context=c,"
        f"timeout=5)\"",
    )  # fmt: skip
    assert code != 0, "etcd answered a client without a certificate"
    again, _ = etcd_lab.apply()
    assert again == 0, "a second apply changes nothing"


def test_power_cut_of_the_leader_writes_continue_and_it_rejoins(etcd_lab: EtcdLab) -> None:
    leader = _leader(etcd_lab, "n1")
    survivor = next(h for h in ("n1", "n2", "n3") if h != leader)

    async def scenario() -> None:
        tls = etcd_lab.tls()
        store = EtcdStore(etcd_lab.endpoints, tls=tls, request_timeout=4)
        victim = EtcdStore([etcd_lab.endpoint(leader)], tls=tls, request_timeout=4)
        try:
            await _wait_healthy(store, SETTLE_BUDGET)
            async with checking(store) as checker:
                await asyncio.sleep(2)
                cut = time.monotonic()
                await asyncio.to_thread(etcd_lab.lab.kill, leader)
                # polled, not "sleep 12 s then look": a new leader, and more than 10 writes
                # acknowledged since the cut (the gap assertion below keeps the time promise)
                moved = await _new_leader(etcd_lab, survivor, leader, SETTLE_BUDGET)
                await _until(
                    lambda: sum(1 for t in checker.ack_times if t > cut) > 10, SETTLE_BUDGET
                )
                await asyncio.sleep(2)
                gap = checker.longest_gap(cut, time.monotonic())
                during = sum(1 for t in checker.ack_times if t > cut)
                await asyncio.to_thread(etcd_lab.lab.start, leader)
                rejoined = await _wait_healthy(victim, REJOIN_BUDGET)
                await asyncio.sleep(2)
            assert moved != leader, "leadership moved to a surviving member"
            print(
                f"power cut of leader {leader}: leader now {moved}, longest write gap "
                f"{gap:.2f}s, {during} writes acked during the outage, member back "
                f"{rejoined:.1f}s after boot, {len(checker.acked)} acked, "
                f"{len(checker.uncertain)} uncertain"
            )
            assert gap < WRITE_GAP_BUDGET, (
                f"no write acknowledged for {gap:.1f}s",
                checker.errors[:6],
            )
            assert during > 10
            assert await checker.lost(store) == []
            assert await checker.lost(victim) == [], "the rejoined member has every write"
        finally:
            await store.close()
            await victim.close()

    asyncio.run(scenario())
    assert sorted(m["name"] for m in _members(etcd_lab, leader)) == ["n1", "n2", "n3"]


@contextlib.contextmanager
def _isolated(lab: Lab, host: str, others: list[str]) -> Iterator[None]:
    for other in others:
        lab.partition(host, other)
    try:
        yield
    finally:
        for other in others:
            lab.unpartition(host, other)


def test_partitioned_leader_refuses_writes_and_catches_up(etcd_lab: EtcdLab) -> None:
    """The leader is cut off from the other two members: it must stop accepting writes (no
    split brain) while the two elect a new leader and keep serving."""
    cut_off = _leader(etcd_lab, "n1")
    others = [h for h in ("n1", "n2", "n3") if h != cut_off]

    async def scenario() -> None:
        tls = etcd_lab.tls()
        majority = EtcdStore([etcd_lab.endpoint(h) for h in others], tls=tls, request_timeout=4)
        minority = EtcdStore([etcd_lab.endpoint(cut_off)], tls=tls, request_timeout=4)
        try:
            await _wait_healthy(majority, SETTLE_BUDGET)
            await _wait_healthy(minority, SETTLE_BUDGET)
            async with checking(majority) as checker:
                await asyncio.sleep(1)
                with _isolated(etcd_lab.lab, cut_off, others):
                    cut = time.monotonic()
                    await asyncio.sleep(3)  # n3 notices it lost its peers (election timeout)
                    refused = []
                    for attempt in range(3):
                        try:
                            async with asyncio.timeout(6):
                                await minority.create(f"/ha-minority/{attempt}", b"x")
                            refused.append(False)
                        except (StoreError, TimeoutError):
                            refused.append(True)
                    gap = checker.longest_gap(cut, time.monotonic())
                healed = time.monotonic()
                await _wait_healthy(minority, REJOIN_BUDGET)
                await asyncio.sleep(2)
            print(
                f"partition of leader {cut_off}: it refused {refused.count(True)}/3 writes, "
                f"majority write gap {gap:.2f}s, minority healthy "
                f"{time.monotonic() - healed:.1f}s after heal"
            )
            assert refused == [True, True, True], "the cut-off member accepted a write"
            assert gap < WRITE_GAP_BUDGET, checker.errors[:6]
            for attempt in range(3):
                assert await majority.get(f"/ha-minority/{attempt}") is None
            assert await checker.lost(majority) == []
            assert await checker.lost(minority) == [], "the healed member caught up"
        finally:
            await majority.close()
            await minority.close()

    asyncio.run(scenario())


def test_snapshot_save_and_restore_round_trip(etcd_lab: EtcdLab, tmp_path: Path) -> None:
    """``berth snapshot save`` then ``restore``: the cluster comes back with the data of the
    snapshot (a later write is gone), three healthy members, and the etcd phase sees nothing
    to change."""
    state = ClusterState.for_spec(etcd_lab.spec, state_dir=etcd_lab.state_dir)
    stamp = time.time_ns()

    async def write(key: str) -> None:
        store = EtcdStore(etcd_lab.endpoints, tls=etcd_lab.tls(), request_timeout=5)
        try:
            await _wait_healthy(store, 60)
            await store.create(key, b"x")
        finally:
            await store.close()

    async def present(key: str) -> bool:
        store = EtcdStore(etcd_lab.endpoints, tls=etcd_lab.tls(), request_timeout=5)
        try:
            await _wait_healthy(store, 60)
            return await store.get(key) is not None
        finally:
            await store.close()

    asyncio.run(write(f"/snap/{stamp}/before"))
    taken = snapshot.save(etcd_lab.spec, state, output=tmp_path / "etcd.db")
    assert taken.size > 0
    assert taken.revision is not None
    asyncio.run(write(f"/snap/{stamp}/after"))
    started = time.monotonic()
    lines: list[str] = []
    snapshot.restore(etcd_lab.spec, state, taken.path, report=lines.append)
    print(f"snapshot: {taken.size} bytes from {taken.host}, restored in "
          f"{time.monotonic() - started:.1f}s")  # fmt: skip
    assert asyncio.run(present(f"/snap/{stamp}/before"))
    assert not asyncio.run(present(f"/snap/{stamp}/after"))
    assert sorted(m["name"] for m in _members(etcd_lab, "n3")) == ["n1", "n2", "n3"]
    again, _ = etcd_lab.apply()
    assert again == 0


def test_node_load_balancer_fails_over_between_real_members(etcd_lab: EtcdLab) -> None:
    """berth.lb in front of the three members (TLS passes through: the client verifies the
    member's certificate for 127.0.0.1 and presents its own), health by HTTPS ``/health`` with
    the client certificate. A power-cut member is skipped within seconds; a partitioned one is
    taken out because its ``/health`` fails without a leader."""
    tls = etcd_lab.tls()
    hosts = ["n1", "n2", "n3"]
    config = LBConfig(
        backends=tuple(Backend(etcd_lab.lab.host(h).address, 2379) for h in hosts),
        listen_port=0,
        connect_timeout=1.0,
        health=HealthConfig(
            mode="https", path="/health", interval=0.5, timeout=1.0, fall=2, rise=1,
            ca_file=tls.ca_file, cert_file=tls.cert_file, key_file=tls.key_file,
        ),
    )  # fmt: skip

    async def until(predicate: Any, budget: float) -> float:
        started = time.monotonic()
        while not predicate():
            assert time.monotonic() - started < budget, "load balancer did not notice"
            await asyncio.sleep(0.1)
        return time.monotonic() - started

    async def scenario() -> tuple[float, float, float, float, WriteChecker]:
        balancer = LoadBalancer(config)
        await balancer.start()
        store = EtcdStore([f"https://127.0.0.1:{balancer.port}"], tls=tls, request_timeout=4)
        try:
            await _wait_healthy(store, SETTLE_BUDGET)
            async with checking(store) as checker:
                await asyncio.sleep(1)
                cut = time.monotonic()
                await asyncio.to_thread(etcd_lab.lab.kill, "n2")
                noticed_cut = await until(lambda: not balancer.pool.is_up(config.backends[1]), 10)
                await asyncio.sleep(4)
                gap_cut = checker.longest_gap(cut, time.monotonic())
                await asyncio.to_thread(etcd_lab.lab.start, "n2")
                await until(lambda: balancer.pool.is_up(config.backends[1]), REJOIN_BUDGET)
                with _isolated(etcd_lab.lab, "n3", ["n1", "n2"]):
                    parted = time.monotonic()
                    noticed_part = await until(
                        lambda: not balancer.pool.is_up(config.backends[2]), 15
                    )
                    await asyncio.sleep(3)
                    gap_part = checker.longest_gap(parted, time.monotonic())
                await until(lambda: balancer.pool.is_up(config.backends[2]), REJOIN_BUDGET)
                await asyncio.sleep(1)
            assert await checker.lost(store) == []
            return noticed_cut, gap_cut, noticed_part, gap_part, checker
        finally:
            await store.close()
            await balancer.stop()

    noticed_cut, gap_cut, noticed_part, gap_part, checker = asyncio.run(scenario())
    print(
        f"lb: power cut noticed in {noticed_cut:.1f}s (write gap {gap_cut:.2f}s), partitioned "
        f"member out in {noticed_part:.1f}s (write gap {gap_part:.2f}s), "
        f"{len(checker.acked)} acked, {len(checker.uncertain)} uncertain"
    )
    assert gap_cut < WRITE_GAP_BUDGET
    assert gap_part < WRITE_GAP_BUDGET


def test_replacing_a_control_plane_host_changes_membership_safely(etcd_lab: EtcdLab) -> None:
    """n3 hands its control-plane role to n4: n3's member is removed first, n4 joins, n3's
    etcd is gone; writes keep flowing through n1 and n2 the whole time."""
    directory = etcd_lab.state_dir.parent
    replaced = EtcdLab(
        etcd_lab.lab,
        load_spec(_etcd_spec(etcd_lab.lab, directory, ("n1", "n2", "n4"))),
        etcd_lab.state_dir,
        etcd_lab.cache,
    )

    async def scenario() -> tuple[int, float, WriteChecker]:
        tls = etcd_lab.tls()
        store = EtcdStore([etcd_lab.endpoint("n1"), etcd_lab.endpoint("n2")], tls=tls,
                          request_timeout=4)  # fmt: skip
        try:
            await _wait_healthy(store, 60)
            async with checking(store) as checker:
                await asyncio.sleep(1)
                started = time.monotonic()
                changed, _ = await asyncio.to_thread(replaced.apply)
                gap = checker.longest_gap(started, time.monotonic())
                await asyncio.sleep(1)
            assert await checker.lost(store) == []
            return changed, gap, checker
        finally:
            await store.close()

    changed, gap, checker = asyncio.run(scenario())
    print(f"replace n3 by n4: {changed} change(s), longest write gap {gap:.2f}s, "
          f"{len(checker.acked)} acked, {len(checker.uncertain)} uncertain")  # fmt: skip
    assert changed > 0
    assert gap < WRITE_GAP_BUDGET
    assert sorted(m["name"] for m in _members(etcd_lab, "n1")) == ["n1", "n2", "n4"]
    code, out, _ = run(etcd_lab.lab, "n3", f"systemctl is-active {layout.UNIT}; ls {layout.DATA}")
    assert code != 0
    assert "inactive" in out or "unknown" in out
    again, _ = replaced.apply()
    assert again == 0


# -- SQLite snapshots through the CLI on a one-host cluster ----------------------------------

BERTH = [sys.executable, "-m", "provisioner.cli.main"]
REPO = Path(__file__).resolve().parents[2]


def test_sqlite_snapshot_save_and_restore_through_the_cli(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    """``berth apply`` a one-host cluster on SQLite, then ``berth snapshot save`` and
    ``restore``: a ConfigMap made after the snapshot is gone, one made before is back."""
    lab = lab_factory(1)
    raw: dict[str, Any] = yaml.safe_load(lab.spec_path.read_text())
    raw["spec"]["ssh"]["identityFile"] = str(lab.key_path)
    raw["spec"]["ssh"]["knownHostsFile"] = str(lab.known_hosts_path)
    spec_path = tmp_path / "cluster.yaml"
    spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    env = {**os.environ, "BERTH_STATE_DIR": str(tmp_path / "state"), "BERTH_BUNDLE_SOURCE": commit}

    def berth(*args: str) -> str:
        done = subprocess.run(
            [*BERTH, *args], capture_output=True, text=True, env=env, timeout=400, check=False
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    berth("apply", "-i", str(spec_path), "--yes")
    kubeconfig = tmp_path / "state" / lab.name / "kubeconfigs" / "admin.conf"
    api = kclient.CoreV1Api(kconfig.new_client_from_config(str(kubeconfig)))  # type: ignore[no-untyped-call]

    def configmap(name: str) -> None:
        body = kclient.V1ConfigMap(metadata=kclient.V1ObjectMeta(name=name), data={"k": name})
        api.create_namespaced_config_map("default", body)

    def names() -> set[str]:
        deadline = time.monotonic() + 120  # an API server restart on a loaded host
        while True:
            try:
                items = api.list_namespaced_config_map("default").items
                return {str(c.metadata.name) for c in items if c.metadata}
            except Exception:
                assert time.monotonic() < deadline, "API server did not come back"
                time.sleep(0.5)

    configmap("before-snapshot")
    file = tmp_path / "sqlite.db"
    saved = berth("snapshot", "save", "-i", str(spec_path), "-o", str(file))
    assert "sqlite snapshot from n1" in saved
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    configmap("after-snapshot")
    refused = subprocess.run(
        [*BERTH, "snapshot", "restore", "-i", str(spec_path), str(file)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "--yes" in refused.stderr
    berth("snapshot", "restore", "-i", str(spec_path), str(file), "--yes")
    present = names()
    assert "before-snapshot" in present
    assert "after-snapshot" not in present
