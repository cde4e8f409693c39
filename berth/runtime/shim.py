"""A tiny per-container supervisor so exit codes survive the agent (like containerd-shim).

``python3 -S .../berth/runtime/shim.py --runc runc --root R --bundle B --id ID --log L --exit E``

(Run as a file, not with ``-m``: that skips importing the ``berth`` package, and the shim needs
nothing but the standard library — every millisecond here is pod startup latency. For the same
reason it imports only ``os``, ``sys`` and ``ctypes`` before the container is created, spawns
runc with ``posix_spawn`` instead of :mod:`subprocess`, and writes its verdict without
:mod:`json`: a busy node starts many pods at once and these imports were a third of the
shim's CPU time. Whatever is needed once the container runs is imported then.)

1. forks; the parent waits for the child's verdict on a pipe and exits 0 (created) or 1 (with
   runc's error on stderr), so the caller sees ``runc create`` fail synchronously;
2. the child starts a new session, becomes a *child subreaper*, and runs ``runc create`` with
   the container's stdout/stderr pointing at the log file (opened ``O_APPEND`` so the runtime
   can rotate it by copy + truncate);
3. when ``runc create`` returns, the container's init process is re-parented to the shim,
   which waits for it and writes ``{"exitCode", "signal", "finishedAt"}`` atomically to the
   exit file (128 + signal number for a signalled process, as Kubernetes reports it). The
   verdict names the shim's own pid: until the shim ends, a missing exit file means the exit
   is still being recorded, not that it is lost.

The shim outlives the agent: an agent restart finds running containers via ``runc`` and their
exit codes in the exit files. Standard library only.

Containers started with ``stdin`` or ``tty`` (``--stdio pipe|tty``) keep their stdio in the
shim instead: with ``tty``, runc hands the pseudo-terminal's master over ``--console``
(``runc create --console-socket``); with ``pipe``, the container's stdin, stdout and stderr
are pipes the shim holds. Either way the shim copies the output to the log file and serves
``pods/attach`` on the unix socket ``--attach``: any number of clients, each frame one
channel byte (0 stdin, 1 stdout, 2 stderr, 4 resize as ``{"Width": w, "Height": h}``, 255
close, data = the channel that ended), a 4-byte big-endian length and the data.
``--stdin-once yes`` closes the container's stdin when the first attached client is done
with it (``stdinOnce``).
"""

from __future__ import annotations

import os
import sys

# Not typing.TYPE_CHECKING: importing typing costs the shim milliseconds (mypy honours the name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

PR_SET_CHILD_SUBREAPER = 36


def _write_atomic(path: str, doc: dict[str, object]) -> None:
    import json  # noqa: PLC0415 - after the container started (see the module docstring)

    # fsync'd (file, then the directory after the rename): a container's exit code must
    # outlive a power cut (a Job's succeeded pod is not run again, nor reported lost)
    directory = os.path.dirname(path)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp")
    with open(tmp, "w") as out:
        out.write(json.dumps(doc))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _report(fd: int, verdict: str) -> None:
    """Send the verdict (``ok <json>`` or ``error <message>``) to the waiting parent and
    close the pipe (it then exits)."""
    with os.fdopen(fd, "w") as pipe:
        pipe.write(verdict)


def _runc_error(runc_log: str) -> str:
    """The last error message runc logged (its JSON log), else its raw tail."""
    import json  # noqa: PLC0415 - only when runc failed

    try:
        with open(runc_log, errors="replace") as log:
            lines = log.read().splitlines()
    except FileNotFoundError:
        return "runc failed without logging anything"
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
            return str(entry.get("msg", line))
    return "\n".join(lines[-5:]) or "runc failed without logging anything"


