"""Instructions per pod create of the API server, counted by callgrind: a load-proof figure
beside ``bench/api.py``'s creates/s (this machine is shared; seconds are noisy, instruction
counts are not).

The server runs under ``valgrind --tool=callgrind`` with instrumentation off until it has
served a warm-up round; then two rounds of bench/api.py's pod creates (16 clients, a new
namespace each) are counted: N creates, then 3N, on the connections the warm-up opened (no
TLS handshake is counted). Each round also pays its namespace's create: the difference of the
two rounds cancels it, so the figure is the steady cost of one create as bench/api.py's 2,000
creates see it. ``--baseline REV`` counts another commit's server the same way and prints
the ratio (baseline instructions / this tree's: above 1 is faster).

Usage: ``python bench/api_callgrind.py [--baseline a5136e3] [--stores memory,sqlite] [-n 100]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.api import Bench, unpack_berth  # noqa: E402
from tests.harness.apiserver import ServerProcess, prepare, write_config_file  # noqa: E402


def _total(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


async def _rounds(bench: Bench, pid: int, n: int) -> None:
    """The warm-up round, then the two counted rounds, all on one session: the counted
    rounds run on connections the warm-up opened, so they carry no TLS handshakes (each is
    millions of instructions, and whether a round's clients resumed a session or not moved
    the per-create figure by tens of thousands)."""
    async with bench.session(bench.clients) as s:
        await bench.creates("warm", 200, session=s)
        _control(pid, "-i", "on")
        _control(pid, "-z")
        await bench.creates("small", n, session=s)
        _control(pid, "-d")
        await bench.creates("large", 3 * n, session=s)
        _control(pid, "-d")
        _control(pid, "-i", "off")


def count(source: Path | None, store: str, n: int, workdir: Path) -> float:
    """Instructions per pod create of the server in ``source`` (``None``: this tree)."""
    files = prepare(
        workdir,
        datastore=store,
        sqlite_path=workdir / "state.db" if store == "sqlite" else None,
    )
    config = write_config_file(files, workdir / "apiserver.yaml", port=0)
    out = workdir / "callgrind.out"
    proc = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "berth.apiserver",
            "--config",
            str(config),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(source or ROOT)},
        cwd=source or ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening on"):
            raise RuntimeError(f"the API server did not start under valgrind: {line!r}")
        files.url = f"https://127.0.0.1:{int(line.strip().rsplit(':', 1)[1])}"
        bench = Bench(ServerProcess(files, proc, config), 16)
        asyncio.run(_rounds(bench, proc.pid, n))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(600)
    small, large = (_total(Path(f"{out}.{i}")) for i in (1, 2))
    return (large - small) / (2 * n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a git revision to count the same way")
    parser.add_argument("--stores", default="memory,sqlite")
    parser.add_argument("-n", type=int, default=100, help="creates of the first round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = unpack_berth(args.baseline, Path(tmp) / "base") if args.baseline else None
        for store in args.stores.split(","):
            here = Path(tmp) / f"{store}-here"
            here.mkdir()
            mine = count(None, store, args.n, here)
            line = f"[{store}] instructions per create: this tree {mine:,.0f}"
            if base is not None:
                there = Path(tmp) / f"{store}-base"
                there.mkdir()
                theirs = count(base, store, args.n, there)
                line += f", {args.baseline} {theirs:,.0f} -> ratio {theirs / mine:.3f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
