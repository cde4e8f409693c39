"""A tiny SSH server for connector tests, run as its own process so a test can freeze it
(SIGSTOP: the kernel still acknowledges TCP, nothing answers) or kill it.

    python -m tests.unit.connectors.sshd_stub HOST_KEY AUTHORIZED_PUBKEY

prints the port it listens on (127.0.0.1), then serves: public-key auth for the one key, exec
channels (``sh -c`` of the command, stdin/stdout/stderr/exit status relayed) and SFTP on the
local filesystem (just what the connector's put/get use). Test-only: no access control.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import threading
from typing import IO, Any

import paramiko
from paramiko.common import (
    AUTH_FAILED,
    AUTH_SUCCESSFUL,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
    OPEN_SUCCEEDED,
)

_BUF = 1 << 15


class _Server(paramiko.ServerInterface):
    def __init__(self, authorized: str) -> None:
        self.authorized = authorized

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = key.get_base64() == self.authorized
        return AUTH_SUCCESSFUL if ok else AUTH_FAILED

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return OPEN_SUCCEEDED if kind == "session" else OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        threading.Thread(target=_exec, args=(channel, command), daemon=True).start()
        return True


def _exec(channel: paramiko.Channel, command: bytes) -> None:
    process = subprocess.Popen(  # a test server runs what the test sends
        command.decode(), shell=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdin
    assert process.stdout
    assert process.stderr

    def feed() -> None:
        assert process.stdin
        try:
            while data := channel.recv(_BUF):
                process.stdin.write(data)
                process.stdin.flush()
        except (OSError, EOFError):
            pass
        finally:
            process.stdin.close()

    def relay(pipe: IO[bytes], send: Any) -> None:
        while data := os.read(pipe.fileno(), _BUF):
            send(data)

    threading.Thread(target=feed, daemon=True).start()
    err = threading.Thread(target=relay, args=(process.stderr, channel.sendall_stderr))
    err.start()
    relay(process.stdout, channel.sendall)
    err.join()
    channel.send_exit_status(process.wait())
    channel.close()


class _Handle(paramiko.SFTPHandle):
    """paramiko's handle reads ``readfile`` and writes ``writefile`` (set after creation)."""

    readfile: IO[bytes]
    writefile: IO[bytes]

    def stat(self) -> Any:  # what a download's prefetch asks for (the file's size)
        f = getattr(self, "readfile", None) or self.writefile
        return paramiko.SFTPAttributes.from_stat(os.fstat(f.fileno()))


class _Files(paramiko.SFTPServerInterface):
    def open(self, path: str, flags: int, attr: paramiko.SFTPAttributes) -> Any:
        mode = "wb" if flags & os.O_WRONLY else "rb"
        try:
            fd = os.open(path, flags, 0o600)
            handle = _Handle(flags)
            f = os.fdopen(fd, mode)
        except OSError as error:
            return paramiko.SFTPServer.convert_errno(error.errno or errno.EIO)
        if mode == "wb":
            handle.writefile = f
        else:
            handle.readfile = f
        return handle

    def stat(self, path: str) -> Any:
        try:
            return paramiko.SFTPAttributes.from_stat(os.stat(path))
        except OSError as error:
            return paramiko.SFTPServer.convert_errno(error.errno or errno.EIO)

    lstat = stat


def _serve(client: socket.socket, host_key: paramiko.PKey, authorized: str) -> None:
    transport = paramiko.Transport(client)
    transport.add_server_key(host_key)
    transport.set_subsystem_handler("sftp", paramiko.SFTPServer, _Files)
    transport.start_server(server=_Server(authorized))
    while transport.is_active():
        channel = transport.accept(1)
        if channel is None:
            continue


def main() -> None:
    host_key = paramiko.Ed25519Key.from_private_key_file(sys.argv[1])
    authorized = sys.argv[2]
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    print(listener.getsockname()[1], flush=True)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_serve, args=(client, host_key, authorized), daemon=True).start()


if __name__ == "__main__":
    main()