def oom_kills(
    bundle: str | os.PathLike[str], cgroup_root: str | os.PathLike[str] = "/sys/fs/cgroup"
) -> int:
    """The container cgroup's OOM-kill count (read before ``runc delete`` removes it)."""
    import json  # noqa: PLC0415 - after the container ended

    try:
        with open(os.path.join(bundle, "config.json")) as fh:
            config = json.load(fh)
        relative = str(config["linux"]["cgroupsPath"]).lstrip("/")
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    candidates = (
        os.path.join(cgroup_root, relative, "memory.events"),  # cgroup v2
        os.path.join(cgroup_root, "memory", relative, "memory.oom_control"),  # v1
    )
    for path in candidates:
        try:
            with open(path) as fh:
                for line in fh.read().splitlines():
                    name, _, value = line.partition(" ")
                    if name == "oom_kill" and value.strip().isdigit():
                        return int(value)
        except OSError:
            continue
    return 0


def _set_subreaper() -> bool:
    try:
        import ctypes  # noqa: PLC0415 - the one import the child needs before runc create

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _start(argv: list[str], *, stdin: int, stdout: int, stderr: int) -> int:
    """Start ``argv`` (PATH lookup) on these descriptors as its 0, 1 and 2; its pid.
    posix_spawn (vfork) instead of :mod:`subprocess`, whose import costs milliseconds here;
    every other descriptor the shim holds is close-on-exec and stays behind."""
    return os.posix_spawnp(
        argv[0],
        argv,
        os.environ,
        file_actions=[
            (os.POSIX_SPAWN_DUP2, stdin, 0),
            (os.POSIX_SPAWN_DUP2, stdout, 1),
            (os.POSIX_SPAWN_DUP2, stderr, 2),
        ],
    )


def _spawn(argv: list[str], *, stdin: int, stdout: int, stderr: int) -> int:
    """Run ``argv`` as :func:`_start` does and wait for it; its exit code."""
    _, status = os.waitpid(_start(argv, stdin=stdin, stdout=stdout, stderr=stderr), 0)
    return os.waitstatus_to_exitcode(status)


def _wait_for(pid: int, *, reaper: bool) -> tuple[int | None, str | None]:
    """Wait for ``pid``; returns (exit code, signal name). Unknown code when not our child."""
    if reaper:
        while True:
            try:
                done, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if done == pid:
                if os.WIFSIGNALED(status):
                    import signal  # noqa: PLC0415 - after the container ended

                    sig = os.WTERMSIG(status)
                    return 128 + sig, signal.Signals(sig).name
                return os.WEXITSTATUS(status), None
    import time  # noqa: PLC0415 - only when not re-parented to us

    while os.path.exists(f"/proc/{pid}"):  # not re-parented to us: watch it disappear
        time.sleep(0.5)
    return None, None


_OPTIONS = ("runc", "root", "bundle", "id", "log", "exit")
_OPTIONAL = ("stdio", "attach", "console", "stdin-once", "start")


def _parse(argv: list[str]) -> dict[str, str] | None:
    """``--name value`` pairs for every option (argparse costs start-up time here)."""
    if len(argv) % 2:
        return None
    found = {"runc": "runc"}
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        if not flag.startswith("--") or flag[2:] not in _OPTIONS + _OPTIONAL:
            return None
        found[flag[2:]] = value
    if not all(o in found for o in _OPTIONS):
        return None
    stdio = found.get("stdio", "")
    if stdio not in ("", "pipe", "tty") or (stdio and "attach" not in found):
        return None
    if stdio == "tty" and "console" not in found:
        return None
    if found.get("start", "no") not in ("yes", "no") or (stdio and found.get("start") == "yes"):
        return None  # a container with stdio starts once its attach socket listens
    return found


def _await_verdict(read_end: int) -> int:
    """The parent: relay the child's verdict (stdout) or error (stderr) as the exit status."""
    with os.fdopen(read_end, "rb") as verdict_pipe:
        raw = verdict_pipe.read().decode(errors="replace")
    kind, _, rest = raw.partition(" ")
    if kind == "ok":
        print(rest)
        return 0
    print(rest if kind == "error" and rest else "shim died before reporting", file=sys.stderr)
    return 1


