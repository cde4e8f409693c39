"""berth on one QEMU VM (``berth lab up --vm``): what a container lab cannot show.

One VM, one module (each step needs the one before; a failure stops the rest):

* the VM runs its own kernel (Debian's cloud kernel, not the machine's) with systemd as init,
  reachable over SSH with its pinned host key;
* ``berth apply`` of a single-node cluster passes (it ends with ``berth verify``);
* a clean reboot from inside: the node comes back Ready by itself (units enabled, what the
  install phases set persisted), and ``berth verify`` passes again;
* freeze/thaw pause and resume the VM (SSH hangs, then answers);
* ``lab down`` leaves no QEMU process, tap, bridge or disk behind.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import paramiko
import pytest
import yaml

from provisioner.lab import boot, network, qemu, run
from provisioner.lab.vmlab import VmLab
from tests.lab.clusters import BERTH, kubectl, wait_for
from tests.vm.conftest import VmLabFactory

pytestmark = [pytest.mark.lab, pytest.mark.vm, pytest.mark.timeout(2400)]  # TCG: slow

BOOT = 600.0  # a reboot under TCG on a loaded machine: shutdown + ~30-90 s boot, generously


class VmCluster:
    """The module's VM lab and the cluster applied on it."""

    def __init__(self, lab: VmLab, work: Path) -> None:
        self.lab = lab
        self.work = work
        self.kubeconfig: Path | None = None

    def ssh(self, command: str, *, timeout: float = 60.0) -> str:
        status, out, err = run(self.lab, "n1", command, timeout=timeout)
        assert status == 0, f"{command}: exit {status}: {err}"
        return out.strip()

    @property
    def spec(self) -> Path:
        """The lab's spec with absolute key paths (written by the fixture)."""
        return self.work / "cluster.yaml"

    def berth(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run berth with this cluster's state dir; an emulated host is slow: 30 min at most."""
        env = {**os.environ, "BERTH_STATE_DIR": str(self.work / "state")}
        return subprocess.run(
            [*BERTH, *args], capture_output=True, text=True, env=env, timeout=1800, check=False
        )


@pytest.fixture(scope="module")
def vm(vm_lab_factory: VmLabFactory, tmp_path_factory: pytest.TempPathFactory) -> VmCluster:
    cluster = VmCluster(vm_lab_factory(1), tmp_path_factory.mktemp("vm-smoke"))
    document = yaml.safe_load(cluster.lab.spec_path.read_text())
    document["spec"]["ssh"]["identityFile"] = str(cluster.lab.key_path)
    document["spec"]["ssh"]["knownHostsFile"] = str(cluster.lab.known_hosts_path)
    cluster.spec.write_text(yaml.safe_dump(document, sort_keys=False))
    return cluster


def _boot_id(vm: VmCluster) -> str | None:
    try:
        return vm.ssh("cat /proc/sys/kernel/random/boot_id", timeout=20)
    except (OSError, AssertionError, EOFError, paramiko.SSHException):  # down or booting
        return None


def _node_ready(vm: VmCluster) -> bool:
    assert vm.kubeconfig is not None
    got = kubectl(
        vm.kubeconfig,
        "get", "node", "n1", "-o",
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
    )  # fmt: skip
    return got.returncode == 0 and got.stdout.strip() == "True"


def test_the_vm_runs_its_own_kernel_with_systemd(vm: VmCluster) -> None:
    assert vm.ssh("cat /proc/1/comm") == "systemd"
    release = vm.ssh("uname -r")
    assert release.endswith("-cloud-amd64")
    assert release != os.uname().release
    state = wait_for(
        "systemd to finish booting",
        lambda: vm.ssh("systemctl is-system-running --wait || true", timeout=300),
        timeout=300,
    )
    assert state == "running", vm.ssh("systemctl --failed --no-legend || true")


def test_apply_passes_on_a_real_kernel(vm: VmCluster) -> None:
    applied = vm.berth("apply", "-i", str(vm.spec), "--yes")
    assert applied.returncode == 0, applied.stdout[-4000:] + applied.stderr[-2000:]
    vm.kubeconfig = vm.work / "state" / vm.lab.name / "kubeconfigs" / "admin.conf"
    assert _node_ready(vm)


def test_after_a_clean_reboot_the_node_comes_back_ready_by_itself(vm: VmCluster) -> None:
    assert vm.kubeconfig is not None, "apply failed"
    before = _boot_id(vm)
    assert before
    vm.lab.reboot("n1")
    wait_for("n1 to boot again", lambda: (_boot_id(vm) or before) != before, timeout=BOOT)
    wait_for("node n1 Ready after the reboot", lambda: _node_ready(vm), timeout=BOOT)
    verify = vm.berth("verify", "-i", str(vm.spec))
    assert verify.returncode == 0, verify.stdout[-4000:] + verify.stderr[-2000:]


def test_freeze_pauses_the_whole_vm_and_thaw_resumes_it(vm: VmCluster) -> None:
    vm.lab.freeze("n1")
    try:
        (status,) = vm.lab.status()
        assert status.frozen
        assert status.running
        assert not status.sshd
    finally:
        vm.lab.thaw("n1")
    (status,) = vm.lab.status()
    assert not status.frozen
    address = status.host.address
    wait_for("sshd after thaw", lambda: boot.sshd_answers(address, timeout=10), timeout=120)


def test_down_leaves_nothing_behind(vm: VmCluster) -> None:
    lab = vm.lab
    tap = lab.host("n1").veth
    bridge = lab.state.bridge
    lab_dir = lab.dir
    assert qemu.processes_using(lab_dir)
    lab.down()
    assert not qemu.processes_using(lab_dir)
    assert not network.link_exists(tap)
    assert not network.link_exists(bridge)
    assert not lab_dir.exists()
