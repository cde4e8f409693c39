"""The datastore behind the API: SQLite vs etcd side by side, and raw etcd put throughput.

1. API bench (``bench/api.py``'s workload: pod creates/s, get/list latency) against an API
   server process on SQLite and on a 3-member etcd cluster on 127.0.0.1 — the HA datastore
   ``berth`` installs. An API server that does not accept an etcd datastore yet is reported as
   such (the row is skipped, never faked).
2. Raw writes: ``/v3/kv/put`` from C concurrent clients to etcd with 1 and with 3 members (what
   replication costs), the 3 members again through ``berth.lb`` (what the node-side load
   balancer's extra hop costs), next to ``SqliteStore.create`` with the same concurrency and
   value size.

    .venv/bin/python bench/api_etcd.py [--clients 16] [--creates 1000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ctypes
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.api import pct, run_one, stop  # noqa: E402
from berth.lb import Backend, HealthConfig, LBConfig, LoadBalancer  # noqa: E402
from berth.store.sqlite import SqliteStore  # noqa: E402
from tests.harness.apiserver import ServerProcess, prepare, start_process  # noqa: E402

VALUE = b"x" * 1024
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class EtcdCluster:
    urls: list[str]
    processes: list[subprocess.Popen[bytes]]

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(10)


def start_cluster(workdir: Path, members: int) -> EtcdCluster:
    """``members`` etcd processes on 127.0.0.1 forming one cluster (plain HTTP: loopback)."""
    clients = [_free_port() for _ in range(members)]
    peers = [_free_port() for _ in range(members)]
    initial = ",".join(f"m{i}=http://127.0.0.1:{peers[i]}" for i in range(members))
    processes = []
    for i in range(members):
        url = f"http://127.0.0.1:{clients[i]}"
        argv = [
            "etcd", f"--name=m{i}", f"--data-dir={workdir / f'm{i}'}",
            f"--listen-client-urls={url}", f"--advertise-client-urls={url}",
            f"--listen-peer-urls=http://127.0.0.1:{peers[i]}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peers[i]}",
            f"--initial-cluster={initial}", "--initial-cluster-state=new",
            "--logger=zap", "--log-level=error",
        ]  # fmt: skip
        processes.append(
            subprocess.Popen(
                argv,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                # no threads run yet here; PR_SET_PDEATHSIG: the members die with the bench
                preexec_fn=lambda: _prctl(1, signal.SIGTERM),  # noqa: PLW1509
            )
        )
    cluster = EtcdCluster([f"http://127.0.0.1:{p}" for p in clients], processes)
    asyncio.run(_wait_ready(cluster.urls[0]))
    return cluster


async def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.post(f"{url}/v3/kv/put", data=_put(b"/ready", b"1")) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd at {url} did not become ready")
            await asyncio.sleep(0.2)


def _put(key: bytes, value: bytes) -> bytes:
    return orjson.dumps(
        {"key": base64.b64encode(key).decode(), "value": base64.b64encode(value).decode()}
    )


@dataclass
class Rate:
    per_s: float
    p50_ms: float
    p99_ms: float


async def etcd_puts(urls: list[str], *, clients: int, seconds: float) -> Rate:
    """Puts for ``seconds`` from ``clients`` clients spread over ``urls``."""
    latencies: list[float] = []
    done = 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:

        async def client(c: int) -> None:
            nonlocal done
            url = f"{urls[c % len(urls)]}/v3/kv/put"
            i = 0
            while time.perf_counter() < deadline:
                body = _put(f"/bench/{c}/{i}".encode(), VALUE)
                t0 = time.perf_counter()
                async with session.post(url, data=body) as response:
                    await response.read()
                    assert response.status == 200, response.status
                latencies.append((time.perf_counter() - t0) * 1000)
                done += 1
                i += 1

        start = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        elapsed = time.perf_counter() - start
    return Rate(done / elapsed, pct(latencies, 50), pct(latencies, 99))


async def etcd_puts_via_lb(urls: list[str], *, clients: int, seconds: float) -> Rate:
    """The same puts through a :class:`LoadBalancer` in this process (TCP health checks)."""
    backends = tuple(Backend("127.0.0.1", int(u.rsplit(":", 1)[1])) for u in urls)
    balancer = LoadBalancer(
        LBConfig(backends=backends, listen_port=0, health=HealthConfig(interval=1.0))
    )
    await balancer.start()
    try:
        return await etcd_puts(
            [f"http://127.0.0.1:{balancer.port}"], clients=clients, seconds=seconds
        )
    finally:
        await balancer.stop()


async def sqlite_creates(path: Path, *, clients: int, seconds: float) -> Rate:
    store = await SqliteStore.open(str(path))
    latencies: list[float] = []
    done = 0
    deadline = time.perf_counter() + seconds
    try:

        async def client(c: int) -> None:
            nonlocal done
            i = 0
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                await store.create(f"/bench/{c}/{i}", VALUE)
                latencies.append((time.perf_counter() - t0) * 1000)
                done += 1
                i += 1

        start = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        elapsed = time.perf_counter() - start
    finally:
        await store.close()
    return Rate(done / elapsed, pct(latencies, 50), pct(latencies, 99))


def start_api_on_etcd(directory: Path, urls: list[str]) -> ServerProcess:
    """An API server process whose config names the etcd cluster (raises if it refuses)."""
    files = prepare(directory, datastore="memory")
    proc = start_process(files)  # writes apiserver.yaml; replaced below, then restarted
    stop(proc)
    config = yaml.safe_load(proc.config_path.read_text())
    config["datastore"] = {"type": "etcd", "endpoints": urls}
    config["port"] = 0
    proc.config_path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "berth.apiserver", "--config", str(proc.config_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("listening on"):
        process.kill()
        _, err = process.communicate()
        reason = (err.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(reason)
    files.url = f"https://127.0.0.1:{int(line.strip().rsplit(':', 1)[1])}"
    return ServerProcess(files, process, proc.config_path)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    api_args = argparse.Namespace(clients=args.clients, creates=args.creates, watchers=0,
                                  watch_events=0)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        one = start_cluster(work / "etcd1", 1)
        three = start_cluster(work / "etcd3", 3)
        try:
            print(f"== raw writes, {args.clients} clients, 1 KiB values, {args.seconds:g}s each")
            rows = {
                "sqlite store creates": asyncio.run(
                    sqlite_creates(work / "raw.db", clients=args.clients, seconds=args.seconds)
                ),
                "etcd 1 member puts": asyncio.run(
                    etcd_puts(one.urls, clients=args.clients, seconds=args.seconds)
                ),
                "etcd 3 members puts": asyncio.run(
                    etcd_puts(three.urls, clients=args.clients, seconds=args.seconds)
                ),
                "etcd 3 via berth.lb": asyncio.run(
                    etcd_puts_via_lb(three.urls, clients=args.clients, seconds=args.seconds)
                ),
            }
            base = rows["etcd 3 members puts"].per_s
            for name, rate in rows.items():
                print(
                    f"  {name:22} {rate.per_s:8.0f}/s  p50 {rate.p50_ms:6.1f} ms  "
                    f"p99 {rate.p99_ms:6.1f} ms  vs etcd x3: {rate.per_s / base:5.2f}x"
                )
            print("== API server (bench/api.py workload), SQLite vs etcd x3")
            sqlite_dir = work / "api-sqlite"
            sqlite_dir.mkdir()
            files = prepare(sqlite_dir, datastore="sqlite", sqlite_path=sqlite_dir / "state.db")
            proc = start_process(files)
            try:
                asyncio.run(run_one("sqlite", proc, api_args))
            finally:
                stop(proc)
            etcd_dir = work / "api-etcd"
            etcd_dir.mkdir()
            try:
                proc = start_api_on_etcd(etcd_dir, three.urls)
            except RuntimeError as refused:
                print(f"[etcd x3] skipped: the API server refuses an etcd datastore: {refused}")
            else:
                try:
                    asyncio.run(run_one("etcd x3", proc, api_args))
                finally:
                    stop(proc)
        finally:
            one.stop()
            three.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
