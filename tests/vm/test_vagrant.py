"""The real ``vagrant up`` / ``vagrant destroy`` (vagrant-libvirt) of 2 machines on berth's box.

The box is built locally from the VM lab's image (``berth lab box``; nothing is downloaded),
added to a private ``VAGRANT_HOME``, and the repository's own ``Vagrantfile`` brings up ``cp1``
and ``w1`` from it (``BERTH_VAGRANT_BOX``, ``BERTH_VAGRANT_MACHINES``) under QEMU's TCG. Then, in
order (each step needs the one before; a failure stops the rest):

* both machines run, from the box's kernel, under TCG, with their ``private_network`` address
  configured by Vagrant and DHCP on the management network;
* ``berth inventory from-vagrant`` makes the spec, ``berth apply`` and ``berth verify`` pass and
  both nodes are Ready;
* ``vagrant destroy -f`` leaves libvirt as it found it: no domain, network or volume of the
  project's (the box's base volume, which vagrant-libvirt keeps for the next ``up``, goes with
  ``vagrant box remove`` in the fixture's clean-up, which checks that too).

libvirt's daemons are started directly when they are not running and the machine has no
systemd as PID 1 (a container); the fixture stops what it started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from provisioner.lab.rootfs import default_recipe, ensure_rootfs
from provisioner.lab.vagrantbox import BOX_NAME, ensure_box
from tests.lab.clusters import BERTH, kubectl, wait_for

pytestmark = [pytest.mark.lab, pytest.mark.vm, pytest.mark.timeout(5400)]  # TCG: slow

REPO = Path(__file__).resolve().parents[2]
MACHINES = ("cp1", "w1")
CLUSTER = "vagrant-test"
PRIVATE = {"cp1": "192.168.56.11", "w1": "192.168.56.21"}  # the Vagrantfile's table
VIRSH = ("virsh", "--connect", "qemu:///system")
DAEMONS = (("virtlogd", Path("/run/virtlogd.pid")), ("libvirtd", Path("/run/libvirtd.pid")))


def virsh(*args: str) -> str:
    return subprocess.run(
        [*VIRSH, *args], capture_output=True, text=True, timeout=120, check=True
    ).stdout


def _names(listing: str) -> set[str]:
    return {line.strip() for line in listing.splitlines() if line.strip()}


def libvirt_state() -> dict[str, set[str]]:
    """Every domain, network, pool and (active pool's) volume libvirt knows."""
    pools = _names(virsh("pool-list", "--all", "--name"))
    state = {
        "domains": _names(virsh("list", "--all", "--name")),
        "networks": _names(virsh("net-list", "--all", "--name")),
        "pools": pools,
        "volumes": set(),
    }
    for pool in _names(virsh("pool-list", "--name")):  # active ones only list volumes
        lines = virsh("vol-list", pool).splitlines()[2:]
        state["volumes"] |= {f"{pool}/{line.split()[0]}" for line in lines if line.strip()}
    return state


def _libvirt_answers() -> bool:
    return (
        subprocess.run([*VIRSH, "version"], capture_output=True, timeout=60, check=False).returncode
        == 0
    )


@pytest.fixture(scope="module")
def libvirt() -> Iterator[None]:
    """libvirtd running (started directly here when it is not and PID 1 is not systemd)."""
    started: list[Path] = []
    if not _libvirt_answers():
        if Path("/proc/1/comm").read_text().strip() == "systemd":
            subprocess.run(["systemctl", "start", "libvirtd"], check=True, timeout=120)
        else:
            for daemon, pidfile in DAEMONS:
                subprocess.run([daemon, "--daemon"], check=True, timeout=60)
                started.append(pidfile)
        wait_for("libvirtd to answer", _libvirt_answers, timeout=120)
    yield
    for pidfile in reversed(started):
        with contextlib.suppress(OSError, ValueError):  # gone already
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)


