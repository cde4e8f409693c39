"""Benchmark: berth apply vs pyinfra doing the same operations on 3 and 20 lab hosts.

For each host count and each tool a fresh lab is booted, then the tool runs from the command
line: a cold apply (a user, two directories, two templated files, a page, a symlink, a systemd
unit enabled and started, and the ``tree`` .deb shipped and installed), then three no-op
re-applies (``BENCH_NOOPS``), of which the median is shown. Both tools use strict host-key
checking with the lab's pinned keys. berth's run also includes its preflight (OS, Python,
systemd, disk, clock skew, host-to-host reachability), which pyinfra does not do. Prints both
times and pyinfra/berth ratios, against the goals: no-op on 20 hosts <= 0.6 s and >= 8x
pyinfra (issue 18).

Run: ``.venv/bin/python bench/apply.py [3 20]`` (root; pyinfra from the ``bench`` extra).
``BENCH_BASELINE=/path/to/main-checkout`` also alternates that berth's no-ops with this tree's
on the same lab and prints both with their CPU (local and the lab hosts'), the figures a loaded
machine distorts least, and this tree once more with ``BERTH_SSH_PERSIST=0`` (no connection
multiplexer: every run connects afresh); the multiplexer's CPU counts as local.
``BENCH_LAB_PREFIX`` prefixes the labs' names.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provisioner.artifacts.debs import DebCache
from provisioner.connectors.mux import MuxUnsafe
from provisioner.connectors.mux import request as request_mux
from provisioner.lab import Lab, run

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# pyinfra lives in its own venv (``make bench`` creates it): it pins python-dateutil<3, which
# conflicts with the kubernetes client in the dev venv.
PYINFRA = Path(
    os.environ.get("BERTH_PYINFRA", str(ROOT / ".cache" / "pyinfra-venv" / "bin" / "pyinfra"))
)

BASELINE = os.environ.get("BENCH_BASELINE")
"""A checkout of another berth (e.g. a worktree of main): its no-op re-applies alternate with
this tree's on the same lab, and both are printed with their CPU (local and the lab hosts'),
which the machine's load distorts far less than wall time."""
LAB_PREFIX = os.environ.get("BENCH_LAB_PREFIX", "")
"""Prefix for the labs' names (``bb20``, ``bp20``), so two benches on one machine do not
replace each other's labs."""
NOOPS = int(os.environ.get("BENCH_NOOPS", "3"))
"""No-op re-applies per tool and size; the median is the figure."""
NOOP_GOAL = 0.6
"""Seconds for berth's no-op re-apply on 20 hosts (issue 18)."""
NOOP_RATIO_GOAL = 8.0
"""pyinfra's no-op time over berth's, at least (issue 18)."""

PYINFRA_DEPLOY = """
from pyinfra import host
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

d = host.data
server.user(name="user", user="berth-demo", home="/var/lib/berth-demo",
            shell="/usr/sbin/nologin", system=True, create_home=False)
files.directory(name="etc dir", path="/etc/berth-demo", mode="755")
files.directory(name="data dir", path="/var/lib/berth-demo", mode="750",
                user="berth-demo", group="berth-demo")
conf = files.template(name="config", src="demo.conf.j2", dest="/etc/berth-demo/demo.conf",
                      cluster=d.cluster, host_name=d.host_name, address=d.address, port=8099)
files.template(name="page", src="index.html.j2", dest="/var/lib/berth-demo/index.html",
               user="berth-demo", group="berth-demo", host_name=d.host_name)
files.link(name="link", path="/usr/local/bin/berth-demo-tree", target="/usr/bin/tree")
unit = files.template(name="unit", src="berth-demo.service.j2",
                      dest="/etc/systemd/system/berth-demo.service",
                      cluster=d.cluster, host_name=d.host_name, address=d.address, port=8099)
files.directory(name="artifacts", path="/var/lib/berth/artifacts", mode="755")
files.put(name="deb", src=d.deb, dest="/var/lib/berth/artifacts/tree.deb")
apt.deb(name="install tree", src="/var/lib/berth/artifacts/tree.deb")
systemd.daemon_reload(name="reload", _if=unit.did_change)
systemd.service(name="service", service="berth-demo.service", running=True, enabled=True)
systemd.service(name="restart", service="berth-demo.service", restarted=True,
                _if=any_changed(conf, unit))
"""


