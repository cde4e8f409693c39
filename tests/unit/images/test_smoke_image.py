"""The verify smoke image stops at once on SIGTERM (issue 19, point 10).

The image is built as `berth verify` builds it, unpacked, and its command run exactly as a
container runs it: as PID 1 of a new PID namespace, chrooted into the image's rootfs (and in its
own network namespace, so its port never collides). PID 1 gets no default signal actions from the
kernel, which is why httpd alone ignored SIGTERM and every scale-down waited out the grace period.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import stat
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

from provisioner.smoke_image import CMD, SERVE, SERVE_PORT, smoke_image
from provisioner.verify.cluster import _smoke_pod

GRACE = 5.0
"""Seconds the image may take to stop after SIGTERM (a pod's default grace period is 30)."""


def _unpack(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """The smoke image's rootfs and config, from the archive `berth` loads onto the nodes."""
    with tarfile.open(fileobj=io.BytesIO(smoke_image().archive)) as layout:

        def read(name: str) -> bytes:
            member = layout.extractfile(name)
            assert member is not None
            return member.read()

        def blob(descriptor: dict[str, Any]) -> bytes:
            return read(f"blobs/sha256/{descriptor['digest'].removeprefix('sha256:')}")

        (entry,) = json.loads(read("index.json"))["manifests"]
        manifest = json.loads(blob(entry))
        config = json.loads(blob(manifest["config"]))["config"]
        rootfs = tmp_path / "rootfs"
        for layer in manifest["layers"]:
            with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layer)))) as tar:
                tar.extractall(rootfs, filter="tar")
    # the runtime gives every container /dev/null (sh opens it for a background job's stdin)
    os.mknod(rootfs / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return rootfs, config


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(word) for word in text.split()]


def _serving(pid: int) -> bool:
    """Whether something listens on the smoke port in ``pid``'s network namespace."""
    rows: list[list[str]] = []
    for table in ("tcp", "tcp6"):  # httpd listens on :: when the kernel has IPv6
        try:
            rows += [
                line.split()
                for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
            ]
        except OSError:
            continue
    port = f":{SERVE_PORT:04X}"
    return any(row[1].endswith(port) and row[3] == "0A" for row in rows)  # 0A: LISTEN


def _run_as_pid1(rootfs: Path, command: list[str], env: list[str]) -> subprocess.Popen[bytes]:
    """``command`` as PID 1 of new PID and network namespaces, chrooted into ``rootfs``;
    `unshare --fork` waits for it and exits with its status (``--kill-child``: should unshare
    die first, its PID 1 and with it the whole namespace is killed)."""
    return subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", "--net", f"--root={rootfs}", "--", *command],
        env=dict(item.split("=", 1) for item in env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stops_on_sigterm(rootfs: Path, command: list[str], env: list[str]) -> None:
    runner = _run_as_pid1(rootfs, command, env)
    try:
        # ready once it serves (whatever PID 1 is: httpd itself, or a shell in front of it)
        deadline = time.monotonic() + 10
        pid1: int | None = None
        while time.monotonic() < deadline:
            pid1 = next(iter(_children(runner.pid)), None)
            if pid1 is not None and _serving(pid1):
                break
            assert runner.poll() is None, f"{command} exited early ({runner.returncode})"
            time.sleep(0.02)  # /proc offers no event for "a socket listens"
        else:
            raise AssertionError(f"{command} never listened on port {SERVE_PORT}")
        assert pid1 is not None
        os.kill(pid1, signal.SIGTERM)  # what the runtime sends first when a pod stops
        started = time.monotonic()
        code = runner.wait(timeout=GRACE)
        assert time.monotonic() - started < GRACE
        assert code == 0
    finally:
        if runner.poll() is None:
            # SIGKILL the namespace's PID 1 (which ends the namespace) and let unshare reap it:
            # killing unshare first would leave PID 1 to this machine's init
            for child in _children(runner.pid):
                os.kill(child, signal.SIGKILL)
            try:
                runner.wait(timeout=10)
            except subprocess.TimeoutExpired:
                runner.kill()
                runner.wait()


def test_the_image_command_exits_at_once_on_sigterm_as_pid_1(tmp_path: Path) -> None:
    rootfs, config = _unpack(tmp_path)
    assert config["Cmd"] == list(CMD)
    _stops_on_sigterm(rootfs, config["Cmd"], config["Env"])


def test_the_verify_smoke_pod_command_exits_at_once_on_sigterm(tmp_path: Path) -> None:
    rootfs, config = _unpack(tmp_path)
    pod = _smoke_pod("smoke-n1-x", "n1", "x", "berth.local/verify-smoke:1")
    (container,) = pod["spec"]["containers"]
    assert SERVE in container["command"][-1]
    _stops_on_sigterm(rootfs, container["command"], config["Env"])
