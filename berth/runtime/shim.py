"""A tiny per-container supervisor so exit codes survive the agent (like containerd-shim).

``python3 -S .../berth/runtime/shim.py --runc runc --root R --bundle B --id ID --log L --exit E``

(Run as a file, not with ``-m``: that skips importing the ``berth`` package, and the shim needs
nothing but the standard library — every millisecond here is pod startup latency.)

1. forks; the parent waits for the child's verdict on a pipe and exits 0 (created) or 1 (with
   runc's error on stderr), so the caller sees ``runc create`` fail synchronously;
2. the child starts a new session, becomes a *child subreaper*, and runs ``runc create`` with
   the container's stdout/stderr pointing at the log file (opened ``O_APPEND`` so the runtime
   can rotate it by copy + truncate);
3. when ``runc create`` returns, the container's init process is re-parented to the shim,
   which waits for it and writes ``{"exitCode", "signal", "finishedAt"}`` atomically to the
   exit file (128 + signal number for a signalled process, as Kubernetes reports it).

The shim outlives the agent: an agent restart finds running containers via ``runc`` and their
exit codes in the exit files. Standard library only.
"""

from __future__ import annotations

import ctypes
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def _write_atomic(path: Path, doc: dict[str, object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def _report(fd: int, verdict: dict[str, object]) -> None:
    """Send the verdict to the waiting parent and close the pipe (it then exits)."""
    with os.fdopen(fd, "w") as pipe:
        pipe.write(json.dumps(verdict))


def _runc_error(runc_log: Path) -> str:
    """The last error message runc logged (its JSON log), else its raw tail."""
    try:
        lines = runc_log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "runc failed without logging anything"
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") in ("error", "fatal"):
            return str(entry.get("msg", line))
    return "\n".join(lines[-5:]) or "runc failed without logging anything"


def oom_kills(bundle: Path, cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """The container cgroup's OOM-kill count (read before ``runc delete`` removes it)."""
    try:
        config = json.loads((bundle / "config.json").read_text())
        relative = str(config["linux"]["cgroupsPath"]).lstrip("/")
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    candidates = (
        (cgroup_root / relative / "memory.events", "oom_kill"),  # cgroup v2
        (cgroup_root / "memory" / relative / "memory.oom_control", "oom_kill"),  # v1
    )
    for path, key in candidates:
        try:
            for line in path.read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == key and value.strip().isdigit():
                    return int(value)
        except OSError:
            continue
    return 0


def _set_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


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
                    sig = os.WTERMSIG(status)
                    return 128 + sig, signal.Signals(sig).name
                return os.WEXITSTATUS(status), None
    while Path(f"/proc/{pid}").exists():  # not re-parented to us: watch it disappear
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


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args is None:
        print(__doc__, file=sys.stderr)
        return 2
    bundle = Path(args["bundle"])
    runc_log = bundle / "runc.log"
    pid_file = bundle / "init.pid"
    read_end, write_end = os.pipe()
    if os.fork():
        os.close(write_end)
        with os.fdopen(read_end, "rb") as verdict_pipe:
            raw = verdict_pipe.read()
        try:
            verdict = json.loads(raw)
        except ValueError:
            verdict = {"ok": False, "error": "shim died before reporting"}
        if not verdict.get("ok"):
            print(verdict.get("error", "unknown error"), file=sys.stderr)
            return 1
        print(json.dumps(verdict))
        return 0
    # child: detach from the caller entirely
    os.close(read_end)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    reaper = _set_subreaper()
    log_fd = os.open(args["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    rc = subprocess.call(
        [
            args["runc"],
            "--root",
            args["root"],
            "--log",
            str(runc_log),
            "--log-format",
            "json",
            "create",
            "--bundle",
            str(bundle),
            "--pid-file",
            str(pid_file),
            args["id"],
        ],
        stdin=devnull,
        stdout=log_fd,
        stderr=log_fd,
    )
    os.close(log_fd)
    if rc != 0:
        _report(write_end, {"ok": False, "error": _runc_error(runc_log)})
        os._exit(0)
    pid = int(pid_file.read_text().strip())
    _report(write_end, {"ok": True, "pid": pid, "subreaper": reaper})
    code, sig = _wait_for(pid, reaper=reaper)
    _write_atomic(
        Path(args["exit"]),
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
