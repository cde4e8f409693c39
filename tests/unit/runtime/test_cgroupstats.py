"""cgroup v2 / v1 usage readers, on fake cgroup trees: CPU as cumulative ns, memory as the
working set (usage minus inactive_file, as cAdvisor), and the fallbacks of nested hosts."""

from __future__ import annotations

import os
from pathlib import Path

from berth.runtime.cgroupstats import (
    CgroupReader,
    parse_flat_keyed,
    parse_int,
    parse_meminfo_used,
    parse_proc_stat_cpu_ns,
    working_set,
)

REL = "berth/pod-uid/pod-uid_app_0"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_parsers_take_what_they_can_and_skip_junk() -> None:
    assert parse_flat_keyed("usage_usec 1500\nbad line here\nuser_usec x\nsystem_usec 7\n") == {
        "usage_usec": 1500,
        "system_usec": 7,
    }
    assert parse_int("12345\n") == 12345
    assert parse_int("max\n") is None
    assert parse_int(None) is None
    assert working_set(1000, {"inactive_file": 300}, "inactive_file") == 700
    assert working_set(100, {"inactive_file": 300}, "inactive_file") == 0  # clamped
    assert working_set(None, {}, "inactive_file") is None


def test_proc_fallbacks() -> None:
    # user nice system idle iowait irq softirq steal: idle and iowait are not busy
    stat = "cpu  100 20 30 5000 40 1 2 3 0 0\ncpu0 1 2 3 4\n"
    assert parse_proc_stat_cpu_ns(stat) is not None
    busy_ticks = 100 + 20 + 30 + 1 + 2 + 3
    assert parse_proc_stat_cpu_ns(stat) == busy_ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    assert parse_proc_stat_cpu_ns("intr 1 2\n") is None
    meminfo = "MemTotal:       2048 kB\nMemFree:  100 kB\nMemAvailable:   1024 kB\n"
    assert parse_meminfo_used(meminfo) == 1024 * 1024
    assert parse_meminfo_used("MemTotal: 5 kB\n") is None


def test_cgroup_v2_container_usage(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    _write(root / "cgroup.controllers", "cpu memory pids\n")
    d = root / REL
    _write(d / "cpu.stat", "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    _write(d / "memory.current", "10485760\n")
    _write(d / "memory.stat", "anon 6291456\nfile 4194304\ninactive_file 3145728\n")
    u = CgroupReader(root, tmp_path / "proc").usage(REL)
    assert u.cpu_ns == 2_500_000_000
    assert u.memory_bytes == 10485760 - 3145728


def test_cgroup_v2_without_memory_controller_sums_resident_sets(tmp_path: Path) -> None:
    root, proc = tmp_path / "cg", tmp_path / "proc"
    _write(root / "cgroup.controllers", "")  # a nested host: nothing delegated
    d = root / REL
    _write(d / "cpu.stat", "usage_usec 10\n")  # core stats exist without the controller
    _write(d / "cgroup.procs", "41\n42\n")
    _write(proc / "41" / "statm", "1000 100 50 1 0 80 0\n")
    _write(proc / "42" / "statm", "1000 28 50 1 0 80 0\n")
    u = CgroupReader(root, proc).usage(REL)
    assert u.cpu_ns == 10_000
    assert u.memory_bytes == 128 * os.sysconf("SC_PAGE_SIZE")


def test_cgroup_v1_container_usage(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    _write(root / "cpu,cpuacct" / REL / "cpuacct.usage", "123456789\n")
    _write(root / "memory" / REL / "memory.usage_in_bytes", "8000\n")
    _write(root / "memory" / REL / "memory.stat", "cache 10\ntotal_inactive_file 3000\n")
    u = CgroupReader(root, tmp_path / "proc").usage(REL)
    assert u.cpu_ns == 123456789
    assert u.memory_bytes == 5000


def test_missing_cgroup_reads_as_unknown(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    _write(root / "cgroup.controllers", "cpu memory\n")
    u = CgroupReader(root, tmp_path / "proc").usage("berth/gone/gone_app_0")
    assert (u.cpu_ns, u.memory_bytes) == (None, None)


def test_node_usage_prefers_the_root_cgroup_then_proc(tmp_path: Path) -> None:
    root, proc = tmp_path / "cg", tmp_path / "proc"
    _write(root / "cgroup.controllers", "cpu memory\n")
    _write(root / "cpu.stat", "usage_usec 7000000\n")
    _write(proc / "meminfo", "MemTotal: 4096 kB\nMemAvailable: 1024 kB\n")
    _write(proc / "stat", "cpu 1 1 1 1 1 1 1 1\n")
    u = CgroupReader(root, proc).node_usage()
    assert u.cpu_ns == 7_000_000_000
    assert u.memory_bytes == 3 * 1024 * 1024  # no memory.current at the root: meminfo
    _write(root / "memory.current", "9000\n")
    _write(root / "memory.stat", "inactive_file 1000\n")
    assert CgroupReader(root, proc).node_usage().memory_bytes == 8000
    (root / "cpu.stat").unlink()
    assert CgroupReader(root, proc).node_usage().cpu_ns is not None  # /proc/stat
