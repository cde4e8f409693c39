"""The persistent shell's framing, driven through a fake channel (no sockets): each script the
session sends is run by a real /bin/sh and its output fed back the way paramiko would."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from provisioner.connectors.base import CommandResult
from provisioner.connectors.shell_session import ShellDied, ShellSession, ShellTimeout


class FakeTransport:
    def __init__(self) -> None:
        self.channel = FakeChannel(self)
        self.active = True

    def open_session(self, timeout: float | None = None) -> FakeChannel:
        return self.channel

    def is_active(self) -> bool:
        return self.active


class FakeChannel:
    """Just enough of paramiko.Channel for ShellSession; readable through an os.pipe."""

    def __init__(self, transport: FakeTransport) -> None:
        self.transport = transport
        self._read, self._write = os.pipe()
        self.out = b""
        self.err = b""
        self.closed = False
        self.eof_received = False
        self.dies_on_next_command = False
        self.hangs = False  # the command never finishes: no frame ever comes back

    def exec_command(self, command: str) -> None:
        assert command == "exec /bin/sh"

    def get_transport(self) -> FakeTransport:
        return self.transport

    def fileno(self) -> int:
        return self._read

    def sendall(self, data: bytes) -> None:
        if self.hangs:
            return
        if self.dies_on_next_command:
            self.closed = self.eof_received = True
            self.err += b"sh: 1: Syntax error: end of file unexpected\n"
        else:
            done = subprocess.run(["/bin/sh"], input=data, capture_output=True, check=False)
            self.out += done.stdout
            self.err += done.stderr
        os.write(self._write, b"x")

    def _drained(self) -> None:
        if not self.out and not self.err:
            os.read(self._read, 1 << 16)

    def recv_ready(self) -> bool:
        return bool(self.out)

    def recv_stderr_ready(self) -> bool:
        return bool(self.err)

    def recv(self, size: int) -> bytes:
        chunk, self.out = self.out[:7], self.out[7:]  # small chunks: frames split across reads
        self._drained()
        return chunk

    def recv_stderr(self, size: int) -> bytes:
        chunk, self.err = self.err[:5], self.err[5:]
        self._drained()
        return chunk

    def close(self) -> None:
        self.closed = True


def _session() -> tuple[ShellSession, FakeChannel]:
    transport = FakeTransport()
    session = ShellSession(transport, timeout=1)  # type: ignore[arg-type]
    return session, transport.channel


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("echo out; echo err >&2; exit 3", CommandResult(3, "out\n", "err\n")),
        ("printf 'no newline'", CommandResult(0, "no newline", "")),
        ("printf '\\n\\n'", CommandResult(0, "\n\n", "")),
        ("true", CommandResult(0, "", "")),
        # output that imitates a frame with another token does not end the command
        (
            "printf '\\n@@0123456789abcdef 0\\n'; echo real",
            CommandResult(0, "\n@@0123456789abcdef 0\nreal\n", ""),
        ),
        ("cat; echo stdin-was-empty", CommandResult(0, "stdin-was-empty\n", "")),
    ],
)
def test_frames_output_and_exit_code(command: str, expected: CommandResult) -> None:
    session, _ = _session()
    assert session.run(command) == expected


def test_a_dead_shell_is_reported_not_waited_for() -> None:
    session, channel = _session()
    assert session.run("echo ok").stdout == "ok\n"
    channel.dies_on_next_command = True
    with pytest.raises(ShellDied, match="Syntax error"):
        session.run("if then")
    assert not session.alive


def test_a_dead_transport_is_noticed() -> None:
    session, channel = _session()
    channel.transport.active = False
    assert not session.alive


def test_a_command_that_never_finishes_times_out() -> None:
    session, channel = _session()
    channel.hangs = True
    started = time.monotonic()
    with pytest.raises(ShellTimeout):
        session.run("sleep 1000", timeout=0.2)
    assert time.monotonic() - started < 2


def test_the_first_command_goes_out_with_the_swallowed_frame_in_one_exchange() -> None:
    transport = FakeTransport()
    channel = transport.channel
    channel.out = b"motd from an rc file\n"  # what a login shell may print before sh takes over
    sent: list[bytes] = []
    real_sendall = channel.sendall

    def sendall(data: bytes) -> None:
        sent.append(data)
        real_sendall(data)

    def recv_ready() -> bool:
        # nothing is read while only the swallow frame is out: no round trip of its own
        assert len(sent) >= 2, "read before the first command was sent"
        return bool(channel.out)

    channel.sendall = sendall  # type: ignore[method-assign]
    channel.recv_ready = recv_ready  # type: ignore[method-assign]
    session = ShellSession(transport, timeout=1)  # type: ignore[arg-type]
    assert len(sent) == 1
    assert session.run("echo first; echo oops >&2; exit 4") == CommandResult(4, "first\n", "oops\n")
    assert session.run("echo second") == CommandResult(0, "second\n", "")
    assert len(sent) == 3
