"""Store write throughput: creates/s and latency, SQLite vs a real etcd, side by side.

Runs the same workload against each backend in one process: N creates of ~1 KiB values
(about a small Kubernetes object), first from one client (each create waits for the previous,
so every write pays a full fsync) and then from C concurrent clients (where SQLite's group
commit shares an fsync among writes). The API target is >= 500 creates/s with p99 <= 100 ms.

Peers: etcd 3.4 (single member, same disk, started here on 127.0.0.1) and SQLite with group
commit disabled (max_batch=1). MemoryStore shows the Python-only ceiling.

    .venv/bin/python bench/store.py [--creates 2000] [--clients 64] [--extra-commit-ms 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for the test helper that starts etcd

from berth.store.etcd import EtcdStore  # noqa: E402
from berth.store.interface import Store  # noqa: E402
from berth.store.memory import MemoryStore  # noqa: E402
from berth.store.sqlite import SqliteStore  # noqa: E402
from tests.integration.store.etcd_server import start_etcd  # noqa: E402

VALUE = b"x" * 1024

Opener = Callable[[], AbstractAsyncContextManager[Store]]


@dataclass
class Result:
    creates_per_s: float
    p50_ms: float
    p99_ms: float


async def run_workload(store: Store, *, creates: int, clients: int, tag: str) -> Result:
    latencies: list[float] = []
    per_client = creates // clients

    async def client(c: int) -> None:
        for i in range(per_client):
            t0 = time.perf_counter()
            await store.create(f"/bench/{tag}/{c}/{i}", VALUE)
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return Result(
        creates_per_s=len(latencies) / elapsed,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99) - 1] * 1000,
    )


def fsync_ms(directory: Path, rounds: int = 200) -> float:
    """Median cost of rewriting a block + fdatasync in ``directory`` (what each SQLite WAL
    commit pays once the WAL file has grown; strace shows one fdatasync per commit)."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        costs = []
        os.pwrite(fd, b"x" * 4096, 0)
        os.fsync(fd)
        for _ in range(rounds):
            os.pwrite(fd, b"y" * 4096, 0)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            costs.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
    return statistics.median(costs) * 1000


def sqlite_opener(path: Path, max_batch: int, extra_commit_ms: float) -> Opener:
    @asynccontextmanager
    async def open_store() -> AsyncIterator[Store]:
        store = await SqliteStore.open(path, max_batch=max_batch)
        if extra_commit_ms:
            # Emulate a disk whose fsync costs this much more: the writer thread stalls after
            # each commit exactly as it would inside a slow fdatasync.
            apply = store._apply

            def slow_apply(batch: list[Any]) -> list[Any]:
                outcomes = apply(batch)
                time.sleep(extra_commit_ms / 1000)
                return outcomes

            store._apply = slow_apply  # type: ignore[method-assign]
        try:
            yield store
        finally:
            await store.close()

    return open_store


def memory_opener() -> Opener:
    @asynccontextmanager
    async def open_store() -> AsyncIterator[Store]:
        store = MemoryStore()
        yield store
        await store.close()

    return open_store


def etcd_opener(url: str) -> Opener:
    @asynccontextmanager
    async def open_store() -> AsyncIterator[Store]:
        store = await EtcdStore.open([url])
        try:
            yield store
        finally:
            await store.close()

    return open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creates", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument(
        "--extra-commit-ms",
        type=float,
        default=0.0,
        help="add this much to every SQLite commit, to emulate a slower disk than this one",
    )
    args = parser.parse_args()
    serial_creates = max(args.creates // 4, 50)

    with tempfile.TemporaryDirectory(prefix="berth-bench-store-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        fsync = fsync_ms(work)
        etcd = start_etcd(work / "etcd")
        try:
            backends: dict[str, Opener] = {
                "sqlite": sqlite_opener(work / "group.db", 512, args.extra_commit_ms),
                "sqlite, no group commit": sqlite_opener(
                    work / "single.db", 1, args.extra_commit_ms
                ),
                "etcd 3.4 (peer)": etcd_opener(etcd.url),
                "memory (ceiling)": memory_opener(),
            }
            results: dict[str, tuple[Result, Result]] = {}
            for name, opener in backends.items():

                async def measure(opener: Opener = opener) -> tuple[Result, Result]:
                    async with opener() as store:
                        serial = await run_workload(
                            store, creates=serial_creates, clients=1, tag="serial"
                        )
                        concurrent = await run_workload(
                            store, creates=args.creates, clients=args.clients, tag="conc"
                        )
                        return serial, concurrent

                results[name] = asyncio.run(measure())
        finally:
            etcd.stop()

    peer = results["etcd 3.4 (peer)"]
    print(
        f"store creates, 1 KiB values, {args.clients} concurrent clients; disk under /var/tmp "
        f"(median fdatasync {fsync:.2f} ms); load average {os.getloadavg()[0]:.1f}"
    )
    if args.extra_commit_ms:
        print(f"SQLite commits made {args.extra_commit_ms} ms slower (emulated slow disk)")
    header = f"{'backend':26} {'1 client/s':>11} {'p99 ms':>7} {'concurrent/s':>13} {'p50 ms':>7}"
    print(header + f" {'p99 ms':>7} {'vs etcd':>8}")
    for name, (serial, conc) in results.items():
        ratio = conc.creates_per_s / peer[1].creates_per_s
        print(
            f"{name:26} {serial.creates_per_s:11.0f} {serial.p99_ms:7.1f} "
            f"{conc.creates_per_s:13.0f} {conc.p50_ms:7.1f} {conc.p99_ms:7.1f} {ratio:7.2f}x"
        )
    ok = results["sqlite"][1].creates_per_s >= 500 and results["sqlite"][1].p99_ms <= 100
    print(f"API target (>= 500 creates/s, p99 <= 100 ms) with sqlite: {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
