"""A lab of QEMU VMs: the nspawn lab's contract on real (virtual) machines.

>>> lab = VmLab("demo")
>>> lab.up(1)                       # n1 booted (own kernel), sshd answering, cluster.yaml written
>>> lab.reboot("n1")                # graceful, from inside; lab.reset("n1") is the hard button
>>> lab.down()                      # no QEMU, tap, disk or address of the lab remains

What a VM has that a container lacks: its own kernel (modules, sysctls, cgroups as a host has
them), its own clock, reboots that go through the boot loader's job (kernel, initramfs, systemd),
and a power cut that loses what its page cache held. Each VM gets a tap on the lab bridge (named
like the nspawn lab's veths, so ``cut``/``heal``/``partition`` work unchanged), a qcow2 disk over
the cached base image (:mod:`provisioner.lab.vmimage`), and a seed disk carrying its identity
(hostname, machine-id, its own ed25519 host key, the lab key authorised for root, its address).
Freeze/thaw pause and resume the whole VM through QMP.
"""

from __future__ import annotations

import ipaddress
import secrets
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from provisioner.errors import LabError
from provisioner.lab import boot, network, qemu, subnet
from provisioner.lab.client import run as ssh_run
from provisioner.lab.keys import generate_ed25519, write_key_pair
from provisioner.lab.lab import Lab
from provisioner.lab.locks import file_lock
from provisioner.lab.names import host_name, iface_tag, machine_name, veth_name
from provisioner.lab.rootfs import ETC_HOSTS, cache_dir, default_recipe, ensure_rootfs
from provisioner.lab.state import HostState, LabState
from provisioner.lab.system import require_tools, run
from provisioner.lab.vmimage import BaseImage, ensure_base_image, write_seed

VM_BOOT_TIMEOUT = 300.0  # TCG on a loaded 2-core machine: ~30-90 s to sshd per VM
VM_STOP_TIMEOUT = 120.0  # ACPI poweroff of an emulated guest
VM_TOOLS = ("qemu-system-x86_64", "qemu-img", "busybox", "mkfs.ext4")
CONTROL_PLANE_CPUS = 2
CONTROL_PLANE_MEMORY_MIB = 2048
"""n1, the lab spec's control plane, runs the API server, controller manager, scheduler, DNS
and ingress controller beside its own agent and pods: with 1 emulated vCPU (TCG) it lagged every
worker (its ingress ports and smoke pod were last to come up, minutes after the workers')."""


