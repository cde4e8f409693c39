"""berth on three QEMU VMs (``berth lab up 3 --vm``): what only real machines show.

n1 is the control plane (and a worker), n2 and n3 are workers, each a VM with its own kernel.
One lab and one cluster for the module; each step needs the one before (a failure stops the
rest):

* ``berth apply`` passes (it ends with ``berth verify``: every node's pods answer a Service
  from every node), and a DaemonSet's pod runs and is Ready on every node;
* a worker rebooted cleanly from inside comes back Ready and runs its DaemonSet pod again, with
  no operator action: units enabled, kernel modules and sysctls, routes and nftables restored,
  the pod stopped by the graceful shutdown replaced on the node (``berth verify`` passes again);
* the control-plane VM rebooted: the API server comes back and the cluster converges (every
  node Ready, every DaemonSet pod Ready, ``berth verify`` passes);
* a worker's power cut (QEMU killed: no shutdown, its page cache lost): the cluster sees the
  node go NotReady; powered on, the node is Ready again and runs *the same* pod (same UID, not
  replaced: nothing marked it failed) in a new container;
* ``berth destroy`` leaves every host verified clean, and ``lab down`` leaves nothing on the
  machine: no QEMU process, tap, bridge, disk or control socket.

Under TCG on the shared 2-core machine this module takes most of an hour: it is ``make vm-test``
only (see tests/vm/conftest.py).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from provisioner.lab import network, qemu
from provisioner.smoke_image import smoke_image
from tests.lab.clusters import kubectl, wait_for, web_pod_spec
from tests.vm.cluster import VmCluster
from tests.vm.conftest import VmLabFactory

pytestmark = [pytest.mark.lab, pytest.mark.vm, pytest.mark.timeout(3600)]  # TCG: slow

HOSTS = ("n1", "n2", "n3")
BOOT = 900.0  # a reboot under TCG on a loaded machine: shutdown + boot + agent start, generously
CONVERGE = 900.0  # every node's pods Ready again after a fault
NODE_GRACE = 40.0  # the node lifecycle controller's grace before a silent node is NotReady
DAEMONSET = "echo"


@pytest.fixture(scope="module")
def vms(vm_lab_factory: VmLabFactory, tmp_path_factory: pytest.TempPathFactory) -> VmCluster:
    started = time.monotonic()
    lab = vm_lab_factory(3)
    print(f"3 VMs booted in {time.monotonic() - started:.0f}s (to every sshd: {lab.boot_seconds})")
    return VmCluster(lab, tmp_path_factory.mktemp("vm-cluster"))


def _daemonset(image: str) -> dict[str, Any]:
    spec = web_pod_spec(image, "hostname")
    spec["tolerations"] = [{"operator": "Exists"}]  # every taint, NoExecute included
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": DAEMONSET, "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": DAEMONSET}},
            "template": {"metadata": {"labels": {"app": DAEMONSET}}, "spec": spec},
        },
    }


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _ready_pods(vms: VmCluster) -> dict[str, dict[str, Any]] | None:
    """The DaemonSet's live pod on each node, once every node has a Ready one."""
    pods = vms.get("pods", "-l", f"app={DAEMONSET}")["items"]
    live = {
        p["spec"]["nodeName"]: p
        for p in pods
        if not p["metadata"].get("deletionTimestamp") and _ready(p)
    }
    return live if set(live) == set(HOSTS) else None


def _all_nodes_ready(vms: VmCluster) -> bool:
    return all(vms.node_ready(h) for h in HOSTS)


def _container_id(pod: dict[str, Any]) -> str:
    """The runtime's id of the pod's container (a new one after a restart or a replacement)."""
    (status,) = pod["status"]["containerStatuses"]
    return str(status.get("containerID", ""))


def _reboot_and_wait(vms: VmCluster, host: str) -> float:
    before = vms.boot_id(host)
    assert before
    started = time.monotonic()
    vms.lab.reboot(host)
    wait_for(f"{host} to boot again", lambda: (vms.boot_id(host) or before) != before, timeout=BOOT)
    return time.monotonic() - started


def _verify(vms: VmCluster) -> None:
    verified = vms.berth("verify", "-i", str(vms.spec))
    assert verified.returncode == 0, verified.stdout[-4000:] + verified.stderr[-2000:]


def _uptime() -> str:
    with open("/proc/loadavg") as loadavg:
        return "load " + " ".join(loadavg.read().split()[:3])


