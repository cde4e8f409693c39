"""Writes to a SqliteStore until killed, printing ``<key> <revision>`` once each write is
acknowledged (used by the kill -9 durability test)."""

from __future__ import annotations

import asyncio
import sys

from berth.store.sqlite import SqliteStore

CONCURRENT_WRITERS = 8


async def main(path: str) -> None:
    store = await SqliteStore.open(path)
    print("ready", flush=True)

    async def writer(worker: int) -> None:
        i = 0
        while True:
            key = f"/acked/{worker}/{i:06}"
            kv = await store.create(key, f"value-{worker}-{i}".encode())
            sys.stdout.write(f"{key} {kv.mod_revision}\n")
            sys.stdout.flush()
            i += 1

    await asyncio.gather(*(writer(w) for w in range(CONCURRENT_WRITERS)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
