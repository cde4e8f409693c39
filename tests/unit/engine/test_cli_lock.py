"""Concurrent `berth apply` runs (issue 19, point 2): real processes against one cluster; exactly
one runs, the others are refused at once (exit 9) naming it.

The "cluster" is a TCP listener standing in for the host's sshd that accepts and never answers:
a run that reaches it has passed the lock and is connecting (it then waits for the SSH banner
until the test ends it). No host is changed, and nothing depends on timing: the test waits for
the refused runs to exit and for the listener's connection.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

ROOT = Path(__file__).resolve().parents[3]


class SilentSshd:
    """Accepts TCP connections, sends an SSH banner and then nothing (the client waits for the
    key exchange up to its connectTimeout): each accept proves a run is connecting."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.connected = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            conn.sendall(b"SSH-2.0-silent\r\n")
            self.accepted.append(conn)
            self.connected.set()

    def close(self) -> None:
        self.server.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def sshd() -> Iterator[SilentSshd]:
    server = SilentSshd()
    try:
        yield server
    finally:
        server.close()


def _spec(tmp_path: Path, port: int) -> Path:
    key = ed25519.Ed25519PrivateKey.generate()
    identity = tmp_path / "id_ed25519"
    identity.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    identity.chmod(0o600)
    spec = tmp_path / "cluster.yaml"
    spec.write_text(
        f"""apiVersion: berth.dev/v1alpha1
kind: Cluster
metadata:
  name: locktest
spec:
  ssh:
    identityFile: {identity}
    hostKeyPolicy: accept-new
    connectTimeout: 120
    retries: 0
  hosts:
    - name: node1
      address: 192.168.10.10
      roles: [control-plane, worker]
      ssh:
        address: 127.0.0.1
        port: {port}
"""
    )
    return spec


def test_concurrent_applies_one_runs_the_others_exit_9_naming_it(
    tmp_path: Path, sshd: SilentSshd
) -> None:
    spec = _spec(tmp_path, sshd.port)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BERTH_STATE_DIR": str(tmp_path / "state"),
        "BERTH_CACHE_DIR": str(tmp_path / "cache"),
    }
    command = [sys.executable, "-m", "provisioner.cli.main", "apply", "-i", str(spec), "--yes"]
    runs = [
        subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    exited: queue.Queue[subprocess.Popen[str]] = queue.Queue()

    def report_exit(run: subprocess.Popen[str]) -> None:
        run.wait()
        exited.put(run)

    for run in runs:
        threading.Thread(target=report_exit, args=(run,), daemon=True).start()
    try:
        refused = [exited.get(timeout=60) for _ in range(len(runs) - 1)]
        (winner,) = [run for run in runs if run not in refused]
        assert sshd.connected.wait(60), "the run holding the lock never connected"
        assert winner.poll() is None, winner.communicate()
        assert len(sshd.accepted) == 1  # only one run ever reached the host
        for run in refused:
            _, err = run.communicate()
            assert run.returncode == 9, err
            flat = " ".join(err.split())  # the console may fold long lines
            assert f"is in use by another berth run (pid {winner.pid} of " in flat
            assert f" on {socket.gethostname()}, " in flat
            assert f"`berth apply -i {spec} --yes`, since 20" in flat
            assert "lock id " in flat
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
            run.communicate()


def test_state_unlock_breaks_a_lock_left_on_another_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from provisioner.cluster_lock import LockHolder  # noqa: PLC0415
    from tests.unit.engine.test_cli import run  # noqa: PLC0415

    monkeypatch.setenv("BERTH_STATE_DIR", str(tmp_path / "state"))
    spec = _spec(tmp_path, 22)
    lock = tmp_path / "state" / "locktest" / "lock"
    lock.parent.mkdir(parents=True)
    left = LockHolder("00ff00ff00ff00ff", 4242, "alice", "build-7", "elsewhere",
                      "berth apply -i c.yaml", "2026-12-01T10:00:00+00:00")  # fmt: skip
    lock.write_bytes(left.encode())
    # an apply is refused, and told how to break the lock
    code, _, err = run(monkeypatch, capsys, "apply", "-i", str(spec), "--yes")
    assert code == 9
    flat = " ".join(err.split())
    assert "locked by a berth run on another machine (pid 4242 of alice on build-7" in flat
    assert f"berth state unlock -i {spec} 00ff00ff00ff00ff" in flat
    code, _, err = run(monkeypatch, capsys, "state", "unlock", "-i", str(spec), "0000")
    assert code == 9
    assert "not 0000; it was not unlocked" in " ".join(err.split())
    code, out, _ = run(monkeypatch, capsys, "state", "unlock", "-i", str(spec), left.id)
    assert code == 0
    assert out.startswith("cluster locktest: broke the lock of pid 4242 of alice on build-7")
    assert lock.read_bytes() == b""
