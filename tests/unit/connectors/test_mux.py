"""The connection multiplexer (``provisioner.connectors.mux``) against a real SSH server on
127.0.0.1 (``sshd_stub``): the connector contract through it, reuse across runs, never reuse for
another target or against today's pins, the failure modes (multiplexer gone mid-run, stale
socket, two runs starting one at once), and every rule that keeps other users out of it, each
tried: another uid at either end, a symbolic link for the socket or its directory, a socket or
directory others may open."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from provisioner.commands import Raw, Shell
from provisioner.connectors import mux
from provisioner.connectors.base import (
    CommandResult,
    HostKeyPolicy,
    HostName,
    HostTarget,
    JumpHost,
)
from provisioner.connectors.known_hosts import host_entry
from provisioner.connectors.ssh import SSHConnector
from provisioner.errors import ConnectError, OperationError

REPO = Path(__file__).resolve().parents[3]
NOBODY = 65534


def _key_file(path: Path) -> paramiko.Ed25519Key:
    pem = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    return paramiko.Ed25519Key.from_private_key_file(str(path))


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[HostTarget, paramiko.PKey]]:
    """A running SSH server, the strict target that reaches it, and its host key."""
    identity = tmp_path / "id_ed25519"
    user_key = _key_file(identity)
    host_key = _key_file(tmp_path / "host_key")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.unit.connectors.sshd_stub", str(tmp_path / "host_key"),
         user_key.get_base64()],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    port = int(process.stdout.readline())
    known = tmp_path / "known_hosts"
    known.write_text(f"{host_entry('127.0.0.1', port)} ssh-ed25519 {host_key.get_base64()}\n")
    target = HostTarget(
        name=HostName("h1"), address="127.0.0.1", port=port, user="tester",
        identity_file=identity, known_hosts=known, host_key_policy=HostKeyPolicy.STRICT,
        connect_timeout=5, retries=0,
    )  # fmt: skip
    try:
        yield target, host_key
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


@pytest.fixture
def mux_dir(tmp_path: Path) -> Iterator[Path]:
    """A multiplexer directory of its own; any multiplexer started on it is stopped after."""
    directory = tmp_path / "mux"
    yield directory
    with contextlib.suppress(OSError, EOFError, mux.MuxUnsafe):
        mux.request(directory, "stop")


def _stats(directory: Path) -> dict[str, int]:
    return {k: v for k, v in mux.request(directory, "stats").items() if k != "pid"}


# -- the contract, through the multiplexer --------------------------------------------------------


def test_the_connector_contract_holds_through_the_multiplexer(
    sshd: tuple[HostTarget, paramiko.PKey], mux_dir: Path, tmp_path: Path
) -> None:
    target, _ = sshd
    connector = mux.Mux(60, mux_dir).connect(target)
    assert isinstance(connector, mux.MuxConnector)
    try:
        assert connector.run("printf out; printf err >&2; exit 3") == CommandResult(3, "out", "err")
        odd = "a b;$(echo pwned)'\"\\"
        result = connector.run(Shell("cat", Raw("&&"), "printf", "%s", odd), stdin=b"in\n")
        assert result.stdout == "in\n" + odd
        big = connector.run("head -c 3000000 /dev/zero | tr '\\0' o; head -c 300000 /dev/zero >&2")
        assert (len(big.stdout), len(big.stderr)) == (3_000_000, 300_000)
        work = tmp_path / "work"
        work.mkdir()
        path = str(work / "app.conf")
        connector.put(b"one\n", path, mode=0o600)
        connector.put(b"two\n", path, mode=0o640)
        assert connector.get(path) == b"two\n"
        assert os.listdir(work) == ["app.conf"]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
        with pytest.raises(FileNotFoundError):
            connector.get(str(work / "missing"))
        with pytest.raises(OperationError, match="does not exist"):
            connector.put(b"x", str(work / "nope" / "x.conf"))
    finally:
        connector.close()


def test_a_second_run_reuses_the_kept_connection(
    sshd: tuple[HostTarget, paramiko.PKey], mux_dir: Path
) -> None:
    target, _ = sshd
    for _ in range(2):  # two runs: each has its own Mux, as each berth process does
        connector = mux.Mux(60, mux_dir).connect(target)
        assert connector.run("echo hi").stdout == "hi\n"
        connector.close()
    stats = _stats(mux_dir)
    assert (stats["kept"], stats["handshakes"], stats["refused"]) == (1, 1, 0)
    assert stat.S_IMODE(os.lstat(mux_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.lstat(mux_dir / mux.SOCKET_NAME).st_mode) == 0o600


def test_another_target_never_gets_the_kept_connection(
    sshd: tuple[HostTarget, paramiko.PKey], mux_dir: Path, tmp_path: Path
) -> None:
    target, _ = sshd
    mux.Mux(60, mux_dir).connect(target).close()
    # another user: a connection of its own
    other_user = replace(target, user="someone-else")
    mux.Mux(60, mux_dir).connect(other_user).close()
    assert _stats(mux_dir)["handshakes"] == 2
    # the same identity path with another key in it: not the kept connection, and refused
    _key_file(target.identity_file)  # type: ignore[arg-type]
    with pytest.raises(ConnectError, match="was refused"):
        mux.Mux(60, mux_dir).connect(target)
    assert _stats(mux_dir)["handshakes"] == 2


def test_every_part_of_the_target_tells_kept_connections_apart(tmp_path: Path) -> None:
    identity = tmp_path / "id"
    _key_file(identity)
    other_identity = tmp_path / "id2"
    _key_file(other_identity)
    base = HostTarget(
        name=HostName("h1"), address="10.0.0.1", identity_file=identity,
        known_hosts=tmp_path / "known_hosts",
    )  # fmt: skip
    jump = JumpHost("10.0.0.9")
    variants = [
        replace(base, name=HostName("h2")),
        replace(base, address="10.0.0.2"),
        replace(base, port=2222),
        replace(base, user="admin"),
        replace(base, identity_file=other_identity),
        replace(base, known_hosts=tmp_path / "other_known_hosts"),
        replace(base, host_key_policy=HostKeyPolicy.ACCEPT_NEW),
        replace(base, connect_timeout=3),
        replace(base, retries=0),
        replace(base, jump=jump),
        replace(base, jump=replace(jump, port=2200)),
        replace(base, jump=replace(jump, user="hop")),
        replace(base, jump=replace(jump, identity_file=other_identity)),
    ]
    keys = [mux.target_key(t) for t in [base, *variants]]
    assert len(set(keys)) == len(keys)
    assert mux.target_key(replace(base, roles=("worker",))) == keys[0]  # roles: not a target
    before = mux.target_key(base)
    _key_file(identity)  # the same path, another key in it
    assert mux.target_key(base) != before


def test_a_kept_connection_is_held_to_the_pins_as_they_are_now(
    sshd: tuple[HostTarget, paramiko.PKey], mux_dir: Path
) -> None:
    target, host_key = sshd
    mux.Mux(60, mux_dir).connect(target).close()
    assert target.known_hosts is not None
    entry = host_entry(target.address, target.port)
    # the pin removed: strict refuses, as it would refuse a new connection
    target.known_hosts.write_text("")
    with pytest.raises(ConnectError, match="not pinned and hostKeyPolicy is strict"):
        mux.Mux(60, mux_dir).connect(target)
    # another key pinned: refused as a changed host key
    other = paramiko.Ed25519Key.from_private_key_file(str(target.identity_file))
    target.known_hosts.write_text(f"{entry} ssh-ed25519 {other.get_base64()}\n")
    with pytest.raises(ConnectError, match="HOST KEY CHANGED"):
        mux.Mux(60, mux_dir).connect(target)
    # the right pin again: served
    target.known_hosts.write_text(f"{entry} ssh-ed25519 {host_key.get_base64()}\n")
    connector = mux.Mux(60, mux_dir).connect(target)
    assert connector.run("echo back").stdout == "back\n"
    connector.close()


def test_forget_closes_the_unused_connections_to_destroyed_hosts(
    sshd: tuple[HostTarget, paramiko.PKey], mux_dir: Path
) -> None:
    target, _ = sshd
    mux.Mux(60, mux_dir).connect(target).close()
    in_use = mux.Mux(60, mux_dir).connect(replace(target, name=HostName("h2")))
    assert mux.forget(["10.9.9.9"], mux_dir) == 0  # another address
    assert mux.forget([target.address], mux_dir) == 1  # h1; h2 is in use: left alone
    assert in_use.run("echo still").stdout == "still\n"
    in_use.close()
    assert _stats(mux_dir)["kept"] == 1
    mux.Mux(60, mux_dir).connect(target).close()
    assert _stats(mux_dir)["handshakes"] == 3  # h1 connected anew
    assert mux.forget([target.address], mux_dir / "none") == 0  # no multiplexer: nothing


# -- failure modes ------------------------------------------------------------------------------


def test_a_multiplexer_gone_mid_run_fails_the_command_then_connects_directly(
    sshd: tuple[HostTarget, paramiko.PKey], mux_dir: Path, tmp_path: Path
) -> None:
    target, _ = sshd
    connector = mux.Mux(60, mux_dir).connect(target)
    assert isinstance(connector, mux.MuxConnector)
    pid = int(mux.request(mux_dir, "stats")["pid"])
    marker = tmp_path / "started"
    failed: list[BaseException] = []

    def long_command() -> None:
        try:
            connector.run(f"touch {marker}; sleep 30")
        except ConnectError as error:
            failed.append(error)

    worker = threading.Thread(target=long_command)
    worker.start()
    while not marker.exists():
        worker.join(0.02)
    os.kill(pid, signal.SIGKILL)
    worker.join(20)
    assert not worker.is_alive()
    assert len(failed) == 1
    assert str(failed[0]).startswith("h1: the SSH connection multiplexer went away while running")
    # what follows goes directly: uploads, downloads and commands still work
    path = str(tmp_path / "after")
    connector.put(b"ok", path)
    assert connector.get(path) == b"ok"
    assert connector.run("echo direct").stdout == "direct\n"
    connector.close()


def test_an_unused_multiplexer_ends_after_the_persistence_time(
    sshd: tuple[HostTarget, paramiko.PKey], mux_dir: Path
) -> None:
    target, _ = sshd
    started = time.monotonic()
    mux.Mux(1, mux_dir).connect(target).close()
    pid = int(mux.request(mux_dir, "stats")["pid"])
    ended = os.pidfd_open(pid)  # readable once the process has exited
    try:
        assert select.select([ended], [], [], 30)[0] == [ended]
    finally:
        os.close(ended)
    assert time.monotonic() - started >= 1
    assert not (mux_dir / mux.SOCKET_NAME).exists()


def test_a_stale_socket_is_replaced(sshd: tuple[HostTarget, paramiko.PKey], mux_dir: Path) -> None:
    target, _ = sshd
    os.mkdir(mux_dir, 0o700)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(mux_dir / mux.SOCKET_NAME))  # bound, never listening: refuses connections
    os.chmod(mux_dir / mux.SOCKET_NAME, 0o600)
    stale.close()
    connector = mux.Mux(60, mux_dir).connect(target)
    assert isinstance(connector, mux.MuxConnector)
    assert connector.run("echo fresh").stdout == "fresh\n"
    connector.close()


def test_two_runs_starting_a_multiplexer_at_once_end_with_one(mux_dir: Path) -> None:
    os.mkdir(mux_dir, 0o700)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: mux.start_mux(mux_dir), range(2)))
    sock = mux.dial(mux_dir)
    sock.close()
    serving = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:  # a process of the machine's that just ended
            continue
        if b"provisioner.connectors.mux" in argv and str(mux_dir).encode() in argv:
            serving.append(pid)
    assert serving == [str(mux.request(mux_dir, "stats")["pid"])]


def test_persist_zero_or_no_means_direct_connections(
    sshd: tuple[HostTarget, paramiko.PKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    target, _ = sshd
    for value in ("0", "off"):
        assert mux.persist_from_env(value) == 0
    assert mux.persist_from_env("") == mux.DEFAULT_PERSIST
    with pytest.raises(Exception, match="not a number of seconds"):
        mux.persist_from_env("-5")
    connector = mux.connector_factory(0)(target)
    assert isinstance(connector, SSHConnector)
    connector.close()


# -- the rules that keep other users out, each tried -----------------------------------------------


def _falls_back(directory: Path, target: HostTarget, capsys: pytest.CaptureFixture[str]) -> str:
    """Connect through ``directory``; assert the run went direct and return its warning."""
    connector = mux.Mux(60, directory).connect(target)
    try:
        assert isinstance(connector, SSHConnector)
        assert connector.run("echo direct").stdout == "direct\n"
    finally:
        connector.close()
    return capsys.readouterr().err


def test_a_directory_others_may_enter_is_refused(
    sshd: tuple[HostTarget, paramiko.PKey], mux_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target, _ = sshd
    os.mkdir(mux_dir)
    os.chmod(mux_dir, 0o755)
    warning = _falls_back(mux_dir, target, capsys)
    assert "has mode 0755, not 0700" in warning
    assert not (mux_dir / mux.SOCKET_NAME).exists()  # nothing was started in it


def test_a_directory_of_another_user_is_refused(
    sshd: tuple[HostTarget, paramiko.PKey], mux_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target, _ = sshd
    os.mkdir(mux_dir, 0o700)
    os.chown(mux_dir, NOBODY, NOBODY)
    assert f"belongs to uid {NOBODY}" in _falls_back(mux_dir, target, capsys)


def test_a_symlinked_directory_or_socket_is_refused(
    sshd: tuple[HostTarget, paramiko.PKey],
    mux_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target, _ = sshd
    # a real multiplexer elsewhere, and links to its directory and to its socket
    real = tmp_path / "real"
    mux.Mux(60, real).connect(target).close()
    try:
        os.symlink(real, mux_dir)
        assert "is a symbolic link" in _falls_back(mux_dir, target, capsys)
        os.unlink(mux_dir)
        os.mkdir(mux_dir, 0o700)
        os.symlink(real / mux.SOCKET_NAME, mux_dir / mux.SOCKET_NAME)
        with pytest.raises(mux.MuxUnsafe, match="is a symbolic link"):
            mux.dial(mux_dir)
        assert "is a symbolic link" in _falls_back(mux_dir, target, capsys)
    finally:
        mux.request(real, "stop")


def test_a_socket_others_may_open_is_refused(
    sshd: tuple[HostTarget, paramiko.PKey], mux_dir: Path
) -> None:
    target, _ = sshd
    mux.Mux(60, mux_dir).connect(target).close()
    os.chmod(mux_dir / mux.SOCKET_NAME, 0o666)
    try:
        with pytest.raises(mux.MuxUnsafe, match="has mode 0666, not 0600"):
            mux.dial(mux_dir)
    finally:
        os.chmod(mux_dir / mux.SOCKET_NAME, 0o600)  # so the fixture can stop it


def _as_nobody(directory: Path) -> int:
    """In a child running as another uid, open the multiplexer's socket and ask for its stats:
    0 when it got an answer, 1 when the multiplexer dropped it, 2 when it could not connect."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 2
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(str(directory / mux.SOCKET_NAME))
            code = 1
            mux.send_frame(sock, {"op": "stats"})
            mux.recv_frame(sock)
            code = 0
        except BaseException:  # the exit code says how far it got
            pass
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.fixture
def open_mux_dir() -> Iterator[Path]:
    """A multiplexer directory whose parents another user may traverse (pytest's are 0700)."""
    base = Path(tempfile.mkdtemp(prefix="berth-mux-test-"))
    base.chmod(0o755)
    try:
        yield base / "mux"
    finally:
        with contextlib.suppress(OSError, EOFError, mux.MuxUnsafe):
            mux.request(base / "mux", "stop")
        shutil.rmtree(base)