class VmLab(Lab):
    """A lab whose hosts are QEMU VMs (see the module docstring)."""

    KIND = "vm"
    PROCESS = "QEMU"
    SSHD_BANNER_TIMEOUT = 10.0  # an emulated sshd forks and re-execs per connection: slow
    SSHD_PROBE_INTERVAL = 1.0

    def __init__(
        self,
        name: str = "demo",
        *,
        root: Path | None = None,
        memory_mib: int = 1024,
        cpus: int = 1,
        control_plane_memory_mib: int = CONTROL_PLANE_MEMORY_MIB,
        control_plane_cpus: int = CONTROL_PLANE_CPUS,
    ) -> None:
        """``memory_mib``/``cpus``: each worker VM's; ``control_plane_*``: n1's."""
        super().__init__(name, root=root)
        self.memory_mib = memory_mib
        self.cpus = cpus
        self.control_plane_memory_mib = control_plane_memory_mib
        self.control_plane_cpus = control_plane_cpus

    def size(self, host: str) -> tuple[int, int]:
        """``host``'s (vCPUs, MiB): n1 is the lab spec's control plane (see
        :data:`CONTROL_PLANE_CPUS`)."""
        if host == host_name(1):
            return self.control_plane_cpus, self.control_plane_memory_mib
        return self.cpus, self.memory_mib

    # ---- lifecycle ----------------------------------------------------------------------------

    def up(
        self,
        count: int = 1,
        *,
        subnet_cidr: str | None = None,
        replace: bool = False,
        timeout: float = VM_BOOT_TIMEOUT,
        unified_cgroups: bool = True,
        releases: Sequence[str] | None = None,
    ) -> None:
        """Boot ``count`` VMs; see :meth:`Lab.up` (``unified_cgroups`` does not apply: a VM's
        cgroups are its own kernel's)."""
        super().up(
            count,
            subnet_cidr=subnet_cidr,
            replace=replace,
            timeout=timeout,
            unified_cgroups=unified_cgroups,
            releases=releases,
        )

    def start(self, host: str, *, timeout: float = VM_BOOT_TIMEOUT) -> None:
        """Power a stopped or killed VM on again; returns once its sshd answers."""
        super().start(host, timeout=timeout)

    def reboot(self, host: str) -> None:
        """Reboot ``host`` from inside (``systemctl reboot``): a clean shutdown, then the kernel,
        initramfs and systemd again in the same QEMU. Returns at once; wait for the host."""
        self.host(host)
        status, _out, err = ssh_run(self, host, "systemctl --no-block reboot")
        if status != 0:
            raise LabError(f"{host}: systemctl reboot failed: {err.strip()}")

    def reset(self, host: str) -> None:
        """Press ``host``'s reset button (QMP ``system_reset``): no shutdown, like a power cut
        followed by power on."""
        qemu.qmp(self._qmp_path(self.host(host).name), "system_reset")

    # ---- hooks of Lab -------------------------------------------------------------------------

    def _preflight(self) -> None:
        require_tools(*VM_TOOLS)

    def _images(self, releases: Sequence[str]) -> dict[str, Path]:
        others = sorted(set(releases) - {"bookworm"})
        if others:
            raise LabError(
                f"VM labs boot Debian 12 (bookworm) only, not {', '.join(others)}",
                hint="use an nspawn lab (without --vm) for other releases",
            )
        rootfs = ensure_rootfs(default_recipe("bookworm")).path
        image, _built = ensure_base_image(rootfs)
        return {"bookworm": image.directory}

    def _create(
        self,
        count: int,
        *,
        rootfs: dict[str, Path],
        releases: Sequence[str],
        wanted: ipaddress.IPv4Network | None,
        timeout: float,
        unified_cgroups: bool,
    ) -> None:
        image = BaseImage(rootfs[host_name(1)])
        (self.dir / "hosts").mkdir(parents=True)
        state = LabState(name=self.name, kind="vm", rootfs=str(image.directory))
        state.save(self.state_path)
        busybox = Path(shutil.which("busybox") or "/bin/busybox")
        state.accel = qemu.choose_accel(image, busybox, cache_dir())
        state.save(self.state_path)
        with file_lock(self._machine_lock()):
            net = self._claim_network(state, wanted)
            for index in range(1, count + 1):
                name = host_name(index)
                entry = HostState(
                    name=name,
                    address=str(subnet.host_address(net, index)),
                    netns="",
                    veth=veth_name(self.name, name),
                    machine=machine_name(self.name, name),
                    release=releases[index - 1],
                )
                state.hosts[name] = entry
                state.record("tap", entry.veth, self.state_path)
                network.create_tap(entry.veth, state.bridge)

        lab_key = generate_ed25519(f"berth-lab-{self.name}")
        write_key_pair(lab_key, self.key_path)
        host_keys = {}
        for entry in state.hosts.values():
            base = self.dir / "hosts" / entry.name
            base.mkdir()
            disk = base / "disk.qcow2"
            backing = ["-F", "raw", "-b", str(image.disk)]
            run(["qemu-img", "create", "-q", "-f", "qcow2", *backing, str(disk)])
            host_key = generate_ed25519(f"root@{entry.name}")
            host_keys[entry.name] = host_key.public_line
            (base / "ssh_host_ed25519_key.pub").write_text(host_key.public_line + "\n")
            write_seed(
                base / "seed.img",
                hostname=entry.name,
                address=f"{entry.address}/{net.prefixlen}",
                files={
                    "etc/machine-id": (f"{secrets.token_hex(16)}\n".encode(), 0o444),
                    "etc/hosts": (f"{ETC_HOSTS}{entry.address}\t{entry.name}\n".encode(), 0o644),
                    "etc/ssh/ssh_host_ed25519_key": (host_key.private_openssh, 0o600),
                    "etc/ssh/ssh_host_ed25519_key.pub": (
                        f"{host_key.public_line}\n".encode(),
                        0o644,
                    ),
                    "root/.ssh/authorized_keys": (f"{lab_key.public_line}\n".encode(), 0o600),
                },
            )

        started = time.monotonic()
        self._launch(state, list(state.hosts.values()))
        self._await_sshd(state, list(state.hosts.values()), timeout=timeout)
        self.boot_seconds = time.monotonic() - started
        self._write_spec(state, host_keys)

    def _spec(self, state: LabState, entry: HostState) -> qemu.VmSpec:
        base = self.dir / "hosts" / entry.name
        cpus, memory_mib = self.size(entry.name)
        return qemu.VmSpec(
            name=f"berth-lab-{entry.machine}",
            image=BaseImage(Path(state.rootfs)),
            disk=base / "disk.qcow2",
            seed=base / "seed.img",
            tap=entry.veth,
            mac=qemu.mac_address(iface_tag(self.name), int(entry.name[1:])),
            qmp=base / "qmp.sock",
            pidfile=base / "qemu.pid",
            console=base / "console.log",
            accel="kvm" if state.accel == "kvm" else "tcg",
            memory_mib=memory_mib,
            cpus=cpus,
        )

    def _qmp_path(self, host: str) -> Path:
        return self.dir / "hosts" / host / "qmp.sock"

    def _launch(self, state: LabState, entries: list[HostState]) -> None:
        for entry in entries:
            proc = qemu.launch(self._spec(state, entry))
            entry.pid, entry.pid_start, entry.frozen = proc.pid, proc.start, False
            state.save(self.state_path)

    def _boot_tail(self, host: str) -> tuple[str, Path]:
        console = self.dir / "hosts" / host / "console.log"
        lines = console.read_text(errors="replace").splitlines()[-25:] if console.is_file() else []
        return "console:\n" + "\n".join(lines), console

    def _stop_host(self, entry: HostState, *, graceful: bool) -> None:
        proc = None
        if entry.pid is not None and entry.pid_start is not None:
            proc = boot.HostProcess(entry.pid, entry.pid_start)
        if proc is not None and boot.is_running(proc):
            if graceful:
                try:
                    if entry.frozen:
                        qemu.qmp(self._qmp_path(entry.name), "cont")
                    qemu.qmp(self._qmp_path(entry.name), "system_powerdown")
                except qemu.QmpError:
                    boot.signal_process(proc, signal.SIGKILL)
                if not boot.wait_exit(proc, VM_STOP_TIMEOUT):
                    boot.signal_process(proc, signal.SIGKILL)
            else:
                boot.signal_process(proc, signal.SIGKILL)  # the power cord
            if not boot.wait_exit(proc, 10.0):
                raise LabError(f"{entry.name}: QEMU (pid {proc.pid}) does not exit")
        entry.pid = entry.pid_start = None
        entry.frozen = False

    def _is_frozen(self, entry: HostState) -> bool:
        if entry.pid is None:
            return False
        try:
            status = qemu.qmp(self._qmp_path(entry.name), "query-status")
        except qemu.QmpError:
            return False
        return isinstance(status, dict) and status.get("status") == "paused"

    def _write_freezer(self, entry: HostState, *, frozen: bool) -> None:
        qemu.qmp(self._qmp_path(entry.name), "stop" if frozen else "cont")


def open_lab(name: str, *, root: Path | None = None) -> Lab:
    """The lab called ``name`` as the class of its kind (a VM lab's faults are QEMU's)."""
    lab = Lab(name, root=root)
    if lab.exists() and lab.state.kind == "vm":
        return VmLab(name, root=root)
    return lab
