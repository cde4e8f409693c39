"""Hosts as users have them: clusters mixing Debian 12 (python 3.11) and Debian 13 (3.13).

One lab of four hosts: n1 and n4 boot Debian 12 (bookworm), n2 and n3 Debian 13 (trixie). Each host
is shipped the berth bundle of its own python3 and the .debs of its own release (runc, CNI
plugins, nftables); ``berth apply`` ends with ``berth verify`` (smoke pods on runc on every
node, a Service reaching every pod, DNS, the API checks), so a passing apply is the proof.

* an HA control plane of etcd members on Debian 12, 12 and 13 (n1, n4, n2): every member runs
  Debian 13's etcd 3.5 (one etcd release shipped to every member, the newest of their
  releases), the cluster verifies and is healthy, then torn down clean;
* a control plane on Debian 12 with a Debian 13 worker, then torn down clean;
* a cluster of Debian 13 hosts only (control plane n2, worker n3): applied, checked with
  kubectl, upgraded to a new release (each host its cp313 bundle), torn down clean.

The other mixes are in other modules, to spend no lab time twice: tests/lab/test_upgrade.py
upgrades a control plane on 12 with a worker on 13; tests/lab/test_ha_cluster.py runs an HA
control plane on 13 (etcd 3.5) with a worker on 12 through apply, upgrade and destroy.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.lab import Lab
from tests.lab.builds import OLD, make_build
from tests.lab.clusters import BERTH, apply_lab_spec, kubectl, wait_for
from tests.lab.conftest import LabFactory

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(900)]

RELEASES = ["bookworm", "trixie", "trixie", "bookworm"]
NEW = "0.2.0"
DEBIAN_12 = "Debian GNU/Linux 12 (bookworm)"
DEBIAN_13 = "Debian GNU/Linux 13 (trixie)"


@pytest.fixture(scope="module")
def mixed_lab(lab_factory: LabFactory) -> Lab:
    # trixie hosts under a loaded machine: sshd may take more than the default minute
    return lab_factory(len(RELEASES), releases=RELEASES, timeout=180)


def _ssh(lab: Lab, host: str, command: str) -> str:
    done = subprocess.run(
        [*lab.ssh_argv(host), command], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _hosts(roles: dict[str, list[str]], *, datastore: str = "sqlite") -> Any:
    def edit(document: dict[str, Any]) -> None:
        hosts = {h["name"]: h for h in document["spec"]["hosts"]}
        document["spec"]["hosts"] = [{**hosts[name], "roles": r} for name, r in roles.items()]
        document["spec"]["datastore"] = {"type": datastore}

    return edit


def _berth(work: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BERTH, *args], capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "BERTH_STATE_DIR": str(work / "state"), **env},
    )  # fmt: skip


def _destroy_clean(lab: Lab, work: Path, hosts: tuple[str, ...]) -> None:
    done = _berth(work, "destroy", "-i", str(work / "cluster.yaml"), "--yes")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    for host in hosts:
        left = _ssh(
            lab,
            host,
            "test -e /opt/berth && echo /opt/berth; systemctl list-units 'berth-*' --all"
            " --no-legend --plain",
        )
        assert left == "", f"{host} kept: {left}"


def _nodes(admin: Path) -> dict[str, dict[str, Any]]:
    """The cluster's Nodes as ``kubectl get nodes`` lists them."""
    out = kubectl(admin, "get", "nodes", "-o", "yaml")
    assert out.returncode == 0, out.stderr
    return {n["metadata"]["name"]: n for n in yaml.safe_load(out.stdout)["items"]}


def _abis(lab: Lab, host: str) -> set[str]:
    """The CPython tags of the compiled modules in the bundle ``host`` runs (its wheels)."""
    found = _ssh(lab, host, "find /opt/berth/current/site/ -name '*.cpython-*-x86_64-linux-gnu.so'")
    return {line.rsplit(".cpython-", 1)[1].split("-")[0] for line in found.split()}


