"""One long-lived ``sh`` per host that runs many commands over a single SSH channel.

Opening an SSH session costs a full login on the host (sshd forks, PAM and logind register a
session): ~45 ms on the lab hosts, more than most of our commands take. So the SSH connector
keeps one ``/bin/sh`` reading commands from the channel and frames each command's output:

    ( COMMAND
    ) </dev/null
    printf '\\n@@TOKEN %d\\n' $?        # on stdout: end of output and the exit code
    printf '\\n@@TOKEN\\n' >&2          # on stderr: end of stderr

The subshell keeps ``exit``/``cd``/variables from leaking into the session, ``</dev/null`` keeps
a command from eating the following ones, and a fresh random token per command means no output
can forge a frame. One newline before each marker is ours and is stripped again. Commands that
need stdin use a fresh exec channel instead (see the SSH connector), as do commands issued while
another thread holds the session.
"""

from __future__ import annotations

import re
import secrets
import select
import time

from provisioner.connectors.base import CommandResult
from provisioner.sshlib import paramiko

_BUF = 1 << 16
_POLL = 0.5


class ShellDied(Exception):
    """The session's shell exited or its channel closed before the command's frame completed."""


class ShellTimeout(Exception):
    """The command's frame did not complete in time (the session is out of step: close it)."""


class ShellSession:
    """A ``/bin/sh`` on one channel; :meth:`run` is not thread-safe (the connector locks)."""

    def __init__(self, transport: paramiko.Transport, *, timeout: float) -> None:
        self.channel = transport.open_session(timeout=timeout)
        self.channel.exec_command("exec /bin/sh")
        self._out = bytearray()
        self._err = bytearray()
        # anything the login shell printed before sh took over (an rc file's echo) is swallowed
        # by this first frame instead of landing in the first real command's output; it is
        # read with that command's frame (sent right behind it), so it costs no round trip
        self._swallow: str | None = self._send(":")

    @property
    def alive(self) -> bool:
        transport = self.channel.get_transport()
        return not (
            self.channel.closed
            or self.channel.eof_received
            or transport is None
            or not transport.is_active()
        )

    def run(self, text: str, *, timeout: float | None = None) -> CommandResult:
        """Run ``text``; raises :class:`ShellTimeout` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        token = self._send(text)
        if self._swallow is not None:
            first, self._swallow = self._swallow, None
            self._read(first, deadline, text)
        return self._read(token, deadline, text)

    def _send(self, text: str) -> str:
        """Send ``text`` framed by a fresh token (returned); its frame is read by :meth:`_read`."""
        token = secrets.token_hex(8)
        script = (
            f"( {text}\n) </dev/null\n"
            f"printf '\\n@@{token} %d\\n' $?\n"
            f"printf '\\n@@{token}\\n' >&2\n"
        )
        self.channel.sendall(script.encode())
        return token

    def _read(self, token: str, deadline: float | None, text: str) -> CommandResult:
        """The frame of ``token``: frames come back in the order they were sent, and the bytes
        after one frame (the next one's, when commands were sent back to back) are kept."""
        out_end = re.compile(rb"\n@@" + token.encode() + rb" (\d+)\n")
        err_end = b"\n@@" + token.encode() + b"\n"
        out, err = self._out, self._err
        code: int | None = None
        stderr: bytes | None = None
        stdout = b""
        while code is None or stderr is None:
            if code is None and (match := out_end.search(out)):
                code = int(match.group(1))
                stdout = bytes(out[: match.start()])
                del out[: match.end()]
            if stderr is None and (cut := err.find(err_end)) >= 0:
                stderr = bytes(err[:cut])
                del err[: cut + len(err_end)]
            if code is not None and stderr is not None:
                break
            # wake up now and then: a transport that dies does not always wake the channel
            wait = _POLL if deadline is None else max(0.0, min(_POLL, deadline - time.monotonic()))
            select.select([self.channel], [], [], wait)
            while self.channel.recv_stderr_ready():
                err += self.channel.recv_stderr(_BUF)
            while self.channel.recv_ready():
                out += self.channel.recv(_BUF)
            pending = (code is None and not out_end.search(out)) or (
                stderr is None and err_end not in err
            )
            if pending and not self.alive and not self._pending():
                raise ShellDied(bytes(err[-300:]).decode(errors="replace"))
            if pending and deadline is not None and time.monotonic() >= deadline:
                raise ShellTimeout(text)
        return CommandResult(code, stdout.decode(errors="replace"), stderr.decode(errors="replace"))

    def _pending(self) -> bool:
        return self.channel.recv_ready() or self.channel.recv_stderr_ready()

    def close(self) -> None:
        self.channel.close()
