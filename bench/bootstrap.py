"""Cold bootstrap and no-op re-apply of a berth cluster on lab hosts, against the issue's goals.

For 3 and 10 hosts (and a Debian 13 row: 3 trixie hosts, python 3.13): boot bare lab hosts,
then time ``berth apply -i SPEC --yes`` from bare hosts
until it exits 0 (which means: every node registered and Ready, and ``berth verify`` passed,
smoke pods included), then a second apply (no changes), then ``berth destroy``. The bundle build
is timed once on its own per Python ABI (it is cached on disk and shared by every later run).

Each row is measured ``--repeat`` times (default 3), the rows taking turns round by round so
that the machine's load falls on every row alike; a row prints its median and its range. The
load average is printed with the figures: on a shared machine it says what they are worth.

Run: ``.venv/bin/python bench/bootstrap.py [--hosts 3,10] [--trixie 3] [--repeat 3]`` (root,
as the lab needs; ``--trixie 0`` skips the Debian 13 row).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provisioner.artifacts.berth_bundle import build_bundle
from provisioner.lab import Lab
from provisioner.platforms import SUPPORTED

GOALS = {3: 30.0, 10: 60.0}
NOOP_GOAL = 3.0
BERTH = [sys.executable, "-m", "provisioner.cli.main"]
REPO = Path(__file__).resolve().parents[1]
COMMIT = (
    subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    or "HEAD"
)


def timed(args: list[str], env: dict[str, str], *, expect: str = "") -> float:
    start = time.monotonic()
    result = subprocess.run([*BERTH, *args], capture_output=True, text=True, env=env, check=False)
    elapsed = time.monotonic() - start
    if result.returncode != 0 or expect not in result.stdout:
        print(result.stdout[-3000:], result.stderr[-3000:], sep="\n")
        raise SystemExit(f"`berth {' '.join(args)}` failed (exit {result.returncode})")
    return elapsed


def bench(count: int, release: str = "bookworm") -> tuple[float, float, float]:
    lab = Lab(f"bench-boot{count}-{release}")
    # a loaded machine may need more than the default minute for every sshd to answer
    lab.up(count, replace=True, releases=[release] * count, timeout=180)
    try:
        with tempfile.TemporaryDirectory(prefix="berth-bench-") as state:
            # ship one commit's berth throughout, even if someone commits meanwhile
            env = {**os.environ, "BERTH_STATE_DIR": state, "BERTH_BUNDLE_SOURCE": COMMIT}
            spec = str(lab.spec_path)
            cold = timed(["apply", "-i", spec, "--yes"], env, expect="checks passed")
            noop = timed(["apply", "-i", spec, "--yes"], env, expect="plan: 0 change(s)")
            destroy = timed(["destroy", "-i", spec, "--yes"], env)
            return cold, noop, destroy
    finally:
        lab.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", default="3,10", help="comma-separated host counts")
    parser.add_argument("--trixie", type=int, default=3, help="Debian 13 hosts (0: no row)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row (median printed)")
    args = parser.parse_args()
    cache = Path(os.environ.get("BERTH_CACHE_DIR", "~/.cache/berth")).expanduser()
    os.environ["BERTH_BUNDLE_SOURCE"] = COMMIT
    for platform in SUPPORTED:
        start = time.monotonic()
        bundle = build_bundle(cache, version="0.1.0", platform=platform)
        print(f"bundle {bundle.id} for {platform.name} ({platform.abi}): "
              f"{bundle.size / 1e6:.1f} MB, ready in {time.monotonic() - start:.1f}s "
              "(cached on disk after the first build)")  # fmt: skip
    rows = [(int(c), "bookworm") for c in args.hosts.split(",")]
    rows += [(args.trixie, "trixie")] if args.trixie else []
    runs: dict[tuple[int, str], list[tuple[float, float, float]]] = {row: [] for row in rows}
    for round_ in range(1, args.repeat + 1):
        for row in rows:
            runs[row].append(bench(*row))
            cold, noop, destroy = runs[row][-1]
            # each run as it ends: a long run on a loaded machine is worth something if cut
            load = os.getloadavg()[0]
            print(f"round {round_} {row[0]} {row[1]}: cold {cold:.1f}s, no-op {noop:.2f}s,"
                  f" destroy {destroy:.1f}s, load {load:.1f}", flush=True)  # fmt: skip
    print(f"median of {args.repeat} (range), rounds alternating; load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")  # fmt: skip
    print(f"{'hosts':>9} {'cold apply':>19} {'goal':>6} {'ratio':>6} {'no-op':>15} {'goal':>5} "
          f"{'ratio':>6} {'destroy':>8}")  # fmt: skip
    for (count, release), measured in runs.items():
        colds, noops = [m[0] for m in measured], [m[1] for m in measured]
        cold, noop = statistics.median(colds), statistics.median(noops)
        destroy = statistics.median(m[2] for m in measured)
        goal = GOALS.get(count, 60.0)
        label = f"{count} {'d13' if release == 'trixie' else 'd12'}"
        print(
            f"{label:>9} {cold:>6.1f}s ({min(colds):.1f}-{max(colds):.1f}) {goal:>5.0f}s"
            f" {cold / goal:>6.2f} {noop:>5.2f}s ({min(noops):.1f}-{max(noops):.1f})"
            f" {NOOP_GOAL:>4.0f}s {noop / NOOP_GOAL:>6.2f} {destroy:>7.1f}s"
        )
    print("ratio = measured / goal (issue 8): below 1.00 meets the goal")


if __name__ == "__main__":
    main()