@dataclass
class VagrantProject:
    """A private VAGRANT_HOME with the box added, and a project with the repo's Vagrantfile."""

    top: Path
    before: dict[str, set[str]]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def project(self) -> Path:
        return self.top / "project"

    def vagrant(self, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["vagrant", *args], cwd=self.project, env=self.env, capture_output=True,
            text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def berth(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "BERTH_STATE_DIR": str(self.top / "state")}
        return subprocess.run(
            [*BERTH, *args], cwd=self.project, env=env, capture_output=True, text=True,
            timeout=3000, check=False,
        )  # fmt: skip


def _box_volumes(state: dict[str, set[str]]) -> set[str]:
    prefix = BOX_NAME.replace("/", "-VAGRANTSLASH-") + "_vagrant_box_image_"
    return {v for v in state["volumes"] if v.split("/", 1)[1].startswith(prefix)}


@pytest.fixture(scope="module")
def vagrant(libvirt: None) -> Iterator[VagrantProject]:
    box = ensure_box(ensure_rootfs(default_recipe("bookworm")).path)
    # libvirt's QEMU runs as libvirt-qemu: the box's kernel must be reachable, so not under /tmp's
    # private pytest directories (0700).
    top = Path(tempfile.mkdtemp(prefix="berth-vagrant-", dir="/var/tmp"))
    top.chmod(0o755)
    (top / "project").mkdir()
    shutil.copy(REPO / "Vagrantfile", top / "project/Vagrantfile")
    env = {
        **os.environ,
        "VAGRANT_HOME": str(top / "vagrant.d"),
        "VAGRANT_DEFAULT_PROVIDER": "libvirt",
        "BERTH_VAGRANT_BOX": BOX_NAME,
        "BERTH_VAGRANT_MACHINES": ",".join(MACHINES),
        "BERTH_VAGRANT_KEY": str(top / "berth_key"),
        "PYTHONPATH": str(REPO),
    }
    project = VagrantProject(top=top, before=libvirt_state(), env=env)
    added = project.vagrant("box", "add", "--name", BOX_NAME, str(box.path), timeout=600)
    assert added.returncode == 0, added.stdout + added.stderr
    try:
        yield project
    finally:
        project.vagrant("destroy", "-f", timeout=1200)  # a no-op after the destroy test
        project.vagrant("box", "remove", "--force", BOX_NAME, timeout=300)
        pools_made = libvirt_state()["pools"] - project.before["pools"]
        for volume in _box_volumes(libvirt_state()) - project.before["volumes"]:
            pool, name = volume.split("/", 1)
            virsh("vol-delete", "--pool", pool, name)
        for pool in pools_made:  # vagrant-libvirt defines "default" when it is missing
            virsh("pool-destroy", pool)
            virsh("pool-undefine", pool)
        after = libvirt_state()
        shutil.rmtree(top, ignore_errors=True)
        assert after == project.before, "libvirt not as found after the box was removed"


def test_vagrant_up_starts_both_machines_from_the_local_box(vagrant: VagrantProject) -> None:
    up = vagrant.vagrant("up", "--provider=libvirt")
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
    status = vagrant.vagrant("status", "--machine-readable", timeout=300)
    states = {
        line.split(",")[1]: line.split(",")[3]
        for line in status.stdout.splitlines()
        if line.split(",")[2:3] == ["state"]
    }
    assert states == dict.fromkeys(MACHINES, "running")
    box_dir = Path(vagrant.env["VAGRANT_HOME"]) / "boxes"
    for machine in MACHINES:
        xml = virsh("dumpxml", f"project_{machine}")
        assert "<domain type='qemu'" in xml  # TCG: no KVM asked for
        assert f"<kernel>{box_dir}/" in xml  # the box's own kernel, booted directly
        addresses = vagrant.vagrant("ssh", machine, "-c", "ip -4 -o addr show", timeout=300)
        assert addresses.returncode == 0, addresses.stderr
        assert f"inet {PRIVATE[machine]}/24" in addresses.stdout  # Vagrant's private_network
        assert "dynamic eth0" in addresses.stdout  # DHCP on vagrant-libvirt's management net


def test_inventory_from_vagrant_then_apply_and_verify(vagrant: VagrantProject) -> None:
    spec = vagrant.top / "cluster.yaml"
    made = vagrant.berth(
        "inventory", "from-vagrant", "--name", CLUSTER, "--control-plane", "cp1", "-o", str(spec)
    )
    assert made.returncode == 0, made.stdout + made.stderr
    document = yaml.safe_load(spec.read_text())
    assert [h["name"] for h in document["spec"]["hosts"]] == list(MACHINES)
    assert "/boxes/" in document["spec"]["ssh"]["identityFile"]  # the box's own key
    applied = vagrant.berth("apply", "-i", str(spec), "--yes")
    assert applied.returncode == 0, applied.stdout[-6000:] + applied.stderr[-6000:]
    verified = vagrant.berth("verify", "-i", str(spec))
    assert verified.returncode == 0, verified.stdout[-6000:] + verified.stderr[-6000:]
    kubeconfig = vagrant.top / "state" / CLUSTER / "kubeconfigs" / "admin.conf"

    def both_ready() -> bool:
        got = kubectl(
            kubeconfig,
            "get", "nodes", "-o",
            "jsonpath={range .items[*]}{.metadata.name}="
            '{.status.conditions[?(@.type=="Ready")].status} {end}',
        )  # fmt: skip
        return got.returncode == 0 and sorted(got.stdout.split()) == [f"{m}=True" for m in MACHINES]

    wait_for("both nodes Ready", both_ready, timeout=600)


def test_vagrant_destroy_leaves_nothing(vagrant: VagrantProject) -> None:
    destroyed = vagrant.vagrant("destroy", "-f", timeout=1200)
    assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    after = libvirt_state()
    assert after["domains"] == vagrant.before["domains"]
    assert after["networks"] == vagrant.before["networks"]
    # only the box's base volume stays (vagrant-libvirt keeps it for the next `up`)
    assert after["volumes"] - vagrant.before["volumes"] == _box_volumes(after)