def _ready(node: dict[str, Any]) -> bool:
    conditions = node["status"].get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _assert_nodes(admin: Path, os_images: dict[str, str], release: str = OLD) -> None:
    """Every Node of ``os_images`` (and no other) Ready on ``release`` with runc, reporting
    its host's release (polled: after an upgrade the agents re-register one at a time)."""

    def settled() -> dict[str, dict[str, Any]] | None:
        nodes = _nodes(admin)
        ok = set(nodes) == set(os_images) and all(
            _ready(n) and n["status"]["nodeInfo"]["kubeletVersion"].endswith(f"+berth.{release}")
            for n in nodes.values()
        )
        return nodes if ok else None

    nodes = wait_for(f"every node Ready on {release}", settled, timeout=180)
    assert {name: n["status"]["nodeInfo"]["osImage"] for name, n in nodes.items()} == os_images
    runtimes = {n["status"]["nodeInfo"]["containerRuntimeVersion"] for n in nodes.values()}
    assert all(r.startswith("runc://") for r in runtimes), runtimes


def test_the_lab_boots_each_release_with_its_own_python(mixed_lab: Lab) -> None:
    assert "bookworm" in _ssh(mixed_lab, "n1", "grep CODENAME /etc/os-release")
    assert _ssh(mixed_lab, "n1", "python3 -V").startswith("Python 3.11.")
    assert "trixie" in _ssh(mixed_lab, "n2", "grep CODENAME /etc/os-release")
    assert _ssh(mixed_lab, "n2", "python3 -V").startswith("Python 3.13.")


ETCDCTL = (
    "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/berth/etcd/pki/ca.crt"
    " --cert=/etc/berth/etcd/pki/client.crt --key=/etc/berth/etcd/pki/client.key"
)


