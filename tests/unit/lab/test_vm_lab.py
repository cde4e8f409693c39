"""The pure parts of the QEMU lab: its image plan, initramfs, command lines and QMP client."""

from __future__ import annotations

import contextlib
import json
import socket
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.errors import LabError
from provisioner.lab import qemu
from provisioner.lab.qemu import Qmp, QmpError, VmSpec, mac_address, qemu_argv
from provisioner.lab.state import HostState, LabState
from provisioner.lab.vmimage import (
    VIRTIO_MODULES,
    BaseImage,
    ImagePlan,
    cpio_newc,
    init_script,
    initramfs_entries,
    parse_kernel_dependency,
    parse_version,
)
from provisioner.lab.vmlab import VmLab

META_SHOW = """Package: linux-image-cloud-amd64
Source: linux-signed-amd64 (6.1.192+3)
Version: 6.1.192-3
Depends: linux-image-6.1.0-57-cloud-amd64 (= 6.1.192-3)
"""


def _spec(tmp_path: Path, accel: qemu.Accel = "tcg") -> VmSpec:
    return VmSpec(
        name="berth-lab-demo-n1",
        image=BaseImage(tmp_path / "img"),
        disk=tmp_path / "n1/disk.qcow2",
        seed=tmp_path / "n1/seed.img",
        tap="vl-abcdef0-1",
        mac="52:54:ab:cd:00:01",
        qmp=tmp_path / "n1/qmp.sock",
        pidfile=tmp_path / "n1/qemu.pid",
        console=tmp_path / "n1/console.log",
        accel=accel,
    )


