"""The shim keeps the stdio of containers started with ``stdin``/``tty`` and serves attach on
a unix socket (see :mod:`berth.runtime.shim`): a stand-in ``runc create`` passes its stdio
to the "container" (pipes) or hands a pseudo-terminal's master over the console socket,
as runc does."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# `runc create` stand-in: the "container" is a shell that echoes its input (upper-cased)
# and exits 7 on "quit". With --console-socket it runs on a new terminal whose master goes
# to the socket (SCM_RIGHTS), as runc does; else it inherits this script's stdio.
FAKE_RUNC = """#!{python}
import os, pty, socket, subprocess, sys
args = sys.argv[1:]
script = ('while read l; do [ "$l" = size ] && l="$(stty size)";'
          ' [ "$l" = quit ] && {{ echo bye >&2; exit 7; }};'
          ' echo "got $l" | tr a-z A-Z; done; echo eof')
if "--console-socket" in args:
    master, slave = pty.openpty()
    proc = subprocess.Popen(["/bin/sh", "-c", script], stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True)
    os.close(slave)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(args[args.index("--console-socket") + 1])
    socket.send_fds(conn, [b"console"], [master])
    conn.close()
else:
    proc = subprocess.Popen(["/bin/sh", "-c", script])
open(args[args.index("--pid-file") + 1], "w").write(str(proc.pid))
"""


def _start(tmp_path: Path, stdio: str, *, once: bool = False) -> Path:
    runc = tmp_path / "runc"
    runc.write_text(FAKE_RUNC.format(python=sys.executable))
    runc.chmod(0o755)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    argv = [
        sys.executable, "-S", str(ROOT / "berth/runtime/shim.py"), "--runc", str(runc),
        "--root", str(tmp_path / "root"), "--bundle", str(bundle), "--id", "c1",
        "--log", str(bundle / "container.log"), "--exit", str(bundle / "exit.json"),
        "--stdio", stdio, "--attach", str(tmp_path / "a.sock"),
        "--console", str(tmp_path / "c.sock"), "--stdin-once", "yes" if once else "no",
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    assert result.returncode == 0, result.stderr
    return bundle


def _frame(channel: int, data: bytes) -> bytes:
    return bytes([channel]) + len(data).to_bytes(4, "big") + data


def _read_until(conn: socket.socket, wanted: bytes, seconds: float = 5.0) -> dict[int, bytes]:
    """Frames from the shim, by channel, until ``wanted`` appeared on some channel (or EOF)."""
    got: dict[int, bytes] = {}
    buf = b""
    conn.settimeout(seconds)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not any(wanted in v for v in got.values()):
        chunk = conn.recv(4096)
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 5 and len(buf) >= 5 + int.from_bytes(buf[1:5], "big"):
            n = int.from_bytes(buf[1:5], "big")
            got[buf[0]] = got.get(buf[0], b"") + buf[5 : 5 + n]
            buf = buf[5 + n :]
    return got


def _exit(bundle: Path) -> dict[str, object]:
    exit_file = bundle / "exit.json"
    deadline = time.monotonic() + 10
    while not exit_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    doc: dict[str, object] = json.loads(exit_file.read_text())
    return doc


def _attach(tmp_path: Path) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(str(tmp_path / "a.sock"))
    return conn


def test_pipes_attach_stdin_and_separate_output_streams(tmp_path: Path) -> None:
    bundle = _start(tmp_path, "pipe")
    with _attach(tmp_path) as first, _attach(tmp_path) as second:
        first.sendall(_frame(0, b"hello\n"))
        assert _read_until(first, b"GOT HELLO")[1] == b"GOT HELLO\n"
        # every attached client sees the output
        assert b"GOT HELLO" in _read_until(second, b"GOT HELLO")[1]
        second.sendall(_frame(0, b"quit\n"))
        out = _read_until(second, b"bye")
        assert out.get(2) == b"bye\n", "stderr is its own channel"
        # the shim hangs up on its clients once the container ended
        assert _read_until(second, b"\x00never") == {}
    assert _exit(bundle)["exitCode"] == 7
    assert (bundle / "container.log").read_bytes() == b"GOT HELLO\nbye\n"
    assert not (tmp_path / "a.sock").exists()


def test_stdin_once_closes_the_containers_stdin_after_the_first_session(tmp_path: Path) -> None:
    bundle = _start(tmp_path, "pipe", once=True)
    with _attach(tmp_path) as conn:
        conn.sendall(_frame(0, b"one\n"))
        assert b"GOT ONE" in _read_until(conn, b"GOT ONE")[1]
        conn.sendall(_frame(255, b"\x00"))  # this client's stdin ended
        assert b"eof" in _read_until(conn, b"eof")[1]
    assert _exit(bundle)["exitCode"] == 0


def test_stdin_stays_open_between_sessions_without_stdin_once(tmp_path: Path) -> None:
    bundle = _start(tmp_path, "pipe")
    with _attach(tmp_path) as conn:
        conn.sendall(_frame(0, b"one\n"))
        assert b"GOT ONE" in _read_until(conn, b"GOT ONE")[1]
    with _attach(tmp_path) as conn:
        conn.sendall(_frame(0, b"two\nquit\n"))
        assert b"GOT TWO" in _read_until(conn, b"GOT TWO")[1]
    assert _exit(bundle)["exitCode"] == 7


def test_tty_attach_gets_the_terminal_and_resizes_it(tmp_path: Path) -> None:
    bundle = _start(tmp_path, "tty")
    with _attach(tmp_path) as conn:
        conn.sendall(_frame(4, b'{"Width": 123, "Height": 45}'))
        conn.sendall(_frame(4, b'{"Width": "x"}'))  # ignored, not fatal
        conn.sendall(_frame(0, b"size\n"))
        # the terminal echoes the input; the shell answers with the size it now has
        assert b"GOT 45 123" in _read_until(conn, b"GOT 45 123")[1]
        conn.sendall(_frame(0, b"quit\n"))
    assert _exit(bundle)["exitCode"] == 7
    assert b"GOT 45 123" in (bundle / "container.log").read_bytes()


def test_oversized_frames_drop_the_client_not_the_shim(tmp_path: Path) -> None:
    bundle = _start(tmp_path, "pipe")
    with _attach(tmp_path) as bad:
        bad.sendall(bytes([0]) + (1 << 30).to_bytes(4, "big"))
        assert _read_until(bad, b"\x00never", 2.0) == {}
    with _attach(tmp_path) as good:
        good.sendall(_frame(0, b"fine\nquit\n"))
        assert b"GOT FINE" in _read_until(good, b"GOT FINE")[1]
    assert _exit(bundle)["exitCode"] == 7


def test_shim_refuses_a_terminal_without_a_console_socket(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-S", str(ROOT / "berth/runtime/shim.py"), "--runc", "runc",
         "--root", "r", "--bundle", "b", "--id", "x", "--log", "l", "--exit", "e",
         "--stdio", "tty", "--attach", "a.sock"],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    assert result.returncode == 2