def _templates(directory: Path) -> None:
    source = ROOT / "provisioner" / "phases" / "demo_templates"
    for name in ("demo.conf.j2", "berth-demo.service.j2"):
        text = (source / name).read_text().replace("{{ host }}", "{{ host_name }}")
        (directory / name).write_text(text)
    (directory / "index.html.j2").write_text("<h1>{{ host_name }}</h1>\n")


def _pyinfra_inventory(lab: Lab, directory: Path, deb: Path) -> Path:
    hosts = [
        (
            h.address,
            {
                "ssh_user": "root",
                "ssh_key": str(lab.key_path),
                "ssh_known_hosts_file": str(lab.known_hosts_path),
                "ssh_strict_host_key_checking": "yes",
                "cluster": lab.name,
                "host_name": h.name,
                "address": h.address,
                "deb": str(deb),
            },
        )
        for h in lab.hosts
    ]
    path = directory / "inventory.py"
    path.write_text(f"hosts = {hosts!r}\n")
    return path


def _boot(name: str, count: int) -> Lab:
    """A fresh lab whose hosts finished booting (so neither tool races systemd's startup)."""
    lab = Lab(name)
    lab.up(count, replace=True)
    for host in lab.hosts:
        run(lab, host.name, "systemctl is-system-running --wait", timeout=120)
    return lab


