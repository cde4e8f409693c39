"""The durability run, repeated before every release: a writer creates ConfigMaps as fast as
the API takes them while the cluster is hit, and every write the API acknowledged must be read
back afterwards.

* SQLite, one control-plane host: three power cuts of the host (``lab.kill`` then ``start``)
  and two ``kill -9`` of the API server process (systemd restarts it);
* etcd, three control-plane hosts: one power cut of a host and one partition of a host from
  the other two (the writer moves to another API server when one fails, as a client behind a
  load balancer does).

Each write attempt uses a new name, so an answer is unambiguous: acknowledged (201) or not
(error, timeout, dropped connection). Unacknowledged writes may or may not exist afterwards.
Between faults the test waits for the writer to have new acknowledgements (the cluster is
serving again), never for a fixed time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiException

from provisioner.lab import Lab, run
from tests.chaos.conftest import LabFactory
from tests.lab.clusters import admin_client_for

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.lab,
    pytest.mark.timeout(1800),
    # A power cut leaves the clients' pooled TLS connections to be collected unclosed.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

BERTH = [sys.executable, "-m", "provisioner.cli.main"]
REPO = Path(__file__).resolve().parents[2]
WORKERS = 4  # writer threads: enough to keep the API server busy on this 2-core machine
PROGRESS = 200  # new acknowledgements that prove the cluster serves writes again
RECOVERY_BUDGET = 180.0  # seconds from a fault's end until writes are acknowledged again
NAMESPACE = "default"


@dataclass
class Cluster:
    lab: Lab
    workdir: Path
    control_plane: tuple[str, ...]
    datastore: str

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    def apply(self) -> None:
        document: dict[str, Any] = yaml.safe_load(self.lab.spec_path.read_text())
        body = document["spec"]
        body["ssh"]["identityFile"] = str(self.lab.key_path)
        body["ssh"]["knownHostsFile"] = str(self.lab.known_hosts_path)
        for host in body["hosts"]:
            cp = host["name"] in self.control_plane
            host["roles"] = ["control-plane", "worker"] if cp else ["worker"]
        body["datastore"] = {"type": self.datastore}
        spec = self.workdir / "cluster.yaml"
        spec.write_text(yaml.safe_dump(document, sort_keys=False))
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        env = {**os.environ, "BERTH_STATE_DIR": str(self.state_dir),
               "BERTH_BUNDLE_SOURCE": os.environ.get("BERTH_BUNDLE_SOURCE", commit)}  # fmt: skip
        result = subprocess.run(
            [*BERTH, "apply", "-i", str(spec), "--yes"],
            capture_output=True, text=True, env=env, timeout=900, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    def core(self, host: str) -> Any:
        """An admin client dialling ``host``'s API server, without retries (the writer's
        failures must be seen, not hidden)."""
        return client.CoreV1Api(
            admin_client_for(
                self.state_dir / self.lab.name / "kubeconfigs" / "admin.conf",
                self.lab.host(host).address,
                self.workdir,
                host,
            )
        )

    def sh(self, host: str, command: str) -> str:
        code, out, err = run(self.lab, host, command)
        assert code == 0, f"{host}: {command}: {err}"
        return out


class Writer:
    """``WORKERS`` threads creating ConfigMaps back to back, each through one API server
    until it fails, then through the next one. ``acknowledged`` holds the names the API
    answered 201 for."""

    def __init__(self, clients: Callable[[], list[Any]]) -> None:
        self.acknowledged: list[str] = []
        self.failures = 0
        self._progress = threading.Condition()
        self._halt = threading.Event()
        self._threads = [
            threading.Thread(target=self._write, args=(k, clients()), daemon=True)
            for k in range(WORKERS)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _write(self, worker: int, apis: list[Any]) -> None:
        attempt, server = 0, worker % len(apis)  # spread the workers over the servers
        while not self._halt.is_set():
            attempt += 1
            name = f"chaos-{worker}-{attempt:07d}"
            body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"n": name})
            try:
                apis[server].create_namespaced_config_map(NAMESPACE, body, _request_timeout=(3, 8))
            except Exception:  # refused, reset, timed out, 5xx: not acknowledged
                with self._progress:
                    self.failures += 1
                server = (server + 1) % len(apis)
                if attempt % 20 == 0:
                    time.sleep(0.2)  # nothing answers: do not spin a core while it is down
                continue
            with self._progress:
                self.acknowledged.append(name)
                self._progress.notify_all()

    def progressed(self, count: int = PROGRESS, budget: float = RECOVERY_BUDGET) -> None:
        """Wait until ``count`` more writes are acknowledged than now."""
        with self._progress:
            target = len(self.acknowledged) + count
            done = self._progress.wait_for(lambda: len(self.acknowledged) >= target, budget)
        assert done, (
            f"writes not acknowledged again within {budget:.0f} s "
            f"({len(self.acknowledged)} acknowledged, {self.failures} failed attempts)"
        )

    def halt(self) -> None:
        self._halt.set()
        for thread in self._threads:
            thread.join(30)
            assert not thread.is_alive()


def _stored_names(api: Any) -> set[str]:
    names: set[str] = set()
    token = None
    while True:
        page = api.list_namespaced_config_map(NAMESPACE, limit=2000, _continue=token)
        names.update(cm.metadata.name for cm in page.items)
        token = page.metadata._continue
        if not token:
            return names


def _all_read_back(cluster: Cluster, writer: Writer, via: str) -> None:
    def read() -> set[str]:
        return _stored_names(cluster.core(via))

    stored = _retrying(read)
    lost = [name for name in writer.acknowledged if name not in stored]
    print(
        f"{cluster.datastore}: {len(writer.acknowledged)} acknowledged writes, "
        f"{writer.failures} failed attempts, {len(lost)} lost"
    )
    assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {lost[:10]}"


def _retrying(call: Callable[[], set[str]], budget: float = 60.0) -> set[str]:
    deadline = time.monotonic() + budget
    while True:
        try:
            return call()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _kill_9_apiserver(cluster: Cluster, host: str) -> None:
    """SIGKILL the API server's main process; its unit (Restart=on-failure) starts it again."""
    cluster.sh(host, "kill -9 $(systemctl show -p MainPID --value berth-apiserver)")


