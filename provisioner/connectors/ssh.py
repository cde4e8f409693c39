"""The SSH connector (paramiko): one persistent transport per host, channels multiplexed on it.

Connecting verifies the server's host key against pinned keys *before* authenticating, so a
man-in-the-middle never sees a signature from our key:

* ``strict`` — an unknown or changed key is a :class:`~provisioner.errors.ConnectError` that names
  the host, both SHA256 fingerprints and the fix;
* ``accept-new`` — an unknown key is pinned into the known_hosts file on first use; a changed key
  is still refused.

TCP connects are retried with jittered exponential backoff; authentication and host-key failures
are not (retrying cannot fix them), nor is a local file problem (an identity or known_hosts file
that is missing, a directory or unreadable): that is reported once, naming the file. Messages
name the host and what failed, never credentials.
Files go over one SFTP session per host: written to a temporary name in the target directory, then
chmod/chown/rename in one command, so a reader never sees a partial file even if the connection
dies half-way.

Nothing waits without bound. A host that stops answering (cut off, powered off, frozen) is
declared dead after :data:`~provisioner.connectors.liveness.DEAD_AFTER` seconds of silence
despite keepalive requests (see :mod:`provisioner.connectors.liveness`): the connection is closed,
and whatever waited on it fails at once, naming the host, what it was doing and why. While the
host answers, a command gets :data:`COMMAND_TIMEOUT` seconds unless the caller gives its own,
and every transfer (SFTP, a command's stdin) fails after :data:`STALL_TIMEOUT` seconds without
progress (a live host whose disk or sftp-server hangs) — each as an error naming the host and
what it was doing. The SFTP session is used by one thread at a time (paramiko's client is not
safe for concurrent requests: one thread would read another's replies and both wait forever),
and a command's stdin is sent while its output is read (writing it all first deadlocks once the
output fills the SSH window).
"""

from __future__ import annotations

import contextlib
import random
import secrets
import select
import shlex
import socket
import threading
import time
from pathlib import Path, PurePosixPath
from typing import cast

from provisioner.commands import Shell
from provisioner.connectors.base import (
    COMMAND_TIMEOUT,
    CommandResult,
    HostKeyPolicy,
    HostName,
    HostTarget,
    atomic_put_script,
    render,
)
from provisioner.connectors.known_hosts import KnownHosts, fingerprint, host_entry
from provisioner.connectors.liveness import (
    ALIVE_COUNT_MAX,
    ALIVE_INTERVAL,
    Liveness,
    Meter,
    tune_socket,
)
from provisioner.connectors.shell_session import ShellDied, ShellSession, ShellTimeout
from provisioner.errors import ConnectError, OperationError
from provisioner.sshlib import paramiko

_BUF = 1 << 16
_POLL = 0.5
STALL_TIMEOUT = 120.0
"""Seconds an upload, download or a command's stdin may make no progress before it fails, on a
host that still answers keepalives (its disk or sftp-server hangs); a dead host fails sooner."""


_LOCAL_FILE_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError)
"""Errors of a file on this machine (a TCP connect never raises them): retrying cannot help."""


def _load_key(path: Path, host: str) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(str(path))
    except FileNotFoundError:
        raise ConnectError(
            f"{host}: identity file {path} does not exist",
            hint="set spec.ssh.identityFile to an existing private key",
        ) from None
    except OSError as error:  # a directory, no permission: a local problem, never retried
        raise ConnectError(
            f"{host}: cannot read identity file {path}: {error.strerror}",
            hint="set spec.ssh.identityFile to a private key file this user can read",
        ) from None
    except (paramiko.PasswordRequiredException, TypeError):  # TypeError: from cryptography
        raise ConnectError(
            f"{host}: identity file {path} is encrypted; berth cannot ask for its passphrase",
            hint="give an unencrypted private key (e.g. a deploy key kept on this machine only)",
        ) from None
    except (paramiko.SSHException, ValueError) as error:
        raise ConnectError(f"{host}: cannot load identity file {path}: {error}") from None


