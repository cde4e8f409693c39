"""Event TTL: API server memory and datastore size under a steady stream of Events, with a short
event TTL beside the default hour, in the same run.

Two ``python -m berth.apiserver`` processes on SQLite (the embedded default) run side by side:
one with ``eventTTL`` = ``--ttl`` (default 90 s), its peer with the default 1 h. Each second,
``--rate`` Events (about what the agents, scheduler and controllers write for a pod: ~0.6 KiB,
kubelet/scheduler wording) are created in each server, alternating which goes first. Every
minute: resident memory (VmRSS) of each server, the database size (``state.db`` + WAL) and the
load average. At the end: the Events each server still holds (and RSS after listing them). The
servers compact their history every 5 minutes (expired Events leave delete records until then):
run 12 minutes or more to see the short TTL's database level off.

A 30-minute soak of 300 pods (bench/footprint.py, 5 % of the pods replaced every 20 s, ~5
Events per pod) writes ~0.5 Event/s; ``--rate 20`` for 6 minutes writes what ~4 hours of that
soak would, so a short run shows what Events cost a control plane that never expires them.

    .venv/bin/python bench/event_ttl.py [--minutes 6] [--rate 20] [--ttl 90]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import ssl
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness.apiserver import ServerProcess, prepare, start_process  # noqa: E402

NS = "churn"
MIB = 1 << 20
REASONS = ("Scheduled", "Pulled", "Created", "Started", "Killing")


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def db_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("state.db*") if p.is_file())


def event(i: int) -> bytes:
    pod = f"web-7d4b9c8f6d-{i // len(REASONS):06d}"
    reason = REASONS[i % len(REASONS)]
    return orjson.dumps(
        {
            "metadata": {"name": f"{pod}.{i:012x}", "namespace": NS},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": pod,
                "namespace": NS,
                "uid": f"3f0c2a1e-8b7d-4c6e-9a5f-{i:012d}",
                "fieldPath": "spec.containers{app}",
            },
            "reason": reason,
            "message": f"{reason}: container app of pod {NS}/{pod} (image registry.local/smoke:1)",
            "source": {"component": "kubelet", "host": "node-2"},
            "firstTimestamp": "2026-01-01T00:00:00Z",
            "lastTimestamp": "2026-01-01T00:00:00Z",
            "count": 1,
            "type": "Normal",
        }
    )


@dataclasses.dataclass
class Server:
    label: str
    proc: ServerProcess
    session: aiohttp.ClientSession

    @property
    def pid(self) -> int:
        return self.proc.process.pid

    async def create(self, path: str, body: bytes) -> None:
        async with self.session.post(path, data=body) as r:
            await r.read()
            assert r.status == 201, (r.status, path)

    async def count(self) -> int:
        async with self.session.get(f"/api/v1/namespaces/{NS}/events") as r:
            return len(orjson.loads(await r.read())["items"])


def start(directory: Path, ttl: int | None) -> ServerProcess:
    directory.mkdir()
    files = prepare(directory, datastore="sqlite", sqlite_path=directory / "state.db")
    if ttl is not None:
        files.config = dataclasses.replace(files.config, event_ttl=ttl)
    return start_process(files)


def session(proc: ServerProcess) -> aiohttp.ClientSession:
    cert, key = proc.files.client_cert("admin", ["system:masters"])
    ctx = ssl.create_default_context(cafile=str(proc.files.pki.ca_cert))
    ctx.load_cert_chain(str(cert), str(key))
    return aiohttp.ClientSession(
        base_url=proc.url, connector=aiohttp.TCPConnector(ssl=ctx, limit=8)
    )


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f} (5 min {five:.1f})"


async def churn(servers: list[Server], minutes: float, rate: int) -> None:
    for s in servers:
        await s.create("/api/v1/namespaces", orjson.dumps({"metadata": {"name": NS}}))
    started = time.monotonic()
    path = f"/api/v1/namespaces/{NS}/events"
    i = 0
    next_mark = 60.0
    tick = 0
    while (elapsed := time.monotonic() - started) < minutes * 60:
        order = servers if tick % 2 == 0 else servers[::-1]
        bodies = [event(i + k) for k in range(rate)]
        for s in order:
            await asyncio.gather(*(s.create(path, b) for b in bodies))
        i += rate
        tick += 1
        if elapsed >= next_mark:
            figures = ", ".join(
                f"{s.label} {rss(s.pid) / MIB:.1f} MiB RSS,"
                f" db {db_size(s.proc.files.directory) / MIB:.1f} MiB"
                for s in servers
            )
            print(f"  minute {next_mark / 60:.0f}: {i} events written; {figures}; {load()}",
                  flush=True)  # fmt: skip
            next_mark += 60.0
        await asyncio.sleep(max(0.0, tick - (time.monotonic() - started)))
    print(f"end after {minutes:.0f} min, {i} events written to each server, {load()}")
    before = {s.label: rss(s.pid) for s in servers}  # a LIST of every Event allocates too
    for s in servers:
        held = await s.count()
        print(f"  {s.label}: {held} events held, {before[s.label] / MIB:.1f} MiB RSS"
              f" ({rss(s.pid) / MIB:.1f} after listing them),"
              f" db {db_size(s.proc.files.directory) / MIB:.1f} MiB")  # fmt: skip


async def run(procs: list[tuple[str, ServerProcess]], minutes: float, rate: int) -> None:
    servers = [Server(label, proc, session(proc)) for label, proc in procs]
    try:
        await churn(servers, minutes, rate)
    finally:
        for s in servers:
            await s.session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--rate", type=int, default=20, help="Events per second per server")
    parser.add_argument("--ttl", type=int, default=90, help="the short event TTL, seconds")
    args = parser.parse_args()
    print(f"Events at {args.rate}/s for {args.minutes:.0f} min: eventTTL {args.ttl} s vs 1 h")
    with tempfile.TemporaryDirectory(prefix="berth-event-ttl-") as tmp:
        procs: list[tuple[str, ServerProcess]] = []
        try:
            procs.append((f"ttl {args.ttl} s", start(Path(tmp) / "short", args.ttl)))
            procs.append(("ttl 1 h", start(Path(tmp) / "hour", None)))
            asyncio.run(run(procs, args.minutes, args.rate))
        finally:
            for _, proc in procs:
                proc.process.send_signal(signal.SIGTERM)
                proc.process.wait(30)
                if proc.process.stdout is not None:
                    proc.process.stdout.close()


if __name__ == "__main__":
    main()