# --- stdio of containers started with stdin or tty (pods/attach) -------------------------------

OUTPUT_DRAIN_SECONDS = 2.0
"""How long output is still copied after the container's process ended (a background child
may hold its stdout open; its output past this is not waited for)."""
FRAME_LIMIT = 1 << 20
CLIENT_SEND_SECONDS = 5.0
"""A client that does not take its output for this long is dropped (the container must not
stall behind a stuck reader)."""
CH_STDIN, CH_STDOUT, CH_STDERR, CH_RESIZE, CH_CLOSE = 0, 1, 2, 4, 255


def _create_with_pipes(create: list[str], log_fd: int) -> tuple[int, StdioHolder | None]:
    """``runc create`` passes its own stdio to the container: pipes whose other ends the
    shim keeps (descriptors from os.pipe are close-on-exec: only the dup2'd ends pass)."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        rc = _spawn(create, stdin=in_r, stdout=out_w, stderr=err_w)
    finally:
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    if rc != 0:
        for fd in (in_w, out_r, err_r):
            os.close(fd)
        return rc, None
    holder = StdioHolder(
        master=None, outputs=[(CH_STDOUT, out_r), (CH_STDERR, err_r)], log_fd=log_fd, stdin=in_w
    )
    return rc, holder


def _create_with_console(
    create: list[str], console: str, devnull: int, log_fd: int
) -> tuple[int, int | None]:
    """``runc create --console-socket``: runc sends the terminal's master end over the socket
    while it creates the container; the exit status and the master (None if none came)."""
    server = _listen(console, backlog=1)
    server.settimeout(0.05)
    argv = [*create[:-1], "--console-socket", console, create[-1]]
    pid = _start(argv, stdin=devnull, stdout=log_fd, stderr=log_fd)
    master: int | None = None
    rc: int | None = None
    try:
        while master is None or rc is None:
            if master is None:
                master = _receive_master(server)
            if rc is None:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    rc = os.waitstatus_to_exitcode(status)
                    server.settimeout(0.5)  # a connection made just before runc ended
                    if master is None:
                        master = _receive_master(server)
                        if master is None:
                            break
    finally:
        server.close()
        with _Suppress(FileNotFoundError):
            os.unlink(console)
    return (rc if rc is not None else 1), master


def _listen(path: str, *, backlog: int) -> socket.socket:
    """A unix socket listening at ``path`` (whatever was there replaced), for root only."""
    import socket  # noqa: PLC0415 - only for containers with stdin or a terminal

    with _Suppress(FileNotFoundError):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o600)
    server.listen(backlog)
    return server


def _receive_master(server: socket.socket) -> int | None:
    """The terminal's master end runc sends on a connection to ``server``; None when no
    connection comes within the server's timeout (or it carries no descriptor)."""
    import socket  # noqa: PLC0415 - only for tty containers

    try:
        conn, _ = server.accept()
    except TimeoutError:
        return None
    with conn:
        conn.settimeout(5.0)
        _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
    return fds[0] if fds else None


class _Suppress:
    """contextlib.suppress without importing contextlib (start-up cost)."""

    def __init__(self, *errors: type[BaseException]) -> None:
        self.errors = errors

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: object, tb: object) -> bool:
        return isinstance(exc, self.errors)


