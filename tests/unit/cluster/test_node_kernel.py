"""A runc node's kernel settings (br_netfilter, ip_forward, bridge-nf-call-iptables) as the
agents phase plans them: loaded/set now and persisted for every boot, on a real host (a VM,
where nothing has set them yet) and in a container (its host's kernel has them built in, and
it has no modprobe); verify's check of them."""

from __future__ import annotations

from pathlib import Path

from provisioner import hostlayout as layout
from provisioner.connectors.base import HostName
from provisioner.operations.base import HostRun, OpContext, Operation, evaluate
from provisioner.operations.kernel import KernelModule, Sysctl, module_file, sysctl_file
from provisioner.phases.cluster.hostside import node_kernel_ops
from provisioner.spec import ClusterSpec, load_spec
from provisioner.verify.hosts import kernel_checks
from tests.unit.operations.simhost import SimHost

SPEC = """\
apiVersion: berth.dev/v1alpha1
kind: Cluster
metadata: {name: unit}
spec:
  hosts:
    - {name: n1, address: 10.0.0.1, roles: [control-plane, worker]}
"""


def _spec(tmp_path: Path, extra: str = "") -> ClusterSpec:
    (tmp_path / "c.yaml").write_text(SPEC + extra)
    return load_spec(tmp_path / "c.yaml")


def _plan(host: SimHost, ops: tuple[Operation, ...]) -> list[str]:
    planned = []
    for op in ops:
        outcome = evaluate(op, OpContext(HostName("sim"), host.facts(op.facts()), HostRun()))
        for command in outcome.commands:
            host.execute(command)
            planned.append(command.describe())
    return planned


def test_a_runc_node_gets_br_netfilter_and_its_sysctls_now_and_at_boot(tmp_path: Path) -> None:
    assert node_kernel_ops(_spec(tmp_path)) == (
        KernelModule("br_netfilter", provides="/proc/sys/net/bridge"),
        Sysctl("net.ipv4.ip_forward", "1"),
        Sysctl("net.bridge.bridge-nf-call-iptables", "1"),
    )
    assert node_kernel_ops(_spec(tmp_path, "  runtime: simulated\n")) == ()


def test_a_fresh_vm_loads_the_module_then_sets_and_persists_the_sysctls(tmp_path: Path) -> None:
    vm = SimHost.from_data({"modules": ["bridge"], "sysctls": {"net.ipv4.ip_forward": "0"}})
    planned = _plan(vm, node_kernel_ops(_spec(tmp_path)))
    assert planned[0] == "modprobe br_netfilter"  # before the bridge sysctl it brings
    assert [p.split()[1] for p in planned if p.startswith("upload")] == [
        module_file("br_netfilter"),
        sysctl_file("net.ipv4.ip_forward"),
        sysctl_file("net.bridge.bridge-nf-call-iptables"),
    ]
    writes = [p for p in planned if p.startswith("printf")]
    assert len(writes) == 2
    assert writes[0].endswith("> /proc/sys/net/ipv4/ip_forward")
    assert writes[1].endswith("> /proc/sys/net/bridge/bridge-nf-call-iptables")
    assert vm.paths[sysctl_file("net.ipv4.ip_forward")].content == b"net.ipv4.ip_forward = 1\n"
    assert _plan(vm, node_kernel_ops(_spec(tmp_path))) == []  # the second apply: nothing


def test_a_container_with_the_module_built_into_its_hosts_kernel_runs_no_modprobe(
    tmp_path: Path,
) -> None:
    container = SimHost.from_data(
        {
            "dirs": {"/proc/sys/net/bridge": {}},  # built in: no /sys/module entry, no modprobe
            "sysctls": {"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1"},
        }
    )
    planned = _plan(container, node_kernel_ops(_spec(tmp_path)))
    assert len(planned) == 3  # the three boot-time files
    assert all(p.startswith("upload") for p in planned), planned


def test_verify_checks_each_setting_now_and_at_boot() -> None:
    good = {
        "[ -e /sys/module/br_netfilter ] || [ -e /proc/sys/net/bridge ] && echo yes": "yes\n",
        f"cat {module_file('br_netfilter')} 2>/dev/null": "br_netfilter\n",
        "cat /proc/sys/net/ipv4/ip_forward 2>/dev/null": "1\n",
        f"cat {sysctl_file('net.ipv4.ip_forward')} 2>/dev/null": "net.ipv4.ip_forward = 1\n",
        "cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null": "1\n",
        f"cat {sysctl_file('net.bridge.bridge-nf-call-iptables')} 2>/dev/null": (
            "net.bridge.bridge-nf-call-iptables = 1\n"
        ),
    }
    results = kernel_checks(lambda command: good[command], "n1")
    assert len(results) == len(layout.NODE_MODULES) + len(layout.NODE_SYSCTLS)
    assert all(r.ok for r in results), [r.line() for r in results if not r.ok]

    # after a reboot of a host whose settings were never persisted (what the agent alone did)
    rebooted = {
        **good,
        f"cat {module_file('br_netfilter')} 2>/dev/null": "",
        "cat /proc/sys/net/ipv4/ip_forward 2>/dev/null": "0\n",
        f"cat {sysctl_file('net.ipv4.ip_forward')} 2>/dev/null": "",
    }
    failed = {r.name: r.detail for r in kernel_checks(lambda c: rebooted[c], "n1") if not r.ok}
    assert failed == {
        "kernel module br_netfilter present and loaded at boot": (
            f"not in {module_file('br_netfilter')}"
        ),
        "sysctl net.ipv4.ip_forward=1 now and at boot": "is 0, at boot: not set",
    }