def _known_hosts(path: Path | None, host: str) -> KnownHosts:
    try:
        return KnownHosts.shared(path)
    except OSError as error:
        raise ConnectError(
            f"{host}: cannot read known_hosts file {path}: {error.strerror}",
            hint="set spec.ssh.knownHostsFile to an OpenSSH known_hosts file this user can read",
        ) from None


def verify_host_key(
    *,
    host: str,
    address: str,
    port: int,
    offered: paramiko.PKey,
    known: KnownHosts,
    policy: HostKeyPolicy,
) -> None:
    """Accept ``offered`` or raise :class:`ConnectError` (see the module docstring)."""
    entry = host_entry(address, port)
    names = [entry, host]
    pinned = known.pinned(names, offered.get_name())
    if pinned is not None:
        if pinned.asbytes() == offered.asbytes():
            return
        where = known.path or "known_hosts"
        raise ConnectError(
            f"{host} ({address}:{port}): HOST KEY CHANGED — pinned {fingerprint(pinned)}, "
            f"offered {fingerprint(offered)}; refusing to connect (possible man-in-the-middle)",
            hint=f"if {host} was reinstalled, verify the new key out of band, then remove the old "
            f"pin: ssh-keygen -f {where} -R '{entry}'",
        )
    others = known.pinned_any(names)
    if others:
        raise ConnectError(
            f"{host} ({address}:{port}): HOST KEY CHANGED — pinned "
            f"{', '.join(fingerprint(k) for k in others)}, offered {fingerprint(offered)} "
            f"({offered.get_name()}); refusing to connect",
            hint=f"verify the key out of band, then remove the old pin: "
            f"ssh-keygen -f {known.path or 'known_hosts'} -R '{entry}'",
        )
    if policy is HostKeyPolicy.ACCEPT_NEW and known.path is not None:
        try:
            known.pin(entry, offered)
        except OSError as error:
            raise ConnectError(
                f"{host}: cannot pin its host key into {known.path}: {error.strerror}",
                hint="make spec.ssh.knownHostsFile (or the cluster state) writable",
            ) from None
        return
    raise ConnectError(
        f"{host} ({address}:{port}): host key {fingerprint(offered)} ({offered.get_name()}) is "
        f"not pinned and hostKeyPolicy is strict",
        hint=f"add the host's key to {known.path or 'spec.ssh.knownHostsFile'} "
        f"(e.g. from its /etc/ssh/ssh_host_ed25519_key.pub) or set hostKeyPolicy: accept-new",
    )


def _excerpt(text: str, limit: int = 120) -> str:
    """The start of a command for an error message: its first line, shortened."""
    lines = text.strip().splitlines() or [""]
    first = lines[0]
    return first[:limit] + " ..." if len(first) > limit or len(lines) > 1 else first


