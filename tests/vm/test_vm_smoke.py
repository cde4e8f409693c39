"""berth on one QEMU VM (``berth lab up --vm``): what a container lab cannot show.

The VM smoke of ``make test`` (the 3-VM module and the vagrant one are ``make vm-test``: see
tests/vm/conftest.py). One VM, one module (each step needs the one before; a failure stops the
rest):

* the VM runs its own kernel (Debian's cloud kernel, not the machine's) with systemd as init,
  reachable over SSH with its pinned host key;
* ``berth apply`` of a single-node cluster passes (it ends with ``berth verify``);
* a power cut (QEMU's reset: no shutdown, tmpfs and page cache lost) of the node, which is its
  own control plane: the API comes back and the node Ready by itself (units enabled, what the
  install phases set persisted), *the same* pod runs again in a new sandbox and container (its
  old sandbox, whose netns lived on a tmpfs, is gone), and ``berth verify`` passes again;
* freeze/thaw pause and resume the VM (SSH hangs, then answers);
* ``lab down`` leaves no QEMU process, tap, bridge or disk behind.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import yaml

from provisioner.lab import boot, network, qemu
from provisioner.smoke_image import smoke_image
from tests.lab.clusters import kubectl, wait_for, web_pod_spec
from tests.vm.cluster import VmCluster
from tests.vm.conftest import VmLabFactory

# not marked vm: this module is part of `make test` (the one VM module that is)
pytestmark = [pytest.mark.lab, pytest.mark.timeout(2400)]  # TCG: slow

BOOT = 600.0  # a power cycle under TCG on a loaded machine: ~30-90 s boot, generously
CONVERGE = 600.0  # the pod Ready again after the node is
POD = "survivor"


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


def _pod(image: str) -> dict[str, Any]:
    spec = web_pod_spec(image, "hostname")
    spec["tolerations"] = [{"operator": "Exists"}]  # the node's NotReady taints too
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": POD}, "spec": spec}


def _ready_pod(vm: VmCluster) -> dict[str, Any] | None:
    pod: dict[str, Any] = vm.get("pod", POD)
    conditions = (pod.get("status") or {}).get("conditions") or []
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return pod if ready else None


def _started(pod: dict[str, Any]) -> str:
    """When the pod's running container started (by the node's clock): a new process after
    a power cut. (Its id and restart count may repeat: the runtime's record of a container
    started shortly before the cut can be lost with the page cache, and the kubelet too counts
    restarts from the records its runtime kept.)"""
    (status,) = pod["status"]["containerStatuses"]
    return str(((status.get("state") or {}).get("running") or {}).get("startedAt", ""))


def test_after_a_power_cut_the_node_and_its_pod_come_back_by_themselves(vm: VmCluster) -> None:
    assert vm.kubeconfig.is_file(), "apply failed"
    created = kubectl(
        vm.kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(_pod(smoke_image().reference))
    )
    assert created.returncode == 0, created.stderr
    before = wait_for("the pod Ready", lambda: _ready_pod(vm), timeout=CONVERGE)
    boot_id = vm.boot_id()
    assert boot_id
    vm.lab.reset("n1")  # no shutdown: nothing marks the pod, its sandbox's netns is lost
    wait_for("n1 to boot again", lambda: (vm.boot_id() or boot_id) != boot_id, timeout=BOOT)
    wait_for("node n1 Ready after the power cut", lambda: vm.node_ready("n1"), timeout=BOOT)

    def restarted() -> dict[str, Any] | None:
        pod = _ready_pod(vm)
        return pod if pod and _started(pod) not in ("", _started(before)) else None

    after = wait_for("the pod Ready again in a new container", restarted, timeout=CONVERGE)
    assert after["metadata"]["uid"] == before["metadata"]["uid"]  # the same pod, not replaced
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