def _timed(argv: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return elapsed, done.stdout


def _lab_cpu(lab: Lab) -> float:
    """CPU seconds the lab's hosts used so far (their cgroup; 0 where it cannot be read)."""
    try:
        v1 = Path(f"/sys/fs/cgroup/cpuacct/berth-lab/{lab.name}/cpuacct.usage")
        return int(v1.read_text()) / 1e9
    except (OSError, ValueError):
        pass
    for base in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        try:
            stat = Path(f"{base}/berth-lab/{lab.name}/cpu.stat").read_text()
            return int(stat.split()[1]) / 1e6  # usage_usec
        except (OSError, ValueError, IndexError):
            continue
    return 0.0


def _mux_cpu(env: dict[str, str]) -> float:
    """CPU seconds the connection multiplexer of ``env`` used so far (0 when none runs): it is
    not a child of this process, so its share of a run is counted here."""
    try:
        pid = int((Path(env["BERTH_MUX_DIR"]) / "pid").read_text())
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (KeyError, OSError, ValueError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _noop_cpu(argv: list[str], lab: Lab, *, cwd: Path, env: dict[str, str]) -> tuple[float, ...]:
    """(wall, local CPU, lab hosts' CPU, multiplexer CPU) of one berth no-op re-apply, checked
    to change nothing; local CPU includes the multiplexer's."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    hosts = _lab_cpu(lab)
    # only a run that uses the multiplexer is charged for it (it idles on during the others)
    uses_mux = env.get("BERTH_SSH_PERSIST") != "0" and env.get("PYTHONPATH") == str(ROOT)
    mux = _mux_cpu(env)
    wall, out = _timed(argv, cwd=cwd, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    mux = _mux_cpu(env) - mux if uses_mux else 0.0
    events = [json.loads(line) for line in out.splitlines()]
    changes = [e for e in events if e["kind"] == "change"]
    assert not changes, f"berth re-apply was not a no-op: {changes[:3]}"
    local = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime + mux
    return wall, local, _lab_cpu(lab) - hosts, mux


def _against_baseline(argv: list[str], lab: Lab, *, cwd: Path, env: dict[str, str]) -> None:
    """No-ops of BENCH_BASELINE's berth and this one, alternating on the same lab."""
    assert BASELINE is not None
    # this tree twice: keeping its connections between runs (the default) and not
    trees = {
        "baseline": dict(env, PYTHONPATH=BASELINE),
        "this tree": dict(env, PYTHONPATH=str(ROOT)),
        "no-persist": dict(env, PYTHONPATH=str(ROOT), BERTH_SSH_PERSIST="0"),
    }
    figures: dict[str, list[tuple[float, ...]]] = {name: [] for name in trees}
    for _ in range(NOOPS):
        for name, run_env in trees.items():
            figures[name].append(_noop_cpu(argv, lab, cwd=cwd, env=run_env))
    for name, runs in figures.items():
        wall, local, hosts, mux = (statistics.median(r[i] for r in runs) for i in range(4))
        print(f"{lab.name} {name:>10}: no-op wall {wall:.2f}s, CPU local {local:.2f}s (of which "
              f"multiplexer {mux:.2f}s) + hosts {hosts:.2f}s (median of {NOOPS}, load "
              f"{os.getloadavg()[0]:.1f})")  # fmt: skip


def bench_berth(count: int, work: Path) -> tuple[float, float]:
    lab = _boot(f"{LAB_PREFIX}bb{count}", count)
    try:
        # the connection multiplexer of these runs has a directory of its own (another run of
        # berth on this machine does not share it; its CPU is counted, see _mux_cpu)
        env = dict(os.environ, BERTH_CACHE_DIR=str(work / "cache"),
                   BERTH_STATE_DIR=str(work / "state"),
                   BERTH_MUX_DIR=str(work / "mux"))  # fmt: skip
        # berth runs as an installed copy does, from bytecode compiled once (pip compiles a
        # wheel's modules when it installs them, as it did pyinfra's): with this variable set
        # (dev shells, CI) a checkout recompiles ~200 modules on every run, ~0.4 s of CPU
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        argv = [str(BIN / "berth"), "apply", "-i", str(lab.spec_path), "--phases", "demo",
                "--yes", "--output", "json", "--parallel", "32"]  # fmt: skip
        cold, _ = _timed(argv, cwd=work, env=env)
        if BASELINE:
            _timed(argv, cwd=work, env=dict(env, PYTHONPATH=BASELINE))  # compile its bytecode
            _against_baseline(argv, lab, cwd=work, env=env)
        noops = []
        for _ in range(NOOPS):
            noop, out = _timed(argv, cwd=work, env=env)
            events = [json.loads(line) for line in out.splitlines()]
            changes = [e for e in events if e["kind"] == "change"]
            assert not changes, f"berth re-apply was not a no-op: {changes[:3]}"
            noops.append(noop)
        return cold, statistics.median(noops)
    finally:
        with contextlib.suppress(OSError, EOFError, MuxUnsafe):
            request_mux(work / "mux", "stop")
        lab.down()


def bench_pyinfra(count: int, work: Path, deb: Path) -> tuple[float, float]:
    lab = _boot(f"{LAB_PREFIX}bp{count}", count)
    try:
        deploy = work / "pyinfra"
        deploy.mkdir(exist_ok=True)
        _templates(deploy)
        (deploy / "deploy.py").write_text(PYINFRA_DEPLOY)
        inventory = _pyinfra_inventory(lab, deploy, deb)
        argv = [str(PYINFRA), "-y", "--parallel", "32", str(inventory), "deploy.py"]
        cold, _ = _timed(argv, cwd=deploy, env=dict(os.environ))
        noops = []
        for _ in range(NOOPS):
            noop, out = _timed(argv, cwd=deploy, env=dict(os.environ))
            if os.environ.get("BENCH_DEBUG"):
                print(out)
            noops.append(noop)
        return cold, statistics.median(noops)
    finally:
        lab.down()


def main() -> None:
    counts = [int(a) for a in sys.argv[1:]] or [3, 20]
    if not PYINFRA.exists():
        sys.exit(f"pyinfra not found at {PYINFRA}: run `make bench`, or set BERTH_PYINFRA")
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as tmp:
        work = Path(tmp)
        deb = DebCache(work / "cache" / "debs").fetch(["tree"], arch="amd64")[0].source
        rows = []
        for count in counts:
            b_cold, b_noop = bench_berth(count, work)
            p_cold, p_noop = bench_pyinfra(count, work, deb)
            rows.append((count, b_cold, p_cold, b_noop, p_noop))
        print(f"{'hosts':>5} | {'cold: berth':>11} {'pyinfra':>8} {'ratio':>6} | "
              f"{'no-op: berth':>12} {'pyinfra':>8} {'ratio':>6}")  # fmt: skip
        for count, b_cold, p_cold, b_noop, p_noop in rows:
            print(f"{count:>5} | {b_cold:>10.2f}s {p_cold:>7.2f}s {p_cold / b_cold:>5.1f}x | "
                  f"{b_noop:>11.2f}s {p_noop:>7.2f}s {p_noop / b_noop:>5.1f}x")  # fmt: skip
        print(
            f"ratio = pyinfra time / berth time (higher is better for berth); no-op = median of "
            f"{NOOPS}; goal: no-op on 20 hosts <= {NOOP_GOAL} s and >= {NOOP_RATIO_GOAL:g}x; "
            f"load average {os.getloadavg()[0]:.0f} at the end"
        )


if __name__ == "__main__":
    main()
