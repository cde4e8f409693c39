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
        # anything the login shell printed before sh took over (an rc file's echo) is swallowed
        # by this first frame instead of landing in the first real command's output
        self.run(":")

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
        token = secrets.token_hex(8)
        script = (
            f"( {text}\n) </dev/null\n"
            f"printf '\\n@@{token} %d\\n' $?\n"
            f"printf '\\n@@{token}\\n' >&2\n"
        )
        self.channel.sendall(script.encode())
        out_end = re.compile(rb"\n@@" + token.encode() + rb" (\d+)\n")
        err_end = b"\n@@" + token.encode() + b"\n"
        out = bytearray()
        err = bytearray()
        code: int | None = None
        err_done = False
        while code is None or not err_done:
            # wake up now and then: a transport that dies does not always wake the channel
            wait = _POLL if deadline is None else max(0.0, min(_POLL, deadline - time.monotonic()))
            select.select([self.channel], [], [], wait)
            while self.channel.recv_stderr_ready():
                err += self.channel.recv_stderr(_BUF)
            while self.channel.recv_ready():
                out += self.channel.recv(_BUF)
            if code is None and (match := out_end.search(out)):
                code = int(match.group(1))
                del out[match.start() :]
            if not err_done and err.endswith(err_end):
                err_done = True
                del err[-len(err_end) :]
            if (code is None or not err_done) and not self.alive and not self._pending():
                raise ShellDied(bytes(err[-300:]).decode(errors="replace"))
            pending = code is None or not err_done
            if pending and deadline is not None and time.monotonic() >= deadline:
                raise ShellTimeout(text)
        return CommandResult(code, out.decode(errors="replace"), err.decode(errors="replace"))

    def _pending(self) -> bool:
        return self.channel.recv_ready() or self.channel.recv_stderr_ready()

    def close(self) -> None:
        self.channel.close()