# a cold HA apply (three members joined one at a time, then verify) takes minutes on this
# loaded 2-core machine
@pytest.mark.timeout(1500)
def test_an_ha_control_plane_on_debian_12_12_and_13_runs_debian_13s_etcd_everywhere(
    mixed_lab: Lab, tmp_path: Path
) -> None:
    """An HA control plane with one Debian 13 member: etcd members of 3.4 and 3.5 may share a
    cluster only mid-upgrade, so every member installs Debian 13's etcd 3.5 .debs (their
    dependencies are met on Debian 12); ``berth apply`` ends with ``berth verify``."""
    members = ("n1", "n4", "n2")
    roles = ["control-plane", "worker"]
    document = yaml.safe_load(mixed_lab.spec_path.read_text())
    _hosts(dict.fromkeys(members, roles), datastore="etcd")(document)
    document["spec"]["ssh"]["identityFile"] = str(mixed_lab.key_path)
    document["spec"]["ssh"]["knownHostsFile"] = str(mixed_lab.known_hosts_path)
    spec = tmp_path / "cluster.yaml"
    spec.write_text(yaml.safe_dump(document, sort_keys=False))
    checked = _berth(tmp_path, "preflight", "-i", str(spec))
    assert checked.returncode == 0, (checked.stdout + checked.stderr)[-3000:]
    applied = subprocess.run(
        [*BERTH, "apply", "-i", str(spec), "--yes"], capture_output=True, text=True,
        timeout=1400, check=False, env={**os.environ, "BERTH_STATE_DIR": str(tmp_path / "state")},
    )  # fmt: skip
    assert applied.returncode == 0, applied.stdout[-4000:] + applied.stderr[-3000:]
    admin = tmp_path / "state" / mixed_lab.name / "kubeconfigs" / "admin.conf"
    _assert_nodes(admin, {"n1": DEBIAN_12, "n4": DEBIAN_12, "n2": DEBIAN_13})
    for host in members:
        assert _ssh(mixed_lab, host, "etcd --version").startswith("etcd Version: 3.5."), host
        query = "dpkg-query -W -f '${Package} ${Version}\\n' etcd-server etcd-client"
        shipped = dict(line.split() for line in _ssh(mixed_lab, host, query).splitlines())
        assert sorted(shipped) == ["etcd-client", "etcd-server"], f"{host}: {shipped}"
        assert all(v.startswith("3.5.") for v in shipped.values()), f"{host}: {shipped}"
    assert _abis(mixed_lab, "n1") == {"311"}
    assert _abis(mixed_lab, "n2") == {"313"}

    def healthy() -> list[str] | None:
        done = subprocess.run(
            [*mixed_lab.ssh_argv("n1"), f"{ETCDCTL} endpoint health --cluster"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        # one line per member: "https://10.0.0.1:2379 is healthy: successfully committed ..."
        ok = [line.split()[0] for line in done.stdout.splitlines() if " is healthy" in line]
        return ok if done.returncode == 0 and len(ok) == len(members) else None

    addresses = {mixed_lab.host(h).address for h in members}
    ok = wait_for("every etcd member healthy", healthy, timeout=120)
    assert {e.split("//")[1].rsplit(":", 1)[0] for e in ok} == addresses
    _destroy_clean(mixed_lab, tmp_path, members)
    for host in members:
        left = _ssh(mixed_lab, host, "command -v etcd; true")
        assert left == "", f"{host} kept etcd: {left}"


def test_control_plane_on_12_and_a_worker_on_13_then_torn_down_clean(
    mixed_lab: Lab, tmp_path: Path
) -> None:
    roles = {"n1": ["control-plane", "worker"], "n2": ["worker"]}
    admin = apply_lab_spec(mixed_lab, tmp_path, _hosts(roles))
    _assert_nodes(admin, {"n1": DEBIAN_12, "n2": DEBIAN_13})
    # each host runs the bundle built for its own python3, from its own release's packages
    assert _abis(mixed_lab, "n2") == {"313"}
    assert _abis(mixed_lab, "n1") == {"311"}
    assert "1.1.15" in _ssh(mixed_lab, "n2", "dpkg-query -W -f '${Version}' runc")
    assert "1.1.5" in _ssh(mixed_lab, "n1", "dpkg-query -W -f '${Version}' runc")
    _destroy_clean(mixed_lab, tmp_path, ("n1", "n2"))


def test_a_debian_13_cluster_applies_upgrades_and_is_torn_down_clean(
    mixed_lab: Lab, tmp_path: Path
) -> None:
    roles = {"n2": ["control-plane", "worker"], "n3": ["worker"]}
    admin = apply_lab_spec(mixed_lab, tmp_path, _hosts(roles))
    _assert_nodes(admin, {"n2": DEBIAN_13, "n3": DEBIAN_13})
    for host in ("n2", "n3"):
        assert "1.1.15" in _ssh(mixed_lab, host, "dpkg-query -W -f '${Version}' runc")
    # a new release, built from a copy of this tree: each host gets its cp313 bundle
    build = make_build(tmp_path, NEW)
    spec = tmp_path / "cluster.yaml"
    new_spec = tmp_path / "cluster-new.yaml"
    new_spec.write_text(spec.read_text().replace(f"version: {OLD}", f"version: {NEW}"))
    upgraded = subprocess.run(
        [*BERTH, "upgrade", "-i", str(new_spec), "--to", NEW, "--yes"], cwd=build.tree,
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "BERTH_STATE_DIR": str(tmp_path / "state"),
             "BERTH_BUNDLE_SOURCE": "worktree", "PYTHONPATH": str(build.tree)},
    )  # fmt: skip
    assert upgraded.returncode == 0, upgraded.stdout[-4000:] + upgraded.stderr[-3000:]
    for host in ("n2", "n3"):
        current = _ssh(mixed_lab, host, "readlink /opt/berth/current").strip()
        assert current.rsplit("/", 1)[-1].startswith(f"{NEW}-"), f"{host}: {current}"
        assert _abis(mixed_lab, host) == {"313"}, host
    _assert_nodes(admin, {"n2": DEBIAN_13, "n3": DEBIAN_13}, release=NEW)
    _destroy_clean(mixed_lab, tmp_path, ("n2", "n3"))
