"""Booting hosts with systemd-nspawn, and watching their processes from outside.

A host is one ``systemd-nspawn --boot`` process, started detached (its parent exits at once, so
it outlives ``berth lab up`` and never lingers as our zombie). Its launcher first moves itself
into the host's own cgroups, then execs nspawn with the flags this machine needs.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from provisioner.errors import LabError

NSPAWN_ENV = {
    # pure cgroup2 inside the host: no "tainted: cgroupsv1", and what systemd >= 256 requires
    "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1",
    # the host may change its own net.* sysctls (ip_forward for pod routing) in its own netns
    "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network",
}
# The launcher: join every per-host cgroup, then become systemd-nspawn.
_JOIN_AND_EXEC = (
    'IFS=:; for f in $BERTH_LAB_CGROUP_PROCS; do echo $$ > "$f" || exit 97; done; '
    'unset IFS; exec "$@"'
)
# Detach: start the launcher in its own session in the background and report its PID.
_DETACH = (
    "launcher=$1; log=$2; shift 2; "
    'setsid sh -c "$launcher" berth-lab-host "$@" </dev/null >>"$log" 2>&1 & echo $!'
)


@dataclass(frozen=True)
class HostProcess:
    """A running nspawn process, identified by PID *and* start time (PIDs get reused)."""

    pid: int
    start: int


def nspawn_argv(
    *, root: Path, machine: str, hostname: str, netns: str, disk: tuple[Path, str] | None = None
) -> list[str]:
    """The systemd-nspawn command line of one host; ``disk``: a directory of the machine bound
    at a path of the host (see :mod:`provisioner.lab.overlay`)."""
    return [
        "systemd-nspawn",
        "--quiet",
        f"--directory={root}",
        "--boot",
        f"--machine={machine}",
        f"--hostname={hostname}",
        "--register=no",  # no machined on this machine
        "--keep-unit",  # no systemd on the machine to create a scope
        f"--network-namespace-path=/run/netns/{netns}",
        "--console=pipe",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        # Nested runc (the node agent's workloads) needs every capability, the keyring and bpf.
        "--capability=all",
        "--system-call-filter=@keyring bpf",
        *([f"--bind={disk[0]}:{disk[1]}"] if disk is not None else []),
    ]


def launch(
    argv: list[str], *, cgroup_procs: list[Path], log: Path, unified_cgroups: bool = True
) -> HostProcess:
    """Start ``argv`` detached inside the given cgroups; output goes to ``log``.

    ``unified_cgroups=False`` boots the host on the machine's v1 hierarchies instead: the host's
    systemd is then "tainted: cgroupsv1", but a root process in it may remount the controllers
    read-write and have runc enforce memory/pids/CPU limits (which pure cgroup2 hosts cannot,
    because this machine binds every controller to v1).
    """
    env = {
        **os.environ,
        **NSPAWN_ENV,
        "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1" if unified_cgroups else "0",
        "BERTH_LAB_CGROUP_PROCS": ":".join(map(str, cgroup_procs)),
    }
    launcher = subprocess.run(
        ["sh", "-c", _DETACH, "berth-lab-launch", _JOIN_AND_EXEC, str(log), *argv],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if launcher.returncode != 0 or not launcher.stdout.strip().isdigit():
        raise LabError(f"could not start systemd-nspawn: {launcher.stderr.strip()}")
    pid = int(launcher.stdout.strip())
    start = start_time(pid)
    if start is None:
        raise LabError(f"systemd-nspawn exited at once; see {log}")
    return HostProcess(pid, start)


def start_time(pid: int) -> int | None:
    """A live process' start time in clock ticks, or None if it is gone (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_running(proc: HostProcess | None) -> bool:
    """Whether ``proc`` still runs (the same process, not a reused PID)."""
    return proc is not None and start_time(proc.pid) == proc.start


def signal_process(proc: HostProcess, sig: signal.Signals) -> None:
    """Send ``sig`` if ``proc`` still runs."""
    if is_running(proc):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)


def container_init(proc: HostProcess) -> int | None:
    """The PID (on the machine) of the host's systemd, i.e. nspawn's child."""
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def wait_exit(proc: HostProcess, timeout: float) -> bool:
    """Wait (without polling) until ``proc`` exits; True if it did within ``timeout`` seconds."""
    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return True
    try:
        if not is_running(proc):  # the PID was reused before we opened it
            return True
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    finally:
        os.close(fd)


def sshd_answers(address: str, *, timeout: float = 0.5) -> bool:
    """Whether an SSH server on ``address``:22 sends its banner."""
    try:
        with socket.create_connection((address, 22), timeout=timeout) as conn:
            return conn.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def wait_sshd(
    targets: dict[str, tuple[str, HostProcess]],
    *,
    timeout: float,
    banner_timeout: float = 0.5,
    interval: float = 0.05,
) -> tuple[list[str], list[str]]:
    """Wait until every host's sshd answers; return (not ready in time, whose process exited).

    A slow host (an emulated VM) needs a longer ``banner_timeout`` and ``interval``: each probe
    costs its sshd a forked child, and probes abandoned before the banner pile up until sshd's
    MaxStartups throttling drops connections (seen under TCG)."""
    pending = dict(targets)
    dead: list[str] = []
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for name, (address, proc) in list(pending.items()):
            if sshd_answers(address, timeout=banner_timeout):
                del pending[name]
            elif not is_running(proc):
                dead.append(name)
                del pending[name]
        if pending:
            time.sleep(interval)
    return sorted(pending), dead


def journal_tail(host_root: Path, console_log: Path, *, lines: int = 15) -> str:
    """The last lines of a host's journal (read from its overlay) and of its console."""
    parts = []
    journal = host_root / "var/log/journal"
    if journal.is_dir():
        proc = subprocess.run(
            ["journalctl", f"--directory={journal}", "--no-pager", "-q", "-n", str(lines)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.stdout.strip():
            parts.append("journal:\n" + proc.stdout.rstrip())
    if console_log.is_file():
        tail = console_log.read_text(errors="replace").splitlines()[-lines:]
        parts.append("console:\n" + "\n".join(tail))
    return "\n".join(parts) if parts else "(no journal or console output)"
