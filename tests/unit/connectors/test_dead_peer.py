"""Dead-peer detection of the SSH connector (issue 19, point 1) against a real SSH server on
127.0.0.1 (``sshd_stub``, its own process): frozen with SIGSTOP, its kernel still acknowledges
TCP but nothing answers, as with a frozen or hung host; behind a proxy that stops forwarding,
nothing arrives at all, as with a cut cable. Each wait on the connection (a command, an upload)
must then fail within the liveness budget, naming the host, what it was doing and why; a long
silent command on a host that answers must not.

The monitor's interval is shortened to 0.3 s here (dead after 3 silent intervals, ~1 s); the
production values are the named constants of ``provisioner.connectors.liveness``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from provisioner.connectors import liveness
from provisioner.connectors.base import HostKeyPolicy, HostName, HostTarget
from provisioner.connectors.ssh import SSHConnector
from provisioner.errors import ConnectError

REPO = Path(__file__).resolve().parents[3]
INTERVAL = 0.3
COUNT = 3
DETECTED_WITHIN = 10.0
"""Seconds a test waits for the failure: ~1 s expected, and the old code never fails at all."""


def _key_file(path: Path) -> paramiko.Ed25519Key:
    pem = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    return paramiko.Ed25519Key.from_private_key_file(str(path))


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int

    def freeze(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


@pytest.fixture
def identity(tmp_path: Path) -> tuple[Path, paramiko.Ed25519Key]:
    path = tmp_path / "id_ed25519"
    return path, _key_file(path)


@pytest.fixture
def server(tmp_path: Path, identity: tuple[Path, paramiko.Ed25519Key]) -> Iterator[Server]:
    host_key = tmp_path / "host_key"
    _key_file(host_key)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.unit.connectors.sshd_stub", str(host_key),
         identity[1].get_base64()],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    port = int(process.stdout.readline())
    try:
        yield Server(process, port)
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.kill()
        process.wait()
        process.stdout.close()


def _connector(tmp_path: Path, identity: Path, port: int) -> SSHConnector:
    target = HostTarget(
        name=HostName("h1"), address="127.0.0.1", port=port, user="tester",
        identity_file=identity, known_hosts=tmp_path / "known_hosts",
        host_key_policy=HostKeyPolicy.ACCEPT_NEW, connect_timeout=5, retries=0,
    )  # fmt: skip
    connector = SSHConnector(target)
    connector.alive_interval = INTERVAL
    connector.alive_count_max = COUNT
    return connector.connect()


def _started(marker: Path) -> None:
    """Wait until the command under test has started on the server (it creates ``marker``)."""
    deadline = time.monotonic() + 10
    while not marker.exists():
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.01)


def _fails_soon(work: Future[Any], started: float) -> ConnectError:
    try:
        work.result(timeout=DETECTED_WITHIN)
    except ConnectError as error:
        assert time.monotonic() - started < DETECTED_WITHIN
        return error
    except TimeoutError:
        pytest.fail(f"still waiting {DETECTED_WITHIN:.0f}s after the host stopped answering")
    pytest.fail("the operation succeeded on a host that does not answer")


def _in_thread(fn: Callable[[], Any]) -> Future[Any]:
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn)
    pool.shutdown(wait=False)
    return future


def _running_long_command(connector: SSHConnector, marker: Path) -> Future[Any]:
    """A minute-long command run in a thread, returned once it has started on the host."""
    work = _in_thread(lambda: connector.run(f"touch {marker}; sleep 60"))
    _started(marker)
    return work


def _lost(
    connector: SSHConnector, start: Callable[[], Future[Any]], stop_answering: Callable[[], None]
) -> ConnectError:
    """Start the work, make the host stop answering once it runs, and return the error the work
    fails with (within :data:`DETECTED_WITHIN`); the connector is closed either way."""
    try:
        work = start()
        stop_answering()
        return _fails_soon(work, time.monotonic())
    finally:
        connector.close()


def test_a_frozen_host_fails_a_running_command_naming_it(
    server: Server, identity: tuple[Path, paramiko.Ed25519Key], tmp_path: Path
) -> None:
    connector = _connector(tmp_path, identity[0], server.port)
    marker = tmp_path / "started"
    error = _lost(connector, lambda: _running_long_command(connector, marker), server.freeze)
    assert error.message.startswith("h1: connection lost while running touch ")
    assert "no answer for" in error.message
    assert "the host is down, frozen or cut off" in error.message


def test_a_frozen_host_fails_a_command_with_stdin(
    server: Server, identity: tuple[Path, paramiko.Ed25519Key], tmp_path: Path
) -> None:
    connector = _connector(tmp_path, identity[0], server.port)
    marker = tmp_path / "started"

    def start() -> Future[Any]:
        work = _in_thread(
            lambda: connector.run(f"touch {marker}; cat >/dev/null; sleep 60", stdin=b"x" * 100)
        )
        _started(marker)
        return work

    error = _lost(connector, start, server.freeze)
    assert "no answer for" in error.message


def test_a_frozen_host_fails_an_upload_in_progress(
    server: Server, identity: tuple[Path, paramiko.Ed25519Key], tmp_path: Path
) -> None:
    connector = _connector(tmp_path, identity[0], server.port)
    target = tmp_path / "big"

    def start() -> Future[Any]:
        # far more than the socket buffers hold: the upload is still going when frozen
        work = _in_thread(lambda: connector.put(b"\0" * (256 << 20), str(target)))
        deadline = time.monotonic() + 10
        while not [p for p in tmp_path.glob(".big.berth-*") if p.stat().st_size]:
            assert time.monotonic() < deadline, "the upload never started"
            time.sleep(0.01)
        return work

    error = _lost(connector, start, server.freeze)
    assert error.message.startswith(f"h1: connection lost while uploading {target}")
    assert "no answer for" in error.message
    assert not target.exists()


class _Cable:
    """A TCP proxy to the server whose cable can be cut: it stops forwarding both ways and
    never closes, so nothing reaches either side (no FIN, no RST), as with a pulled cable."""

    def __init__(self, port: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.upstream = port
        self.cut = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        client, _ = self.listener.accept()
        upstream = socket.create_connection(("127.0.0.1", self.upstream))
        self.sockets += [client, upstream]
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                if self.cut.is_set():
                    self.cut.wait()  # swallowed: keep the socket open, forward nothing
                    continue
                sink.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        for sock in [self.listener, *self.sockets]:
            sock.close()


def test_a_cut_cable_fails_a_running_command(
    server: Server, identity: tuple[Path, paramiko.Ed25519Key], tmp_path: Path
) -> None:
    cable = _Cable(server.port)
    connector = _connector(tmp_path, identity[0], cable.port)
    marker = tmp_path / "started"
    try:
        error = _lost(connector, lambda: _running_long_command(connector, marker), cable.cut.set)
    finally:
        cable.close()
    assert "no answer for" in error.message


def test_a_long_silent_command_on_a_host_that_answers_is_not_cut(
    server: Server, identity: tuple[Path, paramiko.Ed25519Key], tmp_path: Path
) -> None:
    # silent for ~7 dead-peer budgets: only the answered keepalives keep it alive
    connector = _connector(tmp_path, identity[0], server.port)
    try:
        result = connector.run(f"sleep {INTERVAL * COUNT * 7:.1f}; echo done")
    finally:
        connector.close()
    assert (result.exit_code, result.stdout.strip()) == (0, "done")


def test_a_host_that_answers_again_is_reconnected(
    server: Server, identity: tuple[Path, paramiko.Ed25519Key], tmp_path: Path
) -> None:
    connector = _connector(tmp_path, identity[0], server.port)
    marker = tmp_path / "started"
    try:
        work = _running_long_command(connector, marker)
        server.freeze()
        _fails_soon(work, time.monotonic())
        server.thaw()
        assert connector.run("echo back").stdout.strip() == "back"
    finally:
        connector.close()


def test_sockets_carry_the_kernel_dead_peer_limits(server: Server) -> None:
    from provisioner.connectors.ssh import _dial  # noqa: PLC0415 - the one private seam

    sock = _dial("127.0.0.1", server.port, 5)
    try:
        user_timeout = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
        assert user_timeout == int(liveness.TCP_USER_TIMEOUT * 1000)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == liveness.TCP_KEEPIDLE
    finally:
        sock.close()
    assert liveness.DEAD_AFTER <= 30  # the detection goal
