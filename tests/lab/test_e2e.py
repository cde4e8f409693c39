"""berth end to end on lab hosts: apply, verify, grow, shrink, relabel, destroy.

One 4-host lab and one cluster are shared by the module (tests run in file order and each
leaves the cluster healthy for the next):

* bootstrap n1 (control plane + worker) and n2, n3 (workers): every node Ready through the
  official ``kubernetes`` client and running runc (the default runtime), verify passed as part
  of apply (its smoke pods answered through a ClusterIP Service from every node);
* a second apply changes nothing and says so;
* a package install whose closing sync never returned (its unsynced mark left, a file empty)
  is done again by the next apply, and only that;
* adding n4 changes only n4 (and registers its Node);
* ``berth verify`` fails, naming the checks, when a unit is stopped or a key file is 0644;
  apply repairs both;
* changing a label patches the Node without restarting any agent;
* removing n4 drains it, deletes its Node and leaves the host clean;
* ``berth destroy`` leaves every host verified clean and as it was before berth (a snapshot of
  packages, units and masks, mounts, links, nftables tables, routes and the trees berth touches,
  taken before the first apply); a second destroy is a no-op; an unreachable host is skipped
  and named (exit 5);
* a single-node cluster (n1 alone) applied and destroyed leaves n1 as it was before berth;
* the units' hardening is in force inside nspawn hosts; ``status`` and ``kubeconfig`` work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config  # the official client, unmodified

from provisioner.lab import Lab, run
from tests.lab.conftest import LabFactory
from tests.lab.host_snapshot import Snapshot, differences, snapshot

pytestmark = pytest.mark.lab

BERTH = [sys.executable, "-m", "provisioner.cli.main"]
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Cluster:
    lab: Lab
    workdir: Path
    state_dir: Path
    commit: str
    """The commit whose ``berth`` every apply ships (others may commit during the module)."""
    before: dict[str, Snapshot] = field(default_factory=dict)
    """Each host as it was before berth's first apply (modules that never destroy skip it)."""

    def unchanged(self, *hosts: str) -> None:
        """Each of ``hosts`` is as it was before berth (names what differs)."""
        changes = {h: differences(self.before[h], snapshot(self.lab, h)) for h in hosts}
        report = [f"{h}: {line}" for h, lines in changes.items() for line in lines]
        assert not report, "not as before berth:\n" + "\n".join(report)

    def spec(
        self, hosts: int = 3, labels: dict[str, str] | None = None, *, impatient: bool = False
    ) -> Path:
        """A spec for the first ``hosts`` lab hosts (absolute SSH paths, optional n3 labels;
        ``impatient``: give up on an unreachable host after 2 s, without retries)."""
        document: dict[str, Any] = yaml.safe_load(self.lab.spec_path.read_text())
        body = document["spec"]
        body["ssh"]["identityFile"] = str(self.lab.key_path)
        body["ssh"]["knownHostsFile"] = str(self.lab.known_hosts_path)
        if impatient:
            body["ssh"].update(connectTimeout=2, retries=0)
        body["hosts"] = body["hosts"][:hosts]
        if labels:
            body["hosts"][2]["labels"] = labels
        path = self.workdir / f"cluster-{hosts}-{len(labels or {})}-{int(impatient)}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    def berth(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        # 600 s, as apply_lab_spec: a hang guard only. An apply took up to ~350 s in full
        # `make test` runs (labs side by side), and test_certs_renew's renew goes through here.
        env = {
            **os.environ,
            "BERTH_STATE_DIR": str(self.state_dir),
            "BERTH_BUNDLE_SOURCE": self.commit,
        }
        return subprocess.run(
            [*BERTH, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
        )

    def events(self, *args: str) -> list[dict[str, Any]]:
        result = self.berth(*args, "--output", "json")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / self.lab.name / "kubeconfigs" / "admin.conf"

    def core_api(self) -> client.CoreV1Api:
        return client.CoreV1Api(config.new_client_from_config(str(self.kubeconfig)))  # type: ignore[no-untyped-call]

    def nodes(self) -> dict[str, Any]:
        return {str(n.metadata.name): n for n in self.core_api().list_node().items if n.metadata}

    def sh(self, host: str, command: str) -> str:
        code, out, err = run(self.lab, host, command)
        assert code == 0, f"{host}: {command}: {err}"
        return out


@pytest.fixture(scope="module")
def cluster(lab_factory: LabFactory, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    lab = lab_factory(4)
    work = tmp_path_factory.mktemp("e2e")
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    before = {host: snapshot(lab, host) for host in ("n1", "n2", "n3")}
    return Cluster(lab, work, work / "state", commit, before)


def _ready(node: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def _changed_hosts(events: list[dict[str, Any]]) -> set[str]:
    # preflight's "all checks passed" is a host-less "done"; verify reports, it changes nothing
    return {
        e["host"] for e in events if e["kind"] == "done" and e["host"] and e["phase"] != "verify"
    }


def test_bootstrap_one_plus_two(cluster: Cluster) -> None:
    result = cluster.berth("apply", "-i", str(cluster.spec(3)), "--yes")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "checks passed" in result.stdout
    assert f"kubectl --kubeconfig {cluster.kubeconfig} get nodes" in result.stdout
    assert oct(cluster.kubeconfig.stat().st_mode & 0o777) == "0o600"
    nodes = cluster.nodes()
    assert sorted(nodes) == ["n1", "n2", "n3"]
    assert all(_ready(n) for n in nodes.values())
    # real container nodes by default, proven by verify's smoke pods behind a ClusterIP
    assert all(
        n.status.node_info.container_runtime_version.startswith("runc://") for n in nodes.values()
    )
    assert result.stdout.count("reaches every pod") == 3
    assert "node-role.kubernetes.io/control-plane" in nodes["n1"].metadata.labels
    assert not nodes["n1"].spec.taints  # control plane + worker: schedulable
    assert cluster.sh("n1", "stat -c '%a %U' /etc/berth/pki/apiserver.key").strip() == "600 root"
    assert cluster.sh("n2", "test -e /etc/berth/pki/apiserver.key || echo absent").strip() == (
        "absent"
    )


def test_unit_hardening_is_in_force_inside_the_hosts(cluster: Cluster) -> None:
    pid = cluster.sh("n1", "systemctl show -p MainPID --value berth-apiserver").strip()
    assert "NoNewPrivs:\t1" in cluster.sh("n1", f"cat /proc/{pid}/status")
    # ProtectSystem=strict: /usr is read-only in the API server's mount namespace
    attempt = run(cluster.lab, "n1", f"nsenter -t {pid} -m touch /usr/berth-probe")
    assert attempt[0] != 0
    assert "Read-only file system" in attempt[2]
    # the agent's containers outlive it (KillMode=process), and it comes back after any exit
    agent = cluster.sh("n1", "systemctl show -p Restart -p KillMode berth-agent").split()
    assert sorted(agent) == ["KillMode=process", "Restart=always"]


def test_status_and_kubeconfig(cluster: Cluster) -> None:
    status = cluster.berth("status", "-i", str(cluster.spec(3)))
    assert status.returncode == 0, status.stderr
    for host in ("n1", "n2", "n3"):
        assert host in status.stdout
    assert status.stdout.count("Ready") >= 3
    assert "leader elected: kube-scheduler" in status.stdout
    assert "first to expire" in status.stdout
    cluster.kubeconfig.unlink()
    rewritten = cluster.berth("kubeconfig", "-i", str(cluster.spec(3)))
    assert rewritten.returncode == 0, rewritten.stderr
    assert rewritten.stdout.splitlines()[0] == str(cluster.kubeconfig)
    assert cluster.kubeconfig.stat().st_mode & 0o777 == 0o600
    assert sorted(cluster.nodes()) == ["n1", "n2", "n3"]


def test_second_apply_changes_nothing(cluster: Cluster) -> None:
    result = cluster.berth("apply", "-i", str(cluster.spec(3)), "--yes")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "plan: 0 change(s)" in result.stdout


def test_an_install_whose_sync_never_returned_is_done_again(cluster: Cluster) -> None:
    # dpkg runs with --force-unsafe-io and one sync after it (operations.packages): a power cut
    # before that sync returned leaves dpkg's status saying "installed" over files that may
    # never have reached the disk, and the package's unsynced mark in place. Simulated on n2:
    # the mark back, runc's binary empty. The next apply installs runc again, and only that.
    whole = cluster.sh("n2", "sha256sum /usr/sbin/runc")
    marks = "/var/lib/berth/dpkg-unsynced"
    cluster.sh("n2", f": > /usr/sbin/runc && mkdir -p -m 0700 {marks} && touch {marks}/runc")
    events = cluster.events("apply", "-i", str(cluster.spec(3)), "--yes")
    done = {e["data"].get("op") for e in events if e["kind"] == "done" and e["host"] == "n2"}
    assert _changed_hosts(events) - {"(cluster)"} == {"n2"}
    assert [str(op).split(":")[0] for op in done - {None}] == ["debs"], done
    assert cluster.sh("n2", "sha256sum /usr/sbin/runc") == whole
    assert cluster.sh("n2", f"ls -A {marks}") == ""
    result = cluster.berth("apply", "-i", str(cluster.spec(3)), "--yes")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "plan: 0 change(s)" in result.stdout


def test_adding_a_host_changes_only_that_host(cluster: Cluster) -> None:
    events = cluster.events("apply", "-i", str(cluster.spec(4)), "--yes")
    assert _changed_hosts(events) == {"n4", "(cluster)"}
    nodes = cluster.nodes()
    assert sorted(nodes) == ["n1", "n2", "n3", "n4"]
    assert _ready(nodes["n4"])


def test_verify_names_a_stopped_unit_and_a_world_readable_key(cluster: Cluster) -> None:
    cluster.sh("n2", "systemctl stop berth-agent && chmod 0644 /etc/berth/pki/agent-serving.key")
    junit = cluster.workdir / "verify.xml"
    result = cluster.berth(
        "verify", "-i", str(cluster.spec(4)), "--no-smoke", "--output", "json", "--junit",
        str(junit),
    )  # fmt: skip
    assert result.returncode == 7, result.stderr
    junit_failures = {
        case.get("name")
        for case in ET.parse(junit).iter("testcase")
        if case.find("failure") is not None
    }
    assert "unit berth-agent.service active+enabled" in junit_failures
    failed = {(c["host"], c["name"]) for c in json.loads(result.stdout)["checks"] if not c["ok"]}
    assert ("n2", "unit berth-agent.service active+enabled") in failed
    assert ("n2", "file /etc/berth/pki/agent-serving.key 0600 root:root") in failed
    assert "berth-agent.service" in result.stderr  # the error line names the failing checks
    repaired = cluster.berth("apply", "-i", str(cluster.spec(4)), "--yes")
    assert repaired.returncode == 0, repaired.stdout[-3000:] + repaired.stderr[-2000:]
    assert cluster.sh("n2", "stat -c %a /etc/berth/pki/agent-serving.key").strip() == "600"


def test_label_change_patches_the_node_without_restarts(cluster: Cluster) -> None:
    before = {h: cluster.sh(h, "systemctl show -p MainPID berth-agent") for h in ("n1", "n3")}
    result = cluster.berth("apply", "-i", str(cluster.spec(4, {"tier": "gold"})), "--yes")
    assert result.returncode == 0, result.stderr[-2000:]
    assert cluster.nodes()["n3"].metadata.labels.get("tier") == "gold"
    after = {h: cluster.sh(h, "systemctl show -p MainPID berth-agent") for h in ("n1", "n3")}
    assert after == before


def test_removing_a_host_drains_deletes_and_cleans_it(cluster: Cluster) -> None:
    api = cluster.core_api()
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="on-n4"),
        spec=client.V1PodSpec(
            node_name="n4", containers=[client.V1Container(name="c", image="busybox:1.36")]
        ),
    )
    api.create_namespaced_pod("default", pod)
    events = cluster.events("apply", "-i", str(cluster.spec(3, {"tier": "gold"})), "--yes")
    lines = [e["message"] for e in events if e["host"] == "(cluster)"]
    assert any("node n4: cordoned, 1 pod(s) evicted, Node deleted" in line for line in lines), lines
    left = {p.metadata.name for p in api.list_namespaced_pod("default").items if p.metadata}
    assert "on-n4" not in left
    assert any("host n4: n4:" in line and "verified clean" in line for line in lines), lines
    assert sorted(cluster.nodes()) == ["n1", "n2", "n3"]
    assert cluster.sh("n4", "ls /opt/berth /etc/berth 2>&1 || true").count("No such file") == 2


def test_destroy_leaves_every_host_clean_and_is_idempotent(cluster: Cluster) -> None:
    spec = str(cluster.spec(3, {"tier": "gold"}))
    kept = cluster.berth("destroy", "-i", spec, "--yes", "--keep-data")
    assert kept.returncode == 0, kept.stdout[-3000:] + kept.stderr[-2000:]
    assert cluster.sh("n1", "ls /var/lib/berth/datastore").strip() != ""  # the datastore stays
    assert cluster.sh("n1", "ls /opt/berth /etc/berth 2>&1 || true").count("No such file") == 2
    first = cluster.berth("destroy", "-i", spec, "--yes")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert "n1: 1 change(s); verified clean" in first.stdout  # now /var/lib/berth went too
    for host in ("n1", "n2", "n3"):
        assert f"{host}: " in first.stdout
        assert "berth" not in cluster.sh(
            host, "systemctl list-unit-files 'berth*' --no-legend || true"
        )
    assert first.stdout.count("verified clean") == 3
    cluster.unchanged("n1", "n2", "n3")  # packages berth installed went too
    second = cluster.berth("destroy", "-i", spec, "--yes")
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.count("nothing to remove; verified clean") == 3


def test_destroy_skips_an_unreachable_host_and_says_so(cluster: Cluster) -> None:
    cluster.lab.cut("n2")
    try:
        result = cluster.berth("destroy", "-i", str(cluster.spec(3, impatient=True)), "--yes")
    finally:
        cluster.lab.heal("n2")
    assert result.returncode == 5, result.stdout + result.stderr
    assert "n2: skipped, unreachable" in result.stdout
    assert result.stdout.count("nothing to remove; verified clean") == 2
    assert "skipped unreachable host(s): n2" in result.stderr


def test_single_node_cluster_destroyed_leaves_the_host_as_before_berth(cluster: Cluster) -> None:
    spec = str(cluster.spec(1))
    applied = cluster.berth("apply", "-i", spec, "--yes")
    assert applied.returncode == 0, applied.stdout[-3000:] + applied.stderr[-2000:]
    destroyed = cluster.berth("destroy", "-i", spec, "--yes")
    assert destroyed.returncode == 0, destroyed.stdout[-3000:] + destroyed.stderr[-2000:]
    assert "n1: " in destroyed.stdout, destroyed.stdout
    assert "verified clean" in destroyed.stdout, destroyed.stdout
    cluster.unchanged("n1")
