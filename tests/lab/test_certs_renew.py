"""``berth certs renew`` on a lab: new certificates on every host, one host at a time.

A 1+2 cluster (n1 control plane + worker, n2, n3 workers) is bootstrapped; then ``berth certs
renew --yes`` re-issues the leaves and rolls them out. Checked: every leaf certificate on every
host has a new serial, every berth unit restarted (all of them use a renewed credential), the
hosts were done in order n1, n2, n3 (each unit's start time on the shared kernel clock), a client
that retries was never without the API for longer than its retry window, every Node is Ready
after, and ``berth verify`` passes.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest
import urllib3
from kubernetes import client, config  # the official client, unmodified

from provisioner import hostlayout as layout
from tests.lab.conftest import LabFactory
from tests.lab.test_e2e import REPO, Cluster, _ready

pytestmark = pytest.mark.lab

RETRY_WINDOW = 20.0
"""Longest time a retrying client may go without a successful request during the renewal."""
HOSTS = {"n1": layout.units_for(("control-plane",)), "n2": (layout.AGENT,), "n3": (layout.AGENT,)}
_SERIALS = (
    "import glob, ssl\n"
    "for f in sorted(glob.glob('/etc/berth/pki/*.crt')):\n"
    "    if not f.rsplit('/', 1)[1].startswith(('ca', 'etcd-ca', 'front-proxy-ca')):\n"
    "        print(f, ssl._ssl._test_decode_cert(f)['serialNumber'])\n"
)


@pytest.fixture(scope="module")
def cluster(lab_factory: LabFactory, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    lab = lab_factory(3)
    work = tmp_path_factory.mktemp("certs-renew")
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return Cluster(lab, work, work / "state", commit)


def _serials(cluster: Cluster, host: str) -> dict[str, str]:
    out = cluster.sh(host, f"python3 -c {_quote(_SERIALS)}")
    return dict(line.split(" ", 1) for line in out.splitlines() if line.strip())


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _units(cluster: Cluster, host: str) -> dict[str, tuple[int, int]]:
    """MainPID and start time (monotonic µs, the lab hosts share the kernel clock) per unit."""
    found: dict[str, tuple[int, int]] = {}
    for unit in HOSTS[host]:
        pid, started = cluster.sh(
            host,
            f"systemctl show -p MainPID --value {unit}; "
            f"systemctl show -p ActiveEnterTimestampMonotonic --value {unit}",
        ).split()
        found[unit] = (int(pid), int(started))
    return found


class RetryingClient:
    """Lists Nodes in a loop with the official client; records the longest stretch without an
    answer (a client that retries sees only that)."""

    def __init__(self, kubeconfig: Path) -> None:
        self.api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))  # type: ignore[no-untyped-call]
        self.requests = self.failures = 0
        self.longest_gap = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        last_ok = time.monotonic()
        while not self._stop.is_set():
            self.requests += 1
            try:
                self.api.list_node(_request_timeout=3)
            except (client.ApiException, urllib3.exceptions.HTTPError, OSError):
                self.failures += 1
                self.longest_gap = max(self.longest_gap, time.monotonic() - last_ok)
            else:
                last_ok = time.monotonic()
            self._stop.wait(0.25)

    def __enter__(self) -> RetryingClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_renew_rolls_new_certificates_out_one_host_at_a_time(cluster: Cluster) -> None:
    spec = str(cluster.spec(3))
    bootstrap = cluster.berth("apply", "-i", spec, "--yes", "--no-verify")
    assert bootstrap.returncode == 0, bootstrap.stdout[-4000:] + bootstrap.stderr[-2000:]
    serials = {host: _serials(cluster, host) for host in HOSTS}
    assert all(serials.values()), serials
    assert any(path.endswith("/apiserver.crt") for path in serials["n1"])
    units = {host: _units(cluster, host) for host in HOSTS}

    started = time.monotonic()
    with RetryingClient(cluster.kubeconfig) as watcher:
        result = cluster.berth("certs", "renew", "-i", spec, "--yes")
    took = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    print(
        f"renew took {took:.1f}s; client: {watcher.requests} requests, {watcher.failures} failed, "
        f"longest gap {watcher.longest_gap:.1f}s"
    )
    assert watcher.longest_gap < RETRY_WINDOW, watcher.longest_gap

    # what the command says it did, per host and in order
    lines = [line for line in result.stdout.splitlines() if " change(s); restarted: " in line]
    print("\n".join(lines))
    assert [line.split(":", 1)[0] for line in lines] == ["n1", "n2", "n3"], result.stdout
    assert "berth-apiserver" in lines[0], lines[0]
    assert "healthy after" in lines[0], lines[0]

    for host in HOSTS:
        after = _serials(cluster, host)
        assert after.keys() == serials[host].keys()
        same = [path for path, serial in after.items() if serials[host][path] == serial]
        assert not same, f"{host}: not renewed: {same}"
    restarted = {host: _units(cluster, host) for host in HOSTS}
    for host, now in restarted.items():
        for unit, (pid, _) in now.items():
            assert pid, f"{host}: {unit} is not running"
            assert pid != units[host][unit][0], f"{host}: {unit} did not restart"
    # one host at a time: every unit of a host started after every unit of the host before it
    for first, second in (("n1", "n2"), ("n2", "n3")):
        latest = max(start for _, start in restarted[first].values())
        earliest = min(start for _, start in restarted[second].values())
        assert latest < earliest, (first, second, restarted)

    nodes = {str(n.metadata.name): n for n in cluster.core_api().list_node().items if n.metadata}
    assert sorted(nodes) == ["n1", "n2", "n3"]
    assert all(_ready(node) for node in nodes.values())
    verify = cluster.berth("verify", "-i", spec, "--no-smoke")
    assert verify.returncode == 0, verify.stdout[-4000:] + verify.stderr[-2000:]