def test_apply_and_verify_on_three_vms(vms: VmCluster) -> None:
    started = time.monotonic()
    applied = vms.berth("apply", "-i", str(vms.spec), "--yes")
    assert applied.returncode == 0, applied.stdout[-4000:] + applied.stderr[-2000:]
    print(f"apply (with verify) on 3 VMs: {time.monotonic() - started:.0f}s, {_uptime()}")
    assert _all_nodes_ready(vms)
    for host in HOSTS:  # a real kernel of its own, not the machine's
        assert vms.ssh("uname -r", host=host).endswith("-cloud-amd64")
    created = kubectl(
        vms.kubeconfig,
        "apply",
        "-f",
        "-",
        stdin=yaml.safe_dump(_daemonset(smoke_image().reference)),
    )
    assert created.returncode == 0, created.stderr
    wait_for("the DaemonSet's pod Ready on every node", lambda: _ready_pods(vms), timeout=CONVERGE)


def test_a_rebooted_worker_comes_back_ready_with_its_pods(vms: VmCluster) -> None:
    before = _ready_pods(vms)
    assert before, "the DaemonSet is not running"
    started = time.monotonic()
    took = _reboot_and_wait(vms, "n2")
    wait_for("node n2 Ready after its reboot", lambda: vms.node_ready("n2"), timeout=BOOT)
    after = wait_for("a Ready pod on every node", lambda: _ready_pods(vms), timeout=CONVERGE)
    # a fresh boot runs no container from before: a Ready pod on n2 runs in a new one
    assert _container_id(after["n2"]) != _container_id(before["n2"])
    print(
        f"n2 rebooted (boot {took:.0f}s), Ready with its pod after "
        f"{time.monotonic() - started:.0f}s, {_uptime()}"
    )
    _verify(vms)


def test_the_control_plane_vm_rebooted_the_api_comes_back_and_converges(vms: VmCluster) -> None:
    before = wait_for("the DaemonSet's pods", lambda: _ready_pods(vms), timeout=CONVERGE)
    started = time.monotonic()
    took = _reboot_and_wait(vms, "n1")
    wait_for("the API server after n1's reboot", lambda: vms.get("nodes"), timeout=BOOT)
    wait_for("every node Ready", lambda: _all_nodes_ready(vms), timeout=CONVERGE)
    after = wait_for("a Ready pod on every node", lambda: _ready_pods(vms), timeout=CONVERGE)
    assert _container_id(after["n1"]) != _container_id(before["n1"])
    print(
        f"n1 (control plane) rebooted (boot {took:.0f}s), converged after "
        f"{time.monotonic() - started:.0f}s, {_uptime()}"
    )
    _verify(vms)


def test_a_worker_power_cut_comes_back_with_the_same_pod(vms: VmCluster) -> None:
    before = wait_for("the DaemonSet's pods", lambda: _ready_pods(vms), timeout=CONVERGE)["n3"]
    started = time.monotonic()
    vms.lab.kill("n3")
    wait_for(
        "node n3 NotReady after its power cut",
        lambda: not vms.node_ready("n3"),
        timeout=NODE_GRACE * 10,
    )
    vms.lab.start("n3", timeout=BOOT)
    wait_for("node n3 Ready after power on", lambda: vms.node_ready("n3"), timeout=BOOT)
    after = wait_for("a Ready pod on every node", lambda: _ready_pods(vms), timeout=CONVERGE)
    # nothing marked the pod failed (no shutdown ran): the same pod, in a new container
    assert after["n3"]["metadata"]["uid"] == before["metadata"]["uid"]
    assert _container_id(after["n3"]) != _container_id(before)
    print(
        f"n3 back from a power cut with its pod after {time.monotonic() - started:.0f}s, "
        f"{_uptime()}"
    )
    _verify(vms)


def test_destroy_leaves_every_host_clean(vms: VmCluster) -> None:
    destroyed = vms.berth("destroy", "-i", str(vms.spec), "--yes")
    assert destroyed.returncode == 0, destroyed.stdout[-3000:] + destroyed.stderr[-2000:]
    assert destroyed.stdout.count("verified clean") == len(HOSTS), destroyed.stdout[-3000:]


def test_lab_down_leaves_nothing_on_the_machine(vms: VmCluster) -> None:
    lab = vms.lab
    taps = [h.veth for h in lab.hosts]
    bridge = lab.state.bridge
    lab_dir = lab.dir
    sockets = sorted(lab_dir.glob("hosts/*/qmp.sock"))
    disks = sorted(lab_dir.glob("hosts/*/disk.qcow2"))
    assert len(qemu.processes_using(lab_dir)) == len(HOSTS)
    assert len(sockets) == len(disks) == len(HOSTS)
    lab.down()
    assert not qemu.processes_using(lab_dir)
    assert not [t for t in taps if network.link_exists(t)]
    assert not network.link_exists(bridge)
    assert not [p for p in (*sockets, *disks) if p.exists()]
    assert not lab_dir.exists()