def test_another_uid_is_dropped_even_when_the_files_let_it_in(
    sshd: tuple[HostTarget, paramiko.PKey], open_mux_dir: Path
) -> None:
    target, _ = sshd
    mux_dir = open_mux_dir
    mux.Mux(60, mux_dir).connect(target).close()
    assert _as_nobody(mux_dir) == 2  # the 0700 directory and 0600 socket keep it out
    # someone loosened both: the peer's uid (SO_PEERCRED) still keeps it out
    os.chmod(mux_dir, 0o755)
    os.chmod(mux_dir / mux.SOCKET_NAME, 0o666)
    assert _as_nobody(mux_dir) == 1
    os.chmod(mux_dir, 0o700)
    os.chmod(mux_dir / mux.SOCKET_NAME, 0o600)
    assert _stats(mux_dir)["refused"] == 1


def test_a_multiplexer_of_another_uid_is_refused(mux_dir: Path) -> None:
    # our own 0700 directory and a 0600 socket file of ours, but the process listening on it
    # runs as another uid (it bound as us, then dropped privileges, then listened)
    os.mkdir(mux_dir, 0o700)
    path = mux_dir / mux.SOCKET_NAME
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            listener.listen(1)
            os.write(ready_w, b"x")
            listener.accept()[0].recv(1)
        finally:
            os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"x"
        with pytest.raises(mux.MuxUnsafe, match=f"runs as uid {NOBODY}"):
            mux.dial(mux_dir)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        listener.close()
        os.close(ready_r)
        os.close(ready_w)


def test_the_multiplexer_drops_a_client_of_another_uid(mux_dir: Path) -> None:
    # the rule itself, without privileges: a server that serves only another uid drops us
    os.mkdir(mux_dir, 0o700)
    server = mux.MuxServer(mux_dir, uid=os.geteuid() + 1)
    server.listen()
    thread = threading.Thread(target=server.serve)
    thread.start()
    try:
        sock = mux.dial(mux_dir)

        # dropped: the request finds the connection closed, or its answer never comes
        def ask() -> None:
            mux.send_frame(sock, {"op": "stats"})
            mux.recv_frame(sock)

        with pytest.raises((EOFError, ConnectionError)):
            ask()
        sock.close()
        assert server.refused == 1
    finally:
        server.stop()
        thread.join()
