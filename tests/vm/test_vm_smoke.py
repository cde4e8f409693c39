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

import pytest

from provisioner.lab import boot, network, qemu
from tests.lab.clusters import wait_for
from tests.vm.cluster import VmCluster
from tests.vm.conftest import VmLabFactory

pytestmark = [pytest.mark.lab, pytest.mark.vm, pytest.mark.timeout(2400)]  # TCG: slow

BOOT = 600.0  # a reboot under TCG on a loaded machine: shutdown + ~30-90 s boot, generously


@pytest.fixture(scope="module")
def vm(vm_lab_factory: VmLabFactory, tmp_path_factory: pytest.TempPathFactory) -> VmCluster:
    return VmCluster(vm_lab_factory(1), tmp_path_factory.mktemp("vm-smoke"))


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
    assert vm.node_ready("n1")


def test_after_a_clean_reboot_the_node_comes_back_ready_by_itself(vm: VmCluster) -> None:
    assert vm.kubeconfig.is_file(), "apply failed"
    before = vm.boot_id()
    assert before
    vm.lab.reboot("n1")
    wait_for("n1 to boot again", lambda: (vm.boot_id() or before) != before, timeout=BOOT)
    wait_for("node n1 Ready after the reboot", lambda: vm.node_ready("n1"), timeout=BOOT)
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