def _minority_refuses(cluster: Cluster, host: str) -> float:
    """A write through ``host``'s API server, cut off from the etcd quorum, is refused with
    503, Retry-After and a reason naming the quorum; returns how long the answer took."""
    api = cluster.core(host)
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"minority-{time.time_ns()}"))
    started = time.monotonic()
    with pytest.raises(ApiException) as refused:
        api.create_namespaced_config_map(NAMESPACE, body, _request_timeout=(3, 15))
    took = time.monotonic() - started
    answer = refused.value
    assert answer.status == 503, answer.body
    assert answer.headers is not None
    assert answer.headers.get("Retry-After") == "2"
    assert "the datastore has no quorum" in str(answer.body)
    return took


def test_acknowledged_writes_survive_power_cuts_and_kill_9_on_sqlite(
    chaos_lab: LabFactory, tmp_path: Path
) -> None:
    lab = chaos_lab(1)
    try:
        cluster = Cluster(lab, tmp_path, ("n1",), "sqlite")
        cluster.apply()
        writer = Writer(lambda: [cluster.core("n1")])
        writer.start()
        try:
            writer.progressed()
            for _ in range(3):
                lab.kill("n1")  # power cut: no shutdown, no flush but what fsync made durable
                lab.start("n1")
                writer.progressed()
            for _ in range(2):
                _kill_9_apiserver(cluster, "n1")
                writer.progressed()
        finally:
            writer.halt()
        _all_read_back(cluster, writer, "n1")
    finally:
        lab.down()  # free the host before the etcd cluster boots three


def test_acknowledged_writes_survive_a_power_cut_and_a_partition_on_etcd(
    chaos_lab: LabFactory, tmp_path: Path
) -> None:
    lab = chaos_lab(3)
    control_plane = ("n1", "n2", "n3")
    cluster = Cluster(lab, tmp_path, control_plane, "etcd")
    cluster.apply()
    writer = Writer(lambda: [cluster.core(host) for host in control_plane])
    writer.start()
    try:
        writer.progressed()
        lab.kill("n3")
        try:
            writer.progressed()  # through the two that still form a quorum
        finally:
            lab.start("n3")
        writer.progressed()
        lab.partition("n1", "n2")
        lab.partition("n1", "n3")
        try:
            writer.progressed()  # the majority side accepts writes, n1 must not
            first = _minority_refuses(cluster, "n1")  # n1 has noticed by now, or is about to
            assert first < 5.0, first
            assert _minority_refuses(cluster, "n1") < 2.0
        finally:
            lab.unpartition("n1", "n2")
            lab.unpartition("n1", "n3")
        writer.progressed()
    finally:
        writer.halt()
    # read through the host that was the minority: it caught up with everything
    _all_read_back(cluster, writer, "n1")
