"""Running one lab VM with QEMU: its command line, its QMP control socket, and the KVM probe.

A VM is one ``qemu-system-x86_64 -daemonize`` process (it outlives ``berth lab up``, like an
nspawn host), booting the base image's kernel and initramfs directly, with a copy-on-write qcow2
disk, its seed disk, and a NIC on a tap plugged into the lab bridge. Its serial console goes to a
file; QMP (a JSON protocol on a Unix socket) powers it down, pauses and resumes it.

KVM: ``/dev/kvm`` may exist and still not run a stock guest (a PVM-only hypervisor hangs it, or a
CPU model aborts on an MSR). :func:`probe_kvm` boots the real kernel with a tiny initramfs under
KVM and needs it to reach its init *and* power off; anything else means TCG. The verdict is cached
per machine boot. (The 2-core machines berth is tested on have no VMX/SVM in their CPU flags, and
their ``/dev/kvm`` comes from ``kvm_pvm``, which runs only PVM-enabled guest kernels: Debian's
cloud kernel prints nothing on the serial console in 25 s under ``-cpu qemu64``, on q35 or pc.)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from provisioner.errors import LabError
from provisioner.lab import boot
from provisioner.lab.vmimage import BaseImage, cpio_newc

QEMU = "qemu-system-x86_64"
Accel = Literal["kvm", "tcg"]
MAX_QMP_MESSAGE = 1 << 20  # a QMP reply larger than this is not one we asked for
PROBE_TIMEOUT = 20.0
PROBE_MARKER = "berth-kvm-probe-ok"


@dataclass(frozen=True)
class VmSpec:
    """Everything that decides one VM's QEMU command line."""

    name: str  # shows in ps as ``-name``
    image: BaseImage
    disk: Path  # its qcow2 over image.disk
    seed: Path  # its seed disk (raw ext4)
    tap: str
    mac: str
    qmp: Path
    pidfile: Path
    console: Path
    accel: Accel
    memory_mib: int = 1024
    cpus: int = 1


def cpu_model(accel: Accel) -> str:
    """``-cpu host`` aborts on an MSR under this kind of KVM; qemu64 does not. TCG emulates
    ``max`` (every feature it can) as cheaply as the minimum."""
    return "qemu64" if accel == "kvm" else "max"


def kernel_cmdline() -> str:
    """The guest kernel's command line (our initramfs mounts /dev/vda itself)."""
    return "console=ttyS0 root=/dev/vda rw net.ifnames=0 panic=10"


def qemu_argv(spec: VmSpec) -> list[str]:
    """The QEMU command line of one VM (daemonised; see the module docstring)."""
    accel = "kvm" if spec.accel == "kvm" else "tcg,thread=multi"
    return [
        QEMU,
        "-name",
        spec.name,
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-machine",
        "q35",
        "-accel",
        accel,
        "-cpu",
        cpu_model(spec.accel),
        "-m",
        str(spec.memory_mib),
        "-smp",
        str(spec.cpus),
        "-kernel",
        str(spec.image.kernel),
        "-initrd",
        str(spec.image.initrd),
        "-append",
        kernel_cmdline(),
        "-drive",
        f"file={spec.disk},if=virtio,format=qcow2,cache=writeback,discard=unmap",
        "-drive",
        f"file={spec.seed},if=virtio,format=raw,readonly=on",
        "-netdev",
        f"tap,id=net0,ifname={spec.tap},script=no,downscript=no",
        "-device",
        f"virtio-net-pci,netdev=net0,mac={spec.mac}",
        "-device",
        "virtio-rng-pci",
        "-chardev",
        f"file,id=console,path={spec.console},append=on",
        "-serial",
        "chardev:console",
        "-qmp",
        f"unix:{spec.qmp},server=on,wait=off",
        "-pidfile",
        str(spec.pidfile),
        "-daemonize",
    ]


def mac_address(tag: str, index: int) -> str:
    """A stable locally administered MAC for host ``index`` of the lab tagged ``tag`` (hex)."""
    octets = [0x52, 0x54, int(tag[0:2], 16), int(tag[2:4], 16), index >> 8 & 0xFF, index & 0xFF]
    return ":".join(f"{o:02x}" for o in octets)