class StdioHolder:
    """The container's stdio kept by the shim: output to the log and to every attached
    client, input from attached clients (see the module docstring for the frames)."""

    def __init__(
        self,
        *,
        master: int | None,
        outputs: list[tuple[int, int]],
        log_fd: int,
        stdin: int | None = None,
    ) -> None:
        import threading  # noqa: PLC0415 - after the container was created

        self.master = master
        self.outputs = outputs
        self.log_fd = log_fd
        self.stdin = master if master is not None else stdin
        self.clients: list[socket.socket] = []
        self.lock = threading.Lock()
        self.stdin_lock = threading.Lock()
        self.stdin_once = False
        self.stdin_used = False
        self.done = threading.Event()
        self.listener: socket.socket | None = None
        self.path = ""

    def serve(self, path: str, *, stdin_once: bool) -> None:
        import threading  # noqa: PLC0415

        self.stdin_once = stdin_once
        self.path = path
        self.listener = _listen(path, backlog=16)
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._copy_output, daemon=True).start()

    def finish(self, seconds: float) -> None:
        """After the container's process ended: let the output drain, then hang up."""
        self.done.wait(seconds)
        with _Suppress(FileNotFoundError):
            os.unlink(self.path)
        if self.listener is not None:
            with _Suppress(OSError):
                self.listener.close()
        with self.lock:
            clients, self.clients = self.clients, []
        for client in clients:
            with _Suppress(OSError):
                client.close()

    def _accept(self) -> None:
        import threading  # noqa: PLC0415

        assert self.listener is not None
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            client.settimeout(CLIENT_SEND_SECONDS)
            with self.lock:
                self.clients.append(client)
            threading.Thread(target=self._client_input, args=(client,), daemon=True).start()

    def _broadcast(self, channel: int, data: bytes) -> None:
        frame = bytes([channel]) + len(data).to_bytes(4, "big") + data
        with self.lock:
            clients = list(self.clients)
        for client in clients:
            try:
                client.sendall(frame)
            except OSError:
                self._drop(client)

    def _drop(self, client: socket.socket) -> None:
        with self.lock:
            if client in self.clients:
                self.clients.remove(client)
        with _Suppress(OSError):
            client.close()

    def _copy_output(self) -> None:
        import selectors  # noqa: PLC0415

        selector = selectors.DefaultSelector()
        for channel, fd in self.outputs:
            selector.register(fd, selectors.EVENT_READ, channel)
        open_fds = len(self.outputs)
        while open_fds:
            for key, _ in selector.select():
                try:
                    data = os.read(key.fd, 32 * 1024)
                except OSError:  # EIO: every holder of the terminal's other end closed it
                    data = b""
                if not data:
                    selector.unregister(key.fd)
                    open_fds -= 1
                    continue
                _write_all(self.log_fd, data)
                self._broadcast(key.data, data)
        self.done.set()

    def _client_input(self, client: socket.socket) -> None:
        try:
            while (frame := _read_frame(client)) is not None:
                channel, data = frame
                if channel == CH_STDIN:
                    self._write_stdin(data)
                elif channel == CH_CLOSE and data[:1] == bytes([CH_STDIN]):
                    self._client_stdin_done()
                elif channel == CH_RESIZE:
                    self._resize(data)
        except OSError:
            pass
        finally:
            self._drop(client)
            self._client_stdin_done()

    def _write_stdin(self, data: bytes) -> None:
        with self.stdin_lock:
            self.stdin_used = True
            if self.stdin is not None:
                with _Suppress(OSError):
                    _write_all(self.stdin, data)

    def _client_stdin_done(self) -> None:
        """stdinOnce: the container's stdin ends with the first session that used it (a
        terminal has no end of input but the ^D its user types: it stays)."""
        with self.stdin_lock:
            once = self.stdin_once and self.stdin_used and self.master is None
            if once and self.stdin is not None:
                with _Suppress(OSError):
                    os.close(self.stdin)
                self.stdin = None

    def _resize(self, data: bytes) -> None:
        import fcntl  # noqa: PLC0415
        import json  # noqa: PLC0415
        import struct  # noqa: PLC0415
        import termios  # noqa: PLC0415

        if self.master is None or len(data) > 256:
            return
        try:
            size = json.loads(data)
        except ValueError:
            return
        if not isinstance(size, dict):
            return
        width, height = size.get("Width"), size.get("Height")
        if not all(isinstance(v, int) and 0 < v < 65536 for v in (width, height)):
            return
        with _Suppress(OSError):
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exactly(client: socket.socket, n: int) -> bytes | None:
    chunks = b""
    while len(chunks) < n:
        try:
            chunk = client.recv(n - len(chunks))
        except TimeoutError:
            continue  # an idle client: input comes when its user types
        if not chunk:
            return None
        chunks += chunk
    return chunks


