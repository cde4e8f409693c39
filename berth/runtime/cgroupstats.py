"""CPU and memory usage of a container's cgroup and of the whole node, as the kubelet
(through cAdvisor) reports them.

* CPU: cumulative CPU time in nanoseconds. cgroup v2 ``cpu.stat`` ``usage_usec`` (present
  whether or not the cpu controller is enabled); cgroup v1 ``cpuacct.usage`` (ns).
* Memory: the *working set*, ``usage - inactive_file`` clamped at 0 (what ``kubectl top``
  shows and the HPA scales on): v2 ``memory.current`` minus ``memory.stat`` ``inactive_file``;
  v1 ``memory.usage_in_bytes`` minus ``memory.stat`` ``total_inactive_file``. A nested host
  often has no memory controller delegated (lab hosts on pure cgroup2): then the resident
  set of the cgroup's processes stands in (``/proc/<pid>/statm``), which is close to the
  working set for the anonymous memory that dominates small containers.
* The node: the root cgroup's figures when it has them, else ``/proc/stat`` (CPU time of
  every non-idle state) and ``/proc/meminfo`` (``MemTotal - MemAvailable``).

Every parser bounds what it reads (these are small kernel files) and never raises on a
malformed line: a figure that cannot be read is ``None``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MAX_READ = 64 * 1024
MAX_PROCS = 4096  # processes summed for the RSS fallback
_USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True, slots=True)
class Usage:
    """One sample: cumulative CPU nanoseconds and working-set bytes (``None``: unknown)."""

    cpu_ns: int | None
    memory_bytes: int | None


def _read(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            return f.read(MAX_READ).decode("ascii", errors="replace")
    except OSError:
        return None


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (``cpu.stat``, ``memory.stat``) to a dict; bad lines are skipped."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def parse_int(text: str | None) -> int | None:
    """A file holding one integer (``memory.current``); ``max`` or junk is ``None``."""
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def working_set(usage: int | None, stat: dict[str, int], inactive_key: str) -> int | None:
    """``usage - inactive_file``, never below 0 (cAdvisor's rule)."""
    if usage is None:
        return None
    return max(0, usage - stat.get(inactive_key, 0))


def parse_proc_stat_cpu_ns(text: str) -> int | None:
    """CPU time of every state but idle and iowait from ``/proc/stat``'s ``cpu`` line, in ns
    (guest time is already inside user/nice, so it is not added again)."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            try:
                ticks = [int(x) for x in parts[1:9]]
            except ValueError:
                return None
            if len(ticks) < 4:
                return None
            busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
            return busy * 1_000_000_000 // _USER_HZ
    return None


def parse_meminfo_used(text: str) -> int | None:
    """``MemTotal - MemAvailable`` (bytes) from ``/proc/meminfo``."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            try:
                fields[key] = int(parts[0]) * 1024
            except ValueError:
                continue
    if "MemTotal" not in fields or "MemAvailable" not in fields:
        return None
    return max(0, fields["MemTotal"] - fields["MemAvailable"])


class CgroupReader:
    """Reads usage under one cgroup mount (``/sys/fs/cgroup`` on a node)."""

    def __init__(self, root: Path = Path("/sys/fs/cgroup"), proc: Path = Path("/proc")) -> None:
        self.root = root
        self.proc = proc

    @property
    def unified(self) -> bool:
        return (self.root / "cgroup.controllers").is_file()

    def _v1_dir(self, controllers: tuple[str, ...], rel: str) -> Path | None:
        for name in controllers:
            d = self.root / name / rel if rel else self.root / name
            if d.is_dir():
                return d
        return None

    def usage(self, rel: str) -> Usage:
        """The usage of the cgroup at ``rel`` (e.g. ``berth/<pod uid>/<container id>``)."""
        if self.unified:
            d = self.root / rel if rel else self.root
            cpu_text = _read(d / "cpu.stat")
            cpu_usec = parse_flat_keyed(cpu_text).get("usage_usec") if cpu_text else None
            current = parse_int(_read(d / "memory.current"))
            stat_text = _read(d / "memory.stat") if current is not None else None
            memory = working_set(current, parse_flat_keyed(stat_text or ""), "inactive_file")
            if memory is None:
                memory = self._rss(d)
            return Usage(cpu_usec * 1000 if cpu_usec is not None else None, memory)
        cpu_dir = self._v1_dir(("cpuacct", "cpu,cpuacct", "cpuacct,cpu", "cpu"), rel)
        cpu_ns = parse_int(_read(cpu_dir / "cpuacct.usage")) if cpu_dir else None
        mem_dir = self._v1_dir(("memory",), rel)
        memory = None
        if mem_dir is not None:
            stat = parse_flat_keyed(_read(mem_dir / "memory.stat") or "")
            memory = working_set(
                parse_int(_read(mem_dir / "memory.usage_in_bytes")), stat, "total_inactive_file"
            )
        if memory is None and rel:
            any_dir = cpu_dir or self._v1_dir(("pids", "systemd", "name=systemd"), rel)
            memory = self._rss(any_dir) if any_dir else None
        return Usage(cpu_ns, memory)

    def _rss(self, cgroup_dir: Path) -> int | None:
        """Resident bytes of the processes in ``cgroup_dir`` (no memory controller)."""
        procs = _read(cgroup_dir / "cgroup.procs")
        if procs is None:
            return None
        total = 0
        for line in procs.split()[:MAX_PROCS]:
            if not line.isdigit():
                continue
            statm = _read(self.proc / line / "statm")
            parts = statm.split() if statm else []
            if len(parts) > 1 and parts[1].isdigit():
                total += int(parts[1]) * _PAGE
        return total

    def node_usage(self) -> Usage:
        """The whole node: its root cgroup's figures where the kernel keeps them there, else
        ``/proc`` (a nested host's root cgroup often has no memory accounting)."""
        memory: int | None = None
        if self.unified:
            cpu_text = _read(self.root / "cpu.stat")
            cpu_usec = parse_flat_keyed(cpu_text).get("usage_usec") if cpu_text else None
            cpu = cpu_usec * 1000 if cpu_usec is not None else None
            current = parse_int(_read(self.root / "memory.current"))
            if current is not None:
                stat = parse_flat_keyed(_read(self.root / "memory.stat") or "")
                memory = working_set(current, stat, "inactive_file")
        else:
            d = self._v1_dir(("cpuacct", "cpu,cpuacct", "cpuacct,cpu", "cpu"), "")
            cpu = parse_int(_read(d / "cpuacct.usage")) if d else None
        if cpu is None:
            cpu = parse_proc_stat_cpu_ns(_read(self.proc / "stat") or "")
        if memory is None:
            memory = parse_meminfo_used(_read(self.proc / "meminfo") or "")
        return Usage(cpu, memory)