def launch(spec: VmSpec) -> boot.HostProcess:
    """Start the VM; return its QEMU process once it runs (QEMU daemonises after setup)."""
    spec.pidfile.unlink(missing_ok=True)
    proc = subprocess.run(qemu_argv(spec), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LabError(f"{QEMU} failed to start {spec.name}: {proc.stderr.strip()[-800:]}")
    pid = int(spec.pidfile.read_text().strip())
    start = boot.start_time(pid)
    if start is None:
        raise LabError(f"{QEMU} of {spec.name} exited at once; see {spec.console}")
    return boot.HostProcess(pid, start)


def processes_using(directory: Path) -> list[int]:
    """PIDs of QEMU processes whose command line names a file under ``directory`` (a crash
    between starting a VM and recording its PID leaves one only this can find)."""
    prefix = str(directory).rstrip("/") + "/"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(QEMU.encode()) and any(prefix.encode() in a for a in argv):
            found.append(int(entry.name))
    return found


def kill_all_under(directory: Path) -> None:
    """SIGKILL every QEMU of ``directory`` and wait until they are gone."""
    for pid in processes_using(directory):
        start = boot.start_time(pid)
        if start is None:
            continue
        proc = boot.HostProcess(pid, start)
        boot.signal_process(proc, signal.SIGKILL)
        if not boot.wait_exit(proc, 10.0):
            raise LabError(f"{QEMU} (pid {pid}) survives SIGKILL")


# ---- QMP -------------------------------------------------------------------------------------


class QmpError(LabError):
    """QMP answered with an error, or not at all."""


class Qmp:
    """A QMP session on a VM's control socket (one command at a time)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""

    @classmethod
    @contextlib.contextmanager
    def connect(cls, path: Path, *, timeout: float = 10.0) -> Iterator[Qmp]:
        """Open a session (greeting read, capabilities negotiated); closed on exit."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            sock.close()
            raise QmpError(f"QMP socket {path}: {exc.strerror or exc}") from exc
        session = cls(sock)
        try:
            greeting = session._read_message()
            if "QMP" not in greeting:
                raise QmpError(f"QMP socket {path}: no greeting ({greeting!r:.200})")
            session.execute("qmp_capabilities")
            yield session
        finally:
            sock.close()

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run ``command``; return its ``return`` value (events that arrive meanwhile are
        skipped)."""
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self._sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            message = self._read_message()
            if "return" in message:
                return message["return"]
            if "error" in message:
                error = message["error"]
                detail = error.get("desc", error) if isinstance(error, dict) else error
                raise QmpError(f"QMP {command}: {detail}")
            # anything else is an asynchronous event: not our answer

    def _read_message(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_QMP_MESSAGE:
                raise QmpError("QMP message too large")
            try:
                chunk = self._sock.recv(65536)
            except OSError as exc:
                raise QmpError(f"QMP: {exc}") from exc
            if not chunk:
                raise QmpError("QMP: connection closed")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise QmpError(f"QMP: not JSON: {line[:200]!r}") from exc
        if not isinstance(message, dict):
            raise QmpError(f"QMP: not an object: {line[:200]!r}")
        return message


def qmp(path: Path, command: str, arguments: dict[str, Any] | None = None) -> Any:
    """One QMP command on a fresh session."""
    with Qmp.connect(path) as session:
        return session.execute(command, arguments)


# ---- acceleration ----------------------------------------------------------------------------


def probe_initrd(busybox: bytes) -> bytes:
    """An initramfs that prints the probe marker and powers off at once."""
    script = f"#!/bin/busybox sh\n/bin/busybox echo {PROBE_MARKER}\n/bin/busybox poweroff -f\n"
    return cpio_newc(
        [
            ("bin", 0o040755, b""),
            ("dev", 0o040755, b""),
            ("bin/busybox", 0o100755, busybox),
            ("init", 0o100755, script.encode()),
        ]
    )


def probe_argv(kernel: Path, initrd: Path) -> list[str]:
    """The probe VM: KVM, serial on stdout, nothing else."""
    return [
        QEMU, "-nodefaults", "-no-user-config", "-display", "none", "-machine", "q35",
        "-accel", "kvm", "-cpu", cpu_model("kvm"), "-m", "256", "-serial", "stdio",
        "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", "console=ttyS0 panic=-1 quiet",
    ]  # fmt: skip


def probe_kvm(image: BaseImage, busybox: Path, *, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a KVM guest of ``image``'s kernel reaches its init and powers off in time."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    with tempfile.TemporaryDirectory(prefix="berth-kvm-probe-") as tmp:
        initrd = Path(tmp) / "initrd"
        initrd.write_bytes(probe_initrd(busybox.read_bytes()))
        try:
            proc = subprocess.run(
                probe_argv(image.kernel, initrd),
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False  # hung: at boot or at poweroff, unusable either way
    return proc.returncode == 0 and PROBE_MARKER.encode() in proc.stdout


def choose_accel(image: BaseImage, busybox: Path, cache: Path) -> Accel:
    """``BERTH_LAB_ACCEL`` (kvm|tcg) if set, else the probe's verdict (cached per boot)."""
    forced = os.environ.get("BERTH_LAB_ACCEL", "")
    if forced in ("kvm", "tcg"):
        return "kvm" if forced == "kvm" else "tcg"
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    verdict = cache / "kvm-probe.json"
    with contextlib.suppress(OSError, ValueError):
        saved = json.loads(verdict.read_text())
        if saved.get("boot_id") == boot_id and saved.get("image") == image.directory.name:
            return "kvm" if saved.get("accel") == "kvm" else "tcg"
    started = time.monotonic()
    accel: Accel = "kvm" if probe_kvm(image, busybox) else "tcg"
    verdict.write_text(
        json.dumps(
            {
                "boot_id": boot_id,
                "image": image.directory.name,
                "accel": accel,
                "seconds": round(time.monotonic() - started, 1),
            }
        )
        + "\n"
    )
    return accel