def _read_frame(client: socket.socket) -> tuple[int, bytes] | None:
    header = _read_exactly(client, 5)
    if header is None:
        return None
    length = int.from_bytes(header[1:], "big")
    if length > FRAME_LIMIT:
        return None
    data = _read_exactly(client, length) if length else b""
    return None if data is None else (header[0], data)


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args is None:
        print(__doc__, file=sys.stderr)
        return 2
    bundle = args["bundle"]
    runc_log = os.path.join(bundle, "runc.log")
    pid_file = os.path.join(bundle, "init.pid")
    read_end, write_end = os.pipe()
    if os.fork():
        os.close(write_end)
        return _await_verdict(read_end)
    # child: detach from the caller entirely
    os.close(read_end)
    for fd in _FORKED_FROM_ZYGOTE:  # the zygote's request socket: its caller waits for EOF
        os.close(fd)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    reaper = _set_subreaper()
    log_fd = os.open(args["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    # `--start yes`: `runc run --detach`, created and started by one runc process (the
    # runtime then runs no `runc start`: a Go process less per container).
    verb = ["run", "--detach"] if args.get("start") == "yes" else ["create"]
    create = [
        args["runc"], "--root", args["root"], "--log", runc_log, "--log-format", "json",
        *verb, "--bundle", bundle, "--pid-file", pid_file, args["id"],
    ]  # fmt: skip
    stdio = args.get("stdio", "")
    io: StdioHolder | None = None
    try:
        if stdio == "tty":
            rc, master = _create_with_console(create, args["console"], devnull, log_fd)
            if master is not None:
                io = StdioHolder(master=master, outputs=[(1, master)], log_fd=log_fd)
        elif stdio == "pipe":
            rc, io = _create_with_pipes(create, log_fd)
        else:
            rc = _spawn(create, stdin=devnull, stdout=log_fd, stderr=log_fd)
    except OSError as exc:
        _report(write_end, f"error cannot run {args['runc']}: {exc.strerror or exc}")
        os._exit(0)
    if io is None:
        os.close(log_fd)
    if rc != 0:
        _report(write_end, f"error {_runc_error(runc_log)}")
        os._exit(0)
    if stdio and io is None:
        _report(write_end, "error runc did not hand over the container's terminal")
        os._exit(0)
    with open(pid_file) as fh:
        pid = int(fh.read().strip())
    if io is not None:
        # Listening before the verdict: the container can be attached to once it starts.
        io.serve(args["attach"], stdin_once=args.get("stdin-once") == "yes")
    # Our own pid goes with the verdict: the runtime tells "the exit is being recorded" (the
    # shim still lives) from "no exit will ever be recorded" (the shim is gone) by it.
    shim = os.getpid()
    _report(
        write_end,
        f'ok {{"ok": true, "pid": {pid}, "shim": {shim}, "subreaper": {str(reaper).lower()}}}',
    )
    code, sig = _wait_for(pid, reaper=reaper)
    if io is not None:
        io.finish(OUTPUT_DRAIN_SECONDS)
    import datetime  # noqa: PLC0415 - after the container ended

    _write_atomic(
        args["exit"],
        {
            "exitCode": code,
            "signal": sig,
            "oomKilled": sig == "SIGKILL" and oom_kills(bundle) > 0,
            "pid": pid,
            "finishedAt": datetime.datetime.now(datetime.UTC).isoformat(),
        },
    )
    os._exit(0)


# --- the zygote: shims forked from one warm process -----------------------------------------

ZYGOTE_IDLE_SECONDS = 60.0
"""A zygote with no request for this long exits (it costs a process' memory; the next
container start makes a new one). An upgraded runtime's zygote has another socket name
(:func:`berth.runtime.shimzygote.socket_path`), so an old one ends this way too."""
_ZYGOTE_TICK_SECONDS = 5.0
_REQUEST_LIMIT = 1 << 16
_FORKED_FROM_ZYGOTE: list[int] = []


def zygote(path: str) -> int:
    """Serve shim starts on the unix socket ``path``: each request (the shim's arguments,
    NUL-separated, with stdin/stdout/stderr passed as descriptors) is a fork of this warm
    process running :func:`main`, which answers its exit code once the verdict is out. A
    shim costs a fork instead of an interpreter start and ``import ctypes`` (~10-15 ms CPU).

    Daemonizes: returns (exit 0) once the socket listens. Only one zygote serves a path: it
    holds ``path.lock`` (flock) for its life; a second one exits at once."""
    import contextlib  # noqa: PLC0415 - zygote mode only
    import fcntl  # noqa: PLC0415
    import socket  # noqa: PLC0415

    ready_r, ready_w = os.pipe()
    if os.fork():
        os.close(ready_w)
        with os.fdopen(ready_r, "rb") as ready:
            return 0 if ready.read() == b"ok" else 1
    os.close(ready_r)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # another zygote serves this path
        os.write(ready_w, b"ok")
        os._exit(0)
    # Its pid in the lock file: forked shims keep the zygote's command line, so ``ps``
    # cannot tell the zygote from the shims it made.
    os.ftruncate(lock, 0)
    os.write(lock, str(os.getpid()).encode())
    _warm_up()
    if os.path.exists(path):
        os.unlink(path)  # a dead zygote's (we hold the lock)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server.bind(path)
    os.chmod(path, 0o600)
    server.listen(128)
    server.settimeout(_ZYGOTE_TICK_SECONDS)
    os.write(ready_w, b"ok")
    os.close(ready_w)
    import time  # noqa: PLC0415

    last = time.monotonic()
    while True:
        _reap()
        try:
            conn, _ = server.accept()
        except TimeoutError:
            if time.monotonic() - last > ZYGOTE_IDLE_SECONDS:
                os.unlink(path)  # before the lock goes: no request reaches a closing zygote
                os._exit(0)
            continue
        except OSError:
            continue
        last = time.monotonic()
        # a failure fails this request (its caller sees no answer), not the zygote
        with conn, contextlib.suppress(OSError):
            _serve_one(conn, (server.fileno(), lock))


def _reap() -> None:
    """Collect the zygote's children that answered their request (each lives ~ms)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _serve_one(conn: socket.socket, zygote_fds: tuple[int, ...]) -> None:
    import socket  # noqa: PLC0415 - imported already (zygote)

    conn.settimeout(5.0)
    try:
        raw, fds, _, _ = socket.recv_fds(conn, _REQUEST_LIMIT, 3)
    except OSError:
        return
    try:
        if len(fds) != 3 or not raw:  # a liveness probe (no request), or garbage
            return
        argv = raw.decode(errors="replace").split("\0")
        if os.fork() == 0:
            for fd in zygote_fds:  # the listening socket and the lock stay the zygote's
                os.close(fd)
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                os.close(fd)
            _FORKED_FROM_ZYGOTE.append(conn.fileno())
            try:
                rc = main(argv)
            except BaseException as exc:
                print(f"shim: {exc}", file=sys.stderr)
                rc = 1
            sys.stdout.flush()
            sys.stderr.flush()
            conn.send(str(rc).encode())
            os._exit(0)
    finally:
        for fd in fds:
            os.close(fd)


def _warm_up() -> None:
    """Import once what every forked shim needs: ctypes before ``runc create``, and what it
    imports once its container ended (the exit record), which a spawned shim pays then."""
    import ctypes  # noqa: PLC0415 - zygote mode only
    import datetime  # noqa: PLC0415, F401
    import json  # noqa: PLC0415, F401
    import signal  # noqa: PLC0415, F401

    ctypes.CDLL(None, use_errno=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--zygote"] and len(sys.argv) == 3:
        sys.exit(zygote(sys.argv[2]))
    sys.exit(main())
