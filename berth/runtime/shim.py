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
"""

from __future__ import annotations

import os
import sys

PR_SET_CHILD_SUBREAPER = 36


def _write_atomic(path: str, doc: dict[str, object]) -> None:
    import json  # noqa: PLC0415 - after the container started (see the module docstring)

    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    with open(tmp, "w") as out:
        out.write(json.dumps(doc))
    os.replace(tmp, path)


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


def _spawn(argv: list[str], *, stdin: int, output: int) -> int:
    """Run ``argv`` (PATH lookup) with stdin and stdout+stderr redirected; its exit code.
    posix_spawn (vfork) instead of :mod:`subprocess`, whose import costs milliseconds here;
    every other descriptor the shim holds is close-on-exec and stays behind."""
    pid = os.posix_spawnp(
        argv[0],
        argv,
        os.environ,
        file_actions=[
            (os.POSIX_SPAWN_DUP2, stdin, 0),
            (os.POSIX_SPAWN_DUP2, output, 1),
            (os.POSIX_SPAWN_DUP2, output, 2),
        ],
    )
    _, status = os.waitpid(pid, 0)
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


def _parse(argv: list[str]) -> dict[str, str] | None:
    """``--name value`` pairs for every option (argparse costs start-up time here)."""
    if len(argv) % 2:
        return None
    found = {"runc": "runc"}
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        if not flag.startswith("--") or flag[2:] not in _OPTIONS:
            return None
        found[flag[2:]] = value
    return found if all(o in found for o in _OPTIONS) else None


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
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    reaper = _set_subreaper()
    log_fd = os.open(args["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    create = [
        args["runc"], "--root", args["root"], "--log", runc_log, "--log-format", "json",
        "create", "--bundle", bundle, "--pid-file", pid_file, args["id"],
    ]  # fmt: skip
    try:
        rc = _spawn(create, stdin=devnull, output=log_fd)
    except OSError as exc:
        _report(write_end, f"error cannot run {args['runc']}: {exc.strerror or exc}")
        os._exit(0)
    os.close(log_fd)
    if rc != 0:
        _report(write_end, f"error {_runc_error(runc_log)}")
        os._exit(0)
    with open(pid_file) as fh:
        pid = int(fh.read().strip())
    # Our own pid goes with the verdict: the runtime tells "the exit is being recorded" (the
    # shim still lives) from "no exit will ever be recorded" (the shim is gone) by it.
    shim = os.getpid()
    _report(
        write_end,
        f'ok {{"ok": true, "pid": {pid}, "shim": {shim}, "subreaper": {str(reaper).lower()}}}',
    )
    code, sig = _wait_for(pid, reaper=reaper)
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


if __name__ == "__main__":
    sys.exit(main())
