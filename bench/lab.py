"""Lab boot and teardown times: 3 and 20 systemd-nspawn hosts.

For each size, a few rounds of: ``Lab.up`` (launch until every host's sshd sends its banner),
then until every host's systemd reports ``running``, then ``Lab.down``. The peer is the reference
``testhosts.sh`` measured on a machine of the same kind (figures in
/work/shared/reference/test-hosts.md; not re-run here, since that script is not part of the
project); ratios < 1 mean berth's lab is faster.

Run as root: ``.venv/bin/python bench/lab.py [ROUNDS]``.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from provisioner.lab import Lab, ensure_rootfs, run

# Reference testhosts.sh (test-hosts.md, option 3): midpoints of the measured ranges, seconds.
PEER = {
    3: {"sshd": 0.55, "boot": 0.55, "running": 0.95, "down": 2.2},
    20: {"sshd": 3.55, "boot": 3.55, "running": 4.25, "down": 3.15},
}


def _all_running(lab: Lab) -> None:
    def wait(host: str) -> str:
        return run(lab, host, "systemctl is-system-running --wait")[1].strip()

    with ThreadPoolExecutor(max_workers=8) as pool:
        states = list(pool.map(wait, [h.name for h in lab.hosts]))
    if any(s != "running" for s in states):
        raise SystemExit(f"not every host is running: {states}")


def measure(count: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per round: up to all sshd, nspawn launch to all sshd, up to all running, down."""
    figures: dict[str, list[float]] = {"sshd": [], "boot": [], "running": [], "down": []}
    for round_no in range(rounds):
        lab = Lab(f"bench{os.getpid()}-{count}-{round_no}")
        started = time.monotonic()
        try:
            lab.up(count, replace=True)
            figures["sshd"].append(time.monotonic() - started)
            figures["boot"].append(lab.boot_seconds or 0.0)
            _all_running(lab)
            figures["running"].append(time.monotonic() - started)
        finally:
            started = time.monotonic()
            lab.down()
            figures["down"].append(time.monotonic() - started)
    return figures


def main() -> None:
    """Print the table."""
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    rootfs = ensure_rootfs()
    how = f"built in {rootfs.seconds:.1f}s" if rootfs.built else "cached"
    print(f"rootfs: {rootfs.path} ({how}); {rounds} round(s) per size, median [min-max]")
    print(f"{'hosts':>5}  {'metric':<26}{'berth lab':>22}{'testhosts.sh':>14}{'ratio':>8}")
    for count in (3, 20):
        figures = measure(count, rounds)
        for metric, label in (
            ("sshd", "up() -> all sshd answer"),
            ("boot", "  of which nspawn -> sshd"),
            ("running", "up() -> all running"),
            ("down", "down (all hosts)"),
        ):
            values = figures[metric]
            median = statistics.median(values)
            spread = f"{median:6.2f}s [{min(values):.2f}-{max(values):.2f}]"
            peer = PEER[count][metric]
            print(f"{count:>5}  {label:<26}{spread:>22}{peer:>13.2f}s{median / peer:>8.2f}")


if __name__ == "__main__":
    main()
