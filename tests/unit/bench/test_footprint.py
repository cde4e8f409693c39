"""The /proc and ``-X importtime`` parsing bench/footprint.py rests on."""

from __future__ import annotations

import os

from bench.footprint import classify, cpu_percent, importtime_us, parse_kib, parse_stat

# A real /proc/PID/stat line, with a command name holding a space and a closing parenthesis.
STAT = (
    "14333 (a) b) S 14283 14283 2789 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 1 0 4500981 "
    "3133440 387 18446744073709551615 94570837663744 94570837683625 0 0 0 0 0 0 0 0 0 17 0"
)


def test_stat_fields_are_counted_from_the_last_parenthesis() -> None:
    stat = parse_stat(STAT)
    assert (stat.ppid, stat.ticks, stat.start) == (14283, 325, 4500981)


def test_stat_of_this_process_parses() -> None:
    with open(f"/proc/{os.getpid()}/stat") as f:
        stat = parse_stat(f.read())
    assert stat.ppid == os.getppid()
    assert stat.start > 0


def test_status_and_smaps_rollup_values_are_bytes() -> None:
    status = "Name:\tpython3\nVmHWM:\t  52000 kB\nVmRSS:\t   48128 kB\nRssAnon:\t  30000 kB\n"
    rollup = "55d0-7ffc ---p 00000000 00:00 0  [rollup]\nRss:  48128 kB\nPss:  21504 kB\n"
    assert parse_kib(status, "VmRSS") == 48128 * 1024
    assert parse_kib(rollup, "Pss") == 21504 * 1024
    assert parse_kib("Name:\tkthreadd\n", "VmRSS") is None  # kernel threads have no RSS


def test_components_are_told_apart_by_command_line() -> None:
    assert classify(["/usr/bin/python3", "-m", "berth.apiserver", "--config", "c"]) == "apiserver"
    assert classify(["/usr/bin/python3", "-m", "berth.controllers"]) == "controller-manager"
    assert classify(["/usr/bin/python3", "-m", "berth.agent", "--config", "c"]) == "agent"
    shim = ["python3", "-S", "/opt/berth/site/berth/runtime/shim.py", "--runc", "runc"]
    assert classify(shim) == "shim"
    assert classify(["/usr/sbin/haproxy", "-W", "-f", "/etc/haproxy.cfg"]) == "haproxy"
    assert classify(["/usr/bin/etcd"]) == "etcd"
    # a pod's own process or the host's: the caller decides by ancestry
    assert classify(["/bin/sleep", "1000000"]) is None
    assert classify(["/usr/bin/python3", "-m", "http.server"]) is None
    assert classify([]) is None


def test_importtime_total_is_the_sum_of_self_times() -> None:
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       648 |        648 |   _io\n"
        "import time:       165 |        165 |       _json\n"
        "import time:       328 |        493 |     json.scanner\n"
        "import time:       218 |        711 | json\n"
        "Traceback (most recent call last):\n"
    )
    assert importtime_us(stderr) == 648 + 165 + 328 + 218


def test_cpu_percent_of_one_core() -> None:
    assert cpu_percent(50, 10.0, 100) == 5.0
    assert cpu_percent(7, 0.0, 100) == 0.0
