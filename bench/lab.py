"""Lab boot and teardown times: 3 and 20 systemd-nspawn hosts, and 1 QEMU VM beside 1 nspawn host.

For each size, a few rounds of: ``Lab.up`` (launch until every host's sshd sends its banner),
then until every host's systemd reports ``running``, then ``Lab.down``. The peer is the reference
``testhosts.sh`` measured on a machine of the same kind (figures in
/work/shared/reference/test-hosts.md; not re-run here, since that script is not part of the
project); ratios < 1 mean berth's lab is faster.

The VM rows (``berth lab up --vm``) boot one VM per round (its accelerator, KVM or TCG, is
printed); the base image is built first if not cached (not timed). Their peers are the figures in
test-hosts.md / issue 23 for a TCG VM on this kind of machine (26 s to SSH; ~10 s from kernel
to multi-user.target), and one nspawn host beside it (its reference: the 3-host figures).
``--no-vm`` skips them, ``--vm-only`` runs only them.

Run as root: ``.venv/bin/python bench/lab.py [ROUNDS] [--no-vm|--vm-only]``.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from provisioner.lab import Lab, ensure_rootfs, run
from provisioner.lab.rootfs import cache_dir
from provisioner.lab.vmimage import ensure_base_image
from provisioner.lab.vmlab import VmLab

# Reference testhosts.sh (test-hosts.md, option 3): midpoints of the measured ranges, seconds.
PEER = {
    3: {"sshd": 0.55, "boot": 0.55, "running": 0.95, "down": 2.2},
    20: {"sshd": 3.55, "boot": 3.55, "running": 4.25, "down": 3.15},
}
# A TCG VM of the lab's rootfs (test-hosts.md option 4: 26.3 s to SSH, "Startup finished in"
# 10.8 s kernel + 9.8 s userspace); no teardown figure was measured.
VM_PEER = {"sshd": 26.3, "boot": 26.3, "running": 26.3 + 2.0, "down": float("nan")}


def _all_running(lab: Lab) -> None:
    def wait(host: str) -> str:
        return run(lab, host, "systemctl is-system-running --wait")[1].strip()

    with ThreadPoolExecutor(max_workers=8) as pool:
        states = list(pool.map(wait, [h.name for h in lab.hosts]))
    if any(s != "running" for s in states):
        raise SystemExit(f"not every host is running: {states}")


def measure(count: int, rounds: int, *, vm: bool = False) -> dict[str, list[float]]:
    """Seconds per round: up to all sshd, launch to all sshd, up to all running, down."""
    figures: dict[str, list[float]] = {"sshd": [], "boot": [], "running": [], "down": []}
    for round_no in range(rounds):
        name = f"bench{os.getpid()}-{'v' if vm else ''}{count}-{round_no}"
        lab = VmLab(name) if vm else Lab(name)
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


LABELS = (
    ("sshd", "up() -> all sshd answer"),
    ("boot", "  of which launch -> sshd"),
    ("running", "up() -> all running"),
    ("down", "down (all hosts)"),
)


def _print(kind: str, count: int, figures: dict[str, list[float]], peer: dict[str, float]) -> None:
    for metric, label in LABELS:
        values = figures[metric]
        median = statistics.median(values)
        spread = f"{median:6.2f}s [{min(values):.2f}-{max(values):.2f}]"
        reference = peer[metric]
        if math.isnan(reference):  # not measured by the reference
            print(f"{kind:<7}{count:>5}  {label:<26}{spread:>22}{'-':>14}{'-':>8}")
            continue
        ratio = median / reference
        print(f"{kind:<7}{count:>5}  {label:<26}{spread:>22}{reference:>13.2f}s{ratio:>8.2f}")


def main() -> None:
    """Print the table."""
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    rounds = int(args[0]) if args else 3
    rootfs = ensure_rootfs()
    how = f"built in {rootfs.seconds:.1f}s" if rootfs.built else "cached"
    print(f"rootfs: {rootfs.path} ({how}); {rounds} round(s) per size, median [min-max]")
    print(f"{'kind':<7}{'hosts':>5}  {'metric':<26}{'berth lab':>22}{'reference':>14}{'ratio':>8}")
    if "--vm-only" not in sys.argv:
        for count in (3, 20):
            _print("nspawn", count, measure(count, rounds), PEER[count])
    if "--no-vm" in sys.argv:
        return
    image, built = ensure_base_image(rootfs.path)
    vm_rounds = max(1, min(rounds, 2))  # a TCG VM costs a core for a minute or more per round
    print(f"VM base image: {image.directory} ({'built' if built else 'cached'})")
    figures = measure(1, vm_rounds, vm=True)
    _print(f"vm/{_accel()}", 1, figures, VM_PEER)
    _print("nspawn", 1, measure(1, vm_rounds), PEER[3])


def _accel() -> str:
    """The accelerator the VM lab used: forced by BERTH_LAB_ACCEL, else the probe's verdict."""
    if os.environ.get("BERTH_LAB_ACCEL") in ("kvm", "tcg"):
        return os.environ["BERTH_LAB_ACCEL"]
    try:
        return str(json.loads((cache_dir() / "kvm-probe.json").read_text())["accel"])
    except (OSError, ValueError, KeyError):
        return "?"


if __name__ == "__main__":
    main()