def _dial(address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection with the kernel's dead-peer limits set (see liveness.tune_socket)."""
    sock = socket.create_connection((address, port), timeout=timeout)
    if isinstance(sock, socket.socket):  # tests may hand out stand-ins
        try:
            tune_socket(sock)
        except BaseException:
            sock.close()
            raise
    return sock


def _backoff(attempt: int) -> float:
    # full jitter: spreads simultaneous reconnects of many hosts
    return float(random.uniform(0, min(4.0, 0.2 * (2**attempt))))  # noqa: S311


class SSHConnector:
    """A live SSH connection to one host (see the module docstring)."""

    def __init__(self, target: HostTarget, *, known: KnownHosts | None = None) -> None:
        self.target = target
        self._known = known if known is not None else _known_hosts(target.known_hosts, target.name)
        self._transport: paramiko.Transport | None = None
        self._jump: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._session: ShellSession | None = None
        self._monitors: list[Liveness] = []
        self._dead: str | None = None
        """Why the liveness monitor closed the connection (None while the host answers)."""
        self._lock = threading.Lock()
        self._session_lock = threading.Lock()
        self._sftp_lock = threading.Lock()
        self.command_timeout = COMMAND_TIMEOUT
        self.stall_timeout = STALL_TIMEOUT
        self.alive_interval = ALIVE_INTERVAL
        self.alive_count_max = ALIVE_COUNT_MAX

    @property
    def host(self) -> HostName:
        return self.target.name

    # -- connecting -------------------------------------------------------------------------

    def connect(self) -> SSHConnector:
        """Open the transport (retrying transient failures); idempotent."""
        with self._lock:
            if self._transport is not None and self._transport.is_active():
                return self
            self._close_locked()
            t = self.target
            last: Exception | None = None
            for attempt in range(max(1, t.retries + 1)):
                if attempt:
                    time.sleep(_backoff(attempt))
                try:
                    self._transport = self._open(t)
                    self._dead = None
                    return self
                except ConnectError:
                    self._close_locked()
                    raise
                except _LOCAL_FILE_ERRORS as error:
                    # a file on this machine: the same on every attempt, and no sshd hint
                    self._close_locked()
                    raise ConnectError(
                        f"{t.name}: {type(error).__name__}: {error}",
                        hint="a file on this machine is the problem, not the host",
                    ) from None
                except (OSError, EOFError, paramiko.SSHException) as error:
                    self._close_locked()
                    last = error
            reason = f"{type(last).__name__}: {last}" if last else "unknown error"
            raise ConnectError(
                f"{t.name}: could not connect to {t.address}:{t.port} as {t.user} "
                f"({reason}; gave up after {t.retries + 1} attempt(s))",
                hint="check the host is up and sshd listens there; adjust spec.ssh.connectTimeout",
            )

    def check_pins(self) -> None:
        """Re-read the pinned keys and hold the open connection's host keys (the target's and
        its jump host's) to them, as :meth:`connect` holds a new one: a connection kept open
        between runs (:mod:`provisioner.connectors.mux`) is trusted only while the pins and the
        policy as they are *now* accept it. Raises :class:`ConnectError` like a connect."""
        t = self.target
        self._known = _known_hosts(t.known_hosts, t.name)
        jump, transport = self._jump, self._transport
        if jump is not None and t.jump is not None and jump.is_active():
            verify_host_key(
                host=f"{t.name} via jump host {t.jump.address}", address=t.jump.address,
                port=t.jump.port, offered=jump.get_remote_server_key(), known=self._known,
                policy=t.host_key_policy,
            )  # fmt: skip
        if transport is not None and transport.is_active():
            verify_host_key(
                host=t.name, address=t.address, port=t.port,
                offered=transport.get_remote_server_key(), known=self._known,
                policy=t.host_key_policy,
            )  # fmt: skip

    @property
    def transport(self) -> paramiko.Transport | None:
        """The open transport to the target (None before :meth:`connect` or once closed)."""
        return self._transport

    def _sock(self, t: HostTarget) -> socket.socket | paramiko.Channel:
        if t.jump is None:
            return _dial(t.address, t.port, t.connect_timeout)
        j = t.jump
        raw = _dial(j.address, j.port, t.connect_timeout)
        self._jump = self._handshake(
            raw,
            name=f"{t.name} via jump host {j.address}",
            address=j.address,
            port=j.port,
            user=j.user,
            identity=j.identity_file or t.identity_file,
        )
        return self._jump.open_channel(
            "direct-tcpip", (t.address, t.port), ("127.0.0.1", 0), timeout=t.connect_timeout
        )

    def _handshake(
        self,
        sock: socket.socket | paramiko.Channel,
        *,
        name: str,
        address: str,
        port: int,
        user: str,
        identity: Path | None,
    ) -> paramiko.Transport:
        t = self.target
        meter = Meter(sock)
        # a socket to paramiko: it only calls recv/send/settimeout/close (and reads _closed)
        transport = paramiko.Transport(cast("socket.socket", meter))
        try:
            transport.start_client(timeout=t.connect_timeout)
            # the host key is checked before we authenticate: an impostor never gets a
            # signature made with our key
            verify_host_key(
                host=name,
                address=address,
                port=port,
                offered=transport.get_remote_server_key(),
                known=self._known,
                policy=t.host_key_policy,
            )
            if identity is None:
                raise ConnectError(
                    f"{name}: no identity file configured", hint="set spec.ssh.identityFile"
                )
            key = _load_key(identity, name)
            try:
                transport.auth_publickey(user, key)
            except paramiko.AuthenticationException:
                raise ConnectError(
                    f"{name}: authentication as {user} with key {identity} was refused",
                    hint=f"install the public key in ~{user}/.ssh/authorized_keys on {address}",
                ) from None
        except BaseException:
            transport.close()
            raise
        monitor = Liveness(
            transport, meter, name=name,
            on_dead=lambda reason: self._declare_dead(reason, transport),
            interval=self.alive_interval, count_max=self.alive_count_max,
        )  # fmt: skip
        self._monitors.append(monitor.start())
        return transport

    def _declare_dead(self, reason: str, transport: paramiko.Transport) -> None:
        """Called by the liveness monitor of ``transport``: close the connection (the target's
        transport and its jump host's) so every wait on it ends now.

        Runs on the monitor's thread and takes no lock: the thread holding ``_lock`` may itself
        be waiting on this very connection (opening the SFTP session)."""
        current = (self._transport, self._jump)
        doomed = current if transport in current else (transport,)  # else: replaced already
        if transport in current:
            self._dead = reason
        for each in doomed:
            if each is not None:
                with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                    each.close()

    def _lost(self, what: str, error: BaseException | str) -> ConnectError:
        """The error for a connection that ended while doing ``what``: the monitor's reason
        when it closed it, else the error paramiko or the socket gave."""
        if self._dead:
            why = self._dead
        elif isinstance(error, str):
            why = error
        else:
            why = str(error) or type(error).__name__
        return ConnectError(
            f"{self.host}: connection lost while {what}: {why}",
            hint="check the host and its network; once it answers, apply again (finished "
            "operations are not repeated, uploads are atomic)",
        )

    def _open(self, t: HostTarget) -> paramiko.Transport:
        sock = self._sock(t)
        return self._handshake(
            sock,
            name=str(t.name),
            address=t.address,
            port=t.port,
            user=t.user,
            identity=t.identity_file,
        )

    def _live(self) -> paramiko.Transport:
        transport = self._transport
        if transport is None or not transport.is_active():
            self.connect()
            transport = self._transport
        assert transport is not None
        return transport

    # -- commands ---------------------------------------------------------------------------

    def run(
        self, command: Shell | str, *, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        """Run ``command`` with ``/bin/sh``: on the host's persistent shell session when
        possible (see :mod:`provisioner.connectors.shell_session`), else on a new channel.
        ``timeout`` (default: ``command_timeout``) bounds the command either way; a session
        whose command timed out is closed, as a channel would be."""
        text = render(command)
        if stdin is None and self._session_lock.acquire(blocking=False):
            try:
                return self._run_in_session(text, timeout)
            finally:
                self._session_lock.release()
        return self._run_in_channel(text, stdin=stdin, timeout=timeout)

    def _run_in_session(self, text: str, timeout: float | None = None) -> CommandResult:
        limit = self.command_timeout if timeout is None else timeout
        try:
            if self._session is None or not self._session.alive:
                self._session = ShellSession(self._live(), timeout=self.target.connect_timeout)
            return self._session.run(text, timeout=limit)
        except ShellTimeout:
            # the command may still run there: this shell is out of step, a new one starts fresh
            session, self._session = self._session, None
            if session is not None:
                with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                    session.close()
            raise OperationError(
                f"{self.host}: command did not finish within {limit:.0f}s: {_excerpt(text)}",
                hint="check the host (load, a hung process); the command may still be running",
            ) from None
        except ShellDied:
            # the shell itself exited (a syntax error makes sh quit): rerun on a fresh channel,
            # which reports the error with its real exit code
            self._session = None
            if self._transport is None or not self._transport.is_active():
                self._drop()
                raise self._lost(
                    f"running {_excerpt(text)}", "closed before the command finished"
                ) from None
            return self._run_in_channel(text, stdin=None, timeout=None)
        except (paramiko.SSHException, OSError, EOFError) as error:
            self._session = None
            self._drop()
            raise self._lost(f"running {_excerpt(text)}", error) from None

    def _run_in_channel(
        self, text: str, *, stdin: bytes | None, timeout: float | None
    ) -> CommandResult:
        limit = self.command_timeout if timeout is None else timeout
        try:
            channel = self._live().open_session(timeout=self.target.connect_timeout)
        except (paramiko.SSHException, OSError, EOFError) as error:
            self._drop()
            raise self._lost(f"starting {_excerpt(text)}", error) from None
        try:
            channel.exec_command(shlex.join(["/bin/sh", "-c", text]))
            out, err = self._exchange(channel, stdin or b"", limit, text)
            if not channel.status_event.wait(limit):
                raise OperationError(
                    f"{self.host}: command timed out after {limit:.0f}s: {_excerpt(text)}"
                )
            code = channel.recv_exit_status()
        except (paramiko.SSHException, OSError, EOFError) as error:
            self._drop()
            raise self._lost(f"running {_excerpt(text)}", error) from None
        finally:
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                channel.close()
        if code == -1:
            # the transport died before the exit status arrived
            self._drop()
            raise self._lost(f"running {_excerpt(text)}", "closed before the command finished")
        return CommandResult(code, out.decode(errors="replace"), err.decode(errors="replace"))

    def _exchange(
        self, channel: paramiko.Channel, stdin: bytes, timeout: float, text: str
    ) -> tuple[bytes, bytes]:
        """Send ``stdin`` while reading stdout/stderr until EOF, within ``timeout`` seconds.

        Output is read between stdin chunks: a command that writes while it reads (``base64``,
        ``tar -v``) stops reading once its output fills the SSH window we do not drain, and a
        plain ``sendall`` then waits forever. A command that exits without reading all of its
        stdin is fine: the rest is dropped."""
        out: list[bytes] = []
        err: list[bytes] = []
        sent = 0
        if not stdin:
            channel.shutdown_write()
        deadline = time.monotonic() + timeout
        progress = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise OperationError(
                    f"{self.host}: command timed out after {timeout:.0f}s: {_excerpt(text)}"
                )
            sending = sent < len(stdin) and not channel.closed and not channel.exit_status_ready()
            if sending and now - progress > self.stall_timeout:
                raise OperationError(
                    f"{self.host}: the command took no input for {self.stall_timeout:.0f}s "
                    f"({sent} of {len(stdin)} bytes sent): {_excerpt(text)}"
                )
            wait = min(_POLL, deadline - now)
            if sending:
                wait = 0.0 if channel.send_ready() else min(wait, 0.05)
            ready, _, _ = select.select([channel], [], [], wait)
            while channel.recv_stderr_ready():
                err.append(channel.recv_stderr(_BUF))
            while channel.recv_ready():
                chunk = channel.recv(_BUF)
                if not chunk:
                    break
                out.append(chunk)
            if sending and channel.send_ready():
                try:
                    n = channel.send(stdin[sent : sent + _BUF])
                except OSError:
                    n = 0  # the command closed its stdin (or exited): the rest is not wanted
                    sent = len(stdin)
                if n:
                    sent += n
                    progress = time.monotonic()
                if sent >= len(stdin):
                    with contextlib.suppress(OSError):
                        channel.shutdown_write()
            elif sent < len(stdin) and (channel.closed or channel.exit_status_ready()):
                sent = len(stdin)  # exited without reading everything
            if channel.eof_received or channel.closed:
                while channel.recv_ready():
                    chunk = channel.recv(_BUF)
                    if not chunk:
                        break
                    out.append(chunk)
                while channel.recv_stderr_ready():
                    err.append(channel.recv_stderr(_BUF))
                return b"".join(out), b"".join(err)
            if not ready:
                transport = channel.get_transport()
                if transport is None or not transport.is_active():
                    raise EOFError("the connection closed")

    # -- files ------------------------------------------------------------------------------

    def _sftp_client(self) -> paramiko.SFTPClient:
        transport = self._live()
        with self._lock:
            if self._sftp is None or self._sftp.sock.closed:
                sftp = paramiko.SFTPClient.from_transport(transport)
                if sftp is None:
                    raise ConnectError(f"{self.host}: the SFTP subsystem is not available")
                # every blocking read/write on the session now fails after this long without
                # progress (socket.timeout) instead of waiting forever
                channel = sftp.get_channel()
                if channel is not None:
                    channel.settimeout(self.stall_timeout)
                self._sftp = sftp
            return self._sftp

    def put(
        self,
        content: bytes,
        path: str,
        *,
        mode: int = 0o644,
        owner: str | None = None,
        group: str | None = None,
    ) -> None:
        target = PurePosixPath(path)
        tmp = str(target.parent / f".{target.name}.berth-{secrets.token_hex(4)}")
        try:
            with self._sftp_lock:
                sftp = self._sftp_client()
                with sftp.open(tmp, "wb") as handle:
                    handle.set_pipelined(True)
                    handle.write(content)
        except FileNotFoundError:
            raise OperationError(
                f"{self.host}: cannot write {path}: directory {target.parent} does not exist",
                hint="ensure the directory first (operations.files.Directory)",
            ) from None
        except TimeoutError:
            self._drop()
            if self._dead:
                raise self._lost(f"uploading {path}", self._dead) from None
            raise ConnectError(
                f"{self.host}: uploading {path} ({len(content)} bytes) made no progress for "
                f"{self.stall_timeout:.0f}s; gave up",
                hint="check the host's disk and network; apply again (uploads are atomic)",
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as error:
            self._drop()
            raise self._lost(f"uploading {path} ({len(content)} bytes)", error) from None
        result = self.run(atomic_put_script(path, tmp, mode=mode, owner=owner, group=group))
        if not result.ok:
            self.run(Shell("rm", "-f", tmp))
            result.check(self.host, f"installing {path}")

    def get(self, path: str) -> bytes:
        try:
            with self._sftp_lock, self._sftp_client().open(path, "rb") as handle:
                handle.prefetch()
                return handle.read()
        except FileNotFoundError:
            raise
        except TimeoutError:
            self._drop()
            if self._dead:
                raise self._lost(f"reading {path}", self._dead) from None
            raise ConnectError(
                f"{self.host}: reading {path} made no progress for {self.stall_timeout:.0f}s"
            ) from None
        except (paramiko.SSHException, EOFError) as error:
            self._drop()
            raise self._lost(f"reading {path}", error) from None

    # -- teardown ---------------------------------------------------------------------------

    def _drop(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        # closing over a dead connection raises; there is nothing left to save by then
        for monitor in self._monitors:
            monitor.stop()
        self._monitors = []
        if self._session is not None:
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                self._session.close()
            self._session = None
        if self._sftp is not None:
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                self._sftp.close()
            self._sftp = None
        for transport in (self._transport, self._jump):
            if transport is not None:
                with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                    transport.close()
        self._transport = None
        self._jump = None

    def close(self) -> None:
        self._drop()

    def kill_transport(self) -> None:
        """Sever the TCP connection abruptly (fault injection in tests)."""
        transport = self._transport
        if transport is not None:
            transport.sock.close()
