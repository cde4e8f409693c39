"""Benchmark: a rolling upgrade of a 1+2 lab cluster, its per-phase breakdown, and the peers.

A fresh 3-host lab (n1 control plane + worker, n2 and n3 workers) is bootstrapped with this
checkout (release 0.1.0); a copy of the checkout with the version bumped to 0.2.0 is the new
build. Timed, each from the command line:

* ``berth upgrade`` (snapshot, then per node: cordon+drain, install beside, switch+restart,
  health gate, uncordon), broken down per phase from the upgrade journal's timestamps;
* ``berth rollback`` back to 0.1.0 (per node: switch back + gate);
* the peer: ``berth apply`` with the new build, i.e. an in-place re-apply of every host at
  once with no drain, no gate, no snapshot and no journal (what re-running kubespray's
  ``cluster.yml`` with a new version amounts to). The ratio says what the safety costs.

Run: ``.venv/bin/python bench/upgrade.py`` (root; boots and removes lab ``bench-upg``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

# The build helper lives with the lab tests (not part of the installed packages).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provisioner.lab import Lab
from provisioner.upgrade.journal import Journal, Record, Step
from tests.lab.builds import OLD, make_build

ROOT = Path(__file__).resolve().parents[1]
NEW = "0.2.0"


def _berth(tree: Path, env: dict[str, str], *args: str) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "provisioner.cli.main", *args],
        env={**env, "PYTHONPATH": str(tree)}, cwd=tree, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    took = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"berth {' '.join(args)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return took


def _t(record: Record) -> dt.datetime:
    return dt.datetime.fromisoformat(record.at)


PHASES = (
    ("cordon+drain", Step.STARTED, Step.DRAINED),
    ("install beside", Step.DRAINED, Step.INSTALLED),
    ("switch+restart", Step.INSTALLED, Step.SWITCHED),
    ("health gate", Step.SWITCHED, Step.GATE_OK),
    ("uncordon", Step.GATE_OK, Step.UNCORDONED),
)


def breakdown(records: list[Record]) -> dict[str, dict[str, float]]:
    """host -> phase -> seconds, from the journal's timestamps (``(run)`` for run phases)."""
    at: dict[tuple[str | None, Step], dt.datetime] = {}
    for record in records:
        at.setdefault((record.host, record.step), _t(record))
    out: dict[str, dict[str, float]] = defaultdict(dict)
    planned, snap = at.get((None, Step.PLANNED)), at.get((None, Step.SNAPSHOT))
    if planned and snap:
        out["(run)"]["datastore snapshot"] = (snap - planned).total_seconds()
    hosts = sorted({r.host for r in records if r.host})
    for host in hosts:
        for name, begin, end in PHASES:
            if (host, begin) in at and (host, end) in at:
                out[host][name] = (at[(host, end)] - at[(host, begin)]).total_seconds()
    return out


def rollback_breakdown(records: list[Record]) -> dict[str, float]:
    """host -> seconds its switch back + gate took (from the record before its REVERTED)."""
    out: dict[str, float] = {}
    for before, record in itertools.pairwise(records):
        if record.step is Step.REVERTED and record.host:
            out[record.host] = (_t(record) - _t(before)).total_seconds()
    return out


def main() -> None:
    lab = Lab("bench-upg")
    with tempfile.TemporaryDirectory(prefix="berth-bench-upg-") as scratch:
        base = Path(scratch)
        env = {**os.environ, "BERTH_STATE_DIR": str(base / "state"),
               "BERTH_CACHE_DIR": str(base / "cache")}  # fmt: skip
        new_tree = make_build(base, NEW).tree
        try:
            lab.up(3, replace=True)
            spec = lab.spec_path
            new_spec = spec.with_name(f"cluster-{NEW}.yaml")
            new_spec.write_text(
                spec.read_text().replace(f"  version: {OLD}\n", f"  version: {NEW}\n")
            )
            bootstrap = _berth(ROOT, env, "apply", "-i", str(spec), "--yes")
            upgrade = _berth(new_tree, env, "upgrade", "-i", str(new_spec), "--to", NEW, "--yes")
            journal = Journal.latest(base / "state" / lab.name / "journal")
            assert journal is not None
            phases = breakdown(journal.records())
            rollback = _berth(ROOT, env, "rollback", "-i", str(spec), "--yes")
            reverted = rollback_breakdown(journal.records())
            peer = _berth(new_tree, env, "apply", "-i", str(new_spec), "--yes")
        finally:
            lab.down()
    print(f"1+2 lab cluster, {OLD} -> {NEW} (wall times, one run)")
    print(f"  bootstrap (berth apply {OLD})             {bootstrap:7.2f} s")
    print(f"  berth upgrade (rolling, gated, journaled)  {upgrade:7.2f} s")
    print(f"  berth rollback (every host back)           {rollback:7.2f} s")
    print(f"  peer: berth apply {NEW} in place (no drain/gate/snapshot) {peer:7.2f} s")
    print(f"  ratio upgrade / in-place re-apply          {upgrade / peer:7.2f}x")
    print("per-phase breakdown of the upgrade (from the journal):")
    for host, parts in phases.items():
        cells = ", ".join(f"{name} {secs:.2f}s" for name, secs in parts.items())
        print(f"  {host:6s} {cells}")
    print("rollback, per host (switch back + restart + gate):")
    print("  " + ", ".join(f"{host} {secs:.2f}s" for host, secs in reverted.items()))


if __name__ == "__main__":
    main()
