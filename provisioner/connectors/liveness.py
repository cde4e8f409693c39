"""Dead-peer detection for an SSH connection: a host that is cut off, powered off or frozen is
noticed within :data:`DEAD_AFTER` seconds, whatever the connection was doing.

paramiko's own keepalive only *sends* (a request without ``want_reply``): nothing ever notices
that no answer comes, and every wait on a dead connection then lasts until its own timeout
(up to half an hour for a command). This module adds, per connection:

* a :class:`Meter` around the socket that notes when the peer last sent us anything;
* a :class:`Liveness` monitor thread: after :data:`ALIVE_INTERVAL` seconds of silence it asks
  the peer for an answer (an OpenSSH-style ``keepalive@openssh.com`` global request *with*
  ``want_reply``; any sshd answers, if only with "failure"), and after :data:`ALIVE_COUNT_MAX`
  silent intervals in a row it declares the peer dead and closes the transport. Closing wakes
  every wait on every channel of the connection at once (uploads, downloads, commands, the
  shell session), each of which then fails naming the host and what it was doing;
* TCP options on the socket (:func:`tune_socket`): the kernel gives up on data the peer does not
  acknowledge after :data:`TCP_USER_TIMEOUT` seconds, and probes an idle connection.

Anything the peer sends counts as a sign of life, not only the answer to our request: a long
upload on a slow link keeps receiving window adjustments and SFTP status replies even when our
request waits behind megabytes of queued data, and a long silent command (``apt-get install``)
has its requests answered. Neither is ever cut short while the peer answers. A frozen host is
caught too: its kernel still acknowledges TCP segments, but its sshd answers nothing.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from provisioner.sshlib import paramiko

ALIVE_INTERVAL = 5.0
"""Seconds without hearing from the peer before we ask it for a sign of life (OpenSSH's
ServerAliveInterval). Short enough to meet the 30 s detection goal with a few misses; long
enough to cost nothing (one small request per idle host every 5 s)."""
ALIVE_COUNT_MAX = 4
"""Silent intervals in a row after which the peer is declared dead (OpenSSH's
ServerAliveCountMax). Four, not one: a loaded host or a congested link may take several seconds
to answer, and killing a healthy apply costs more than waiting 15 s longer for a dead one."""
DEAD_AFTER = ALIVE_INTERVAL * ALIVE_COUNT_MAX
"""Seconds of total silence after which the connection is closed as dead (20 s, within 30 s)."""
TCP_USER_TIMEOUT = 25.0
"""Seconds the kernel lets data we sent stay unacknowledged before it aborts the connection
(TCP_USER_TIMEOUT): a cut cable fails even if the monitor thread could not run. A little longer
than :data:`DEAD_AFTER`, so the monitor's clearer message usually comes first."""
TCP_KEEPIDLE = 10
"""Seconds an idle connection waits before the kernel starts TCP keepalive probes."""
TCP_KEEPINTVL = 5
"""Seconds between TCP keepalive probes."""
TCP_KEEPCNT = 3
"""Unanswered TCP keepalive probes before the kernel drops an idle connection."""
_TICK = 0.5
"""How often the monitor looks at the clock (bounds how late past DEAD_AFTER it notices)."""
KEEPALIVE_REQUEST = "keepalive@openssh.com"
"""The request OpenSSH's client sends for ServerAliveInterval; servers answer it with failure."""


def tune_socket(sock: socket.socket) -> None:
    """Set TCP keepalive and TCP_USER_TIMEOUT on ``sock`` (where the platform has them)."""
    options = [
        (socket.SOL_SOCKET, "SO_KEEPALIVE", 1),
        (socket.IPPROTO_TCP, "TCP_KEEPIDLE", TCP_KEEPIDLE),
        (socket.IPPROTO_TCP, "TCP_KEEPINTVL", TCP_KEEPINTVL),
        (socket.IPPROTO_TCP, "TCP_KEEPCNT", TCP_KEEPCNT),
        (socket.IPPROTO_TCP, "TCP_USER_TIMEOUT", int(TCP_USER_TIMEOUT * 1000)),
    ]
    for level, name, value in options:
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(level, option, value)


class Meter:
    """A socket (or jump-host channel) that notes when data last arrived from the peer.

    paramiko reads and writes through it; everything else is the wrapped object's."""

    def __init__(self, sock: socket.socket | paramiko.Channel) -> None:
        self.sock = sock
        self.heard = time.monotonic()
        """``time.monotonic()`` when the peer last sent us a byte."""

    def recv(self, size: int) -> bytes:
        data = self.sock.recv(size)
        if data:
            self.heard = time.monotonic()
        return data

    def send(self, data: bytes) -> int:
        return self.sock.send(data)

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)

    def close(self) -> None:
        self.sock.close()

    def __getattr__(self, name: str) -> Any:  # fileno, getpeername, _closed ...
        return getattr(self.sock, name)


class Liveness:
    """Watches one transport (see the module docstring); call :meth:`stop` when done with it."""

    def __init__(
        self,
        transport: paramiko.Transport,
        meter: Meter,
        *,
        name: str,
        on_dead: Callable[[str], None],
        interval: float = ALIVE_INTERVAL,
        count_max: int = ALIVE_COUNT_MAX,
    ) -> None:
        self.transport = transport
        self.meter = meter
        self.interval = interval
        self.count_max = count_max
        self.dead: str | None = None
        """Why the peer was declared dead (None while it is alive)."""
        self._on_dead = on_dead
        self._stop = threading.Event()
        self._probe: threading.Thread | None = None
        self._thread = threading.Thread(target=self._watch, name=f"liveness {name}", daemon=True)

    def start(self) -> Liveness:
        self.meter.heard = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        tick = min(_TICK, self.interval / 2)
        while not self._stop.wait(tick):
            if not self.transport.is_active():
                return  # closed by its owner or by the peer: the waits end on their own
            silent = time.monotonic() - self.meter.heard
            if silent >= self.interval * self.count_max:
                self.dead = (
                    f"no answer for {silent:.0f}s ({self.count_max} keepalives "
                    f"{self.interval:g}s apart unanswered): the host is down, frozen or "
                    f"cut off"
                )
                self._on_dead(self.dead)
                return
            if silent >= self.interval:
                self._ask()

    def _ask(self) -> None:
        """Send a keepalive request wanting a reply, unless one is still unanswered: TCP
        delivers it or breaks, so a second one would only queue behind the first."""
        if self._probe is not None and self._probe.is_alive():
            return
        # global_request blocks until the reply (or the transport's end): its own thread, so
        # the monitor keeps counting while the request waits behind queued data
        self._probe = threading.Thread(
            target=self._request, name=f"{self._thread.name} request", daemon=True
        )
        self._probe.start()

    def _request(self) -> None:
        # an error means the transport is ending: the monitor sees that (or the silence)
        with contextlib.suppress(paramiko.SSHException, OSError, EOFError):
            self.transport.global_request(KEEPALIVE_REQUEST, wait=True)