def _option(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


# ---- image plan ------------------------------------------------------------------------------


def test_kernel_dependency_and_version_come_from_apt_cache_show() -> None:
    assert parse_kernel_dependency(META_SHOW) == "linux-image-6.1.0-57-cloud-amd64"
    assert parse_version(META_SHOW) == "6.1.192-3"
    with pytest.raises(LabError, match="which kernel"):
        parse_kernel_dependency("Package: x\nDepends: libc6\n")


def test_image_key_changes_with_everything_that_decides_the_content() -> None:
    plan = ImagePlan("rootkey", "linux-image-6.1.0-57-cloud-amd64", "6.1.192-3")
    assert plan.kernel_release == "6.1.0-57-cloud-amd64"
    assert plan.key() == ImagePlan("rootkey", plan.kernel_package, "6.1.192-3").key()
    others = {
        ImagePlan("otherroot", plan.kernel_package, "6.1.192-3").key(),
        ImagePlan("rootkey", "linux-image-6.1.0-58-cloud-amd64", "6.1.193-1").key(),
        ImagePlan("rootkey", plan.kernel_package, "6.1.192-3", extra_packages=("kmod",)).key(),
        ImagePlan("rootkey", plan.kernel_package, "6.1.192-3", version=99).key(),
    }
    assert plan.key() not in others
    assert len(others) == 4


def test_init_loads_the_virtio_modules_in_dependency_order_before_mounting_root() -> None:
    script = init_script()
    loop = next(line for line in script.splitlines() if line.startswith("for m in"))
    assert loop.removesuffix("; do").split()[3:] == [
        "virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
        "virtio_blk", "failover", "net_failover", "virtio_net",
    ]  # fmt: skip
    assert script.index("insmod") < script.index("/dev/vda /newroot") < script.index("switch_root")
    # the identity is applied once: a reboot must not undo what the host changed since
    assert "! -e /newroot/etc/berth-lab/applied" in script


def _read_cpio(blob: bytes) -> dict[str, tuple[int, bytes]]:
    members: dict[str, tuple[int, bytes]] = {}
    offset = 0
    while True:
        header = blob[offset : offset + 110]
        assert header[:6] == b"070701"
        fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_at = offset + 110
        name = blob[name_at : name_at + namesize - 1].decode()
        data_at = name_at + namesize + (-(110 + namesize) % 4)
        if name == "TRAILER!!!":
            return members
        members[name] = (mode, blob[data_at : data_at + size])
        offset = data_at + size + (-size % 4)


def test_cpio_newc_round_trips_and_is_what_cpio_reads(tmp_path: Path) -> None:
    entries = initramfs_entries(b"\x7fELF-busybox", {m: m.encode() * 3 for m in VIRTIO_MODULES})
    blob = cpio_newc(entries)
    members = _read_cpio(blob)
    assert members["bin/busybox"] == (stat.S_IFREG | 0o755, b"\x7fELF-busybox")
    assert members["init"][0] == stat.S_IFREG | 0o755
    assert members["init"][1].startswith(b"#!/bin/busybox sh\n")
    assert members["modules/virtio_net.ko"][1] == b"virtio_net" * 3
    assert stat.S_ISDIR(members["newroot"][0])
    listing = subprocess.run(
        ["busybox", "cpio", "-t"], input=blob, capture_output=True, check=True
    ).stdout.decode()
    assert {"init", "bin/busybox", "modules/virtio.ko", "seed"} <= set(listing.split())


# ---- command lines ---------------------------------------------------------------------------


def test_qemu_argv_wires_disk_seed_tap_console_and_qmp(tmp_path: Path) -> None:
    argv = qemu_argv(_spec(tmp_path))
    assert argv[0] == "qemu-system-x86_64"
    assert _option(argv, "-accel") == ["tcg,thread=multi"]
    assert _option(argv, "-cpu") == ["max"]
    drives = _option(argv, "-drive")
    assert drives[0].startswith(f"file={tmp_path}/n1/disk.qcow2,if=virtio,format=qcow2")
    assert drives[1] == f"file={tmp_path}/n1/seed.img,if=virtio,format=raw,readonly=on"
    assert _option(argv, "-netdev") == ["tap,id=net0,ifname=vl-abcdef0-1,script=no,downscript=no"]
    assert "virtio-net-pci,netdev=net0,mac=52:54:ab:cd:00:01" in _option(argv, "-device")
    assert _option(argv, "-qmp") == [f"unix:{tmp_path}/n1/qmp.sock,server=on,wait=off"]
    assert _option(argv, "-kernel") == [str(tmp_path / "img/vmlinuz")]
    assert _option(argv, "-initrd") == [str(tmp_path / "img/initrd.img")]
    assert "console=ttyS0" in _option(argv, "-append")[0].split()
    assert "-daemonize" in argv
    assert "-no-reboot" not in argv  # a guest reboot stays in the same QEMU
    assert _option(argv, "-m") == ["1024"]
    assert _option(argv, "-smp") == ["1"]


def test_the_control_plane_vm_gets_two_vcpus_and_2_gib_and_workers_one_and_1_gib(
    tmp_path: Path,
) -> None:
    lab = VmLab("demo", root=tmp_path)
    state = LabState(name="demo", kind="vm", rootfs=str(tmp_path / "img"))
    for index in (1, 2):
        name = f"n{index}"
        state.hosts[name] = HostState(
            name=name, address=f"10.0.0.{index}", netns="", veth=f"vl-x-{index}",
            machine=f"demo-{name}", release="bookworm",
        )  # fmt: skip
    specs = {name: lab._spec(state, entry) for name, entry in state.hosts.items()}
    assert (specs["n1"].cpus, specs["n1"].memory_mib) == (2, 2048)  # the lab spec's control plane
    assert (specs["n2"].cpus, specs["n2"].memory_mib) == (1, 1024)
    assert _option(qemu_argv(specs["n1"]), "-smp") == ["2"]


def test_kvm_uses_a_cpu_model_that_does_not_abort() -> None:
    assert qemu.cpu_model("kvm") == "qemu64"
    argv = qemu.probe_argv(Path("/k"), Path("/i"))
    assert _option(argv, "-accel") == ["kvm"]
    assert _option(argv, "-cpu") == ["qemu64"]


def test_mac_addresses_are_locally_administered_stable_and_distinct() -> None:
    first = mac_address("abcdef0", 1)
    assert first == "52:54:ab:cd:00:01"
    assert mac_address("abcdef0", 1) == first
    assert len({mac_address("abcdef0", i) for i in range(1, 201)}) == 200
    assert int(first.split(":")[0], 16) & 0x02  # locally administered bit


def test_probe_initrd_powers_off_after_the_marker() -> None:
    members = _read_cpio(qemu.probe_initrd(b"busybox"))
    script = members["init"][1].decode()
    assert script.index(qemu.PROBE_MARKER) < script.index("poweroff -f")


# ---- QMP -------------------------------------------------------------------------------------


@pytest.fixture
def qmp_server(tmp_path: Path) -> Iterator[tuple[Path, list[dict[str, object]]]]:
    """A scripted QMP peer: greeting, capabilities, then an event before each answer."""
    path = tmp_path / "qmp.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    received: list[dict[str, object]] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn, conn.makefile("rwb") as stream:
            stream.write(b'{"QMP": {"version": {}, "capabilities": []}}\n')
            stream.flush()
            for line in stream:
                request = json.loads(line)
                received.append(request)
                command = request["execute"]
                if command == "qmp_capabilities":
                    stream.write(b'{"return": {}}\n')
                elif command == "query-status":
                    stream.write(b'{"event": "STOP", "timestamp": {}}\r\n')
                    stream.write(b'{"return": {"status": "paused", "running": false}}\n')
                else:
                    stream.write(b'{"error": {"class": "CommandNotFound", "desc": "nope"}}\n')
                stream.flush()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, received
    server.close()
    thread.join(timeout=5)


def test_qmp_negotiates_then_skips_events_to_the_answer(
    qmp_server: tuple[Path, list[dict[str, object]]],
) -> None:
    path, received = qmp_server
    with Qmp.connect(path) as session:
        assert session.execute("query-status") == {"status": "paused", "running": False}
        with pytest.raises(QmpError, match="nope"):
            session.execute("bogus", {"x": 1})
    assert received == [
        {"execute": "qmp_capabilities"},
        {"execute": "query-status"},
        {"execute": "bogus", "arguments": {"x": 1}},
    ]


def test_qmp_rejects_a_peer_that_is_not_qmp(tmp_path: Path) -> None:
    path = tmp_path / "q.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        # the client hangs up once it has read past its bound: the rest may hit a closed peer
        with conn, contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.sendall(b"x" * (qemu.MAX_QMP_MESSAGE + 70000))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with pytest.raises(QmpError, match="too large"), Qmp.connect(path):
        pass
    server.close()
    thread.join(timeout=5)


def test_qmp_on_a_missing_socket_is_a_lab_error(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="QMP socket"):
        qemu.qmp(tmp_path / "absent.sock", "query-status")
