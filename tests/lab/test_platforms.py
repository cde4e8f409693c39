"""Hosts as users have them: clusters mixing Debian 12 (python 3.11) and Debian 13 (3.13).

One lab of three hosts: n1 boots Debian 12 (bookworm), n2 and n3 Debian 13 (trixie). Each host
is shipped the berth bundle of its own python3 and the .debs of its own release (runc, CNI
plugins, nftables); ``berth apply`` ends with ``berth verify`` (smoke pods on runc on every
node, a Service reaching every pod, DNS, the API checks), so a passing apply is the proof.

* a control plane on Debian 12 (etcd datastore: Debian 12's etcd 3.4) with a Debian 13 worker;
  Debian 13 control-plane hosts joining it are refused by ``berth preflight`` and ``berth
  apply`` before any change (their etcd 3.5 would be every member's, and berth does not upgrade
  a running etcd's minor version in place); then torn down clean;
* a cluster of Debian 13 hosts only (control plane n2, worker n3): applied, checked with
  kubectl, upgraded to a new release (each host its cp313 bundle), torn down clean.

The other mixes are in other modules, to spend no lab time twice: tests/lab/test_upgrade.py
upgrades a control plane on 12 with a worker on 13; tests/lab/test_ha_cluster.py runs an HA
control plane of two Debian 12 members and one Debian 13 member, all on Debian 13's etcd 3.5,
through apply, faults, upgrade, rollback and destroy.
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

RELEASES = ["bookworm", "trixie", "trixie"]
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


def test_control_plane_on_12_and_a_worker_on_13_refuses_debian_13_etcd_members_then_torn_down(
    mixed_lab: Lab, tmp_path: Path
) -> None:
    roles = {"n1": ["control-plane", "worker"], "n2": ["worker"]}
    admin = apply_lab_spec(mixed_lab, tmp_path, _hosts(roles, datastore="etcd"))
    _assert_nodes(admin, {"n1": DEBIAN_12, "n2": DEBIAN_13})
    # each host runs the bundle built for its own python3, from its own release's packages
    assert _abis(mixed_lab, "n2") == {"313"}
    assert _abis(mixed_lab, "n1") == {"311"}
    assert "1.1.15" in _ssh(mixed_lab, "n2", "dpkg-query -W -f '${Version}' runc")
    assert "1.1.5" in _ssh(mixed_lab, "n1", "dpkg-query -W -f '${Version}' runc")
    assert _ssh(mixed_lab, "n1", "etcd --version").startswith("etcd Version: 3.4.")
    # Debian 13 members would bring etcd 3.5 to every member, n1's running 3.4 included: an
    # in-place etcd minor upgrade berth does not do, refused before any host changes
    grown = yaml.safe_load(mixed_lab.spec_path.read_text())
    cp = ["control-plane", "worker"]
    _hosts({"n1": cp, "n2": cp, "n3": cp}, datastore="etcd")(grown)
    grown["spec"]["ssh"]["identityFile"] = str(mixed_lab.key_path)
    grown["spec"]["ssh"]["knownHostsFile"] = str(mixed_lab.known_hosts_path)
    spec = tmp_path / "cluster-grown.yaml"
    spec.write_text(yaml.safe_dump(grown, sort_keys=False))
    refusal = "etcd members already run another etcd minor than the etcd 3.5 of Debian 13"
    running = "n1 (etcd-server 3.4."
    checked = _berth(tmp_path, "preflight", "-i", str(spec))
    said = " ".join((checked.stdout + checked.stderr).split())
    assert checked.returncode == 4, said[-3000:]  # ExitCode.PREFLIGHT
    assert refusal in said, said[-3000:]
    assert running in said, said[-3000:]
    refused = _berth(tmp_path, "apply", "-i", str(spec), "--yes")
    said = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode != 0, said[-3000:]
    assert refusal in said, said[-3000:]
    assert running in said, said[-3000:]
    assert "nothing was changed" in said, said[-3000:]
    for host in ("n2", "n3"):
        assert _ssh(mixed_lab, host, "command -v etcd; true") == "", host
    assert _ssh(mixed_lab, "n3", "test -e /opt/berth && echo /opt/berth; true") == ""
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
