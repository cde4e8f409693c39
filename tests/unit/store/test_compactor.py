"""The compactor keeps one full interval of history, driven by a scripted clock."""

from __future__ import annotations

import asyncio

import pytest

from berth.store.compactor import run_compactor
from berth.store.interface import Compacted, StoreError
from berth.store.memory import MemoryStore


def test_each_round_compacts_at_the_revision_seen_one_interval_earlier() -> None:
    async def main() -> None:
        store = MemoryStore()
        ticks: asyncio.Queue[None] = asyncio.Queue()
        slept = asyncio.Queue[float]()

        async def sleep(seconds: float) -> None:
            await slept.put(seconds)
            await ticks.get()

        task = asyncio.create_task(run_compactor(store, interval=300, sleep=sleep))
        assert await slept.get() == 300
        first = await store.create("/a", b"")  # revision 2
        ticks.put_nowait(None)  # round 1: remembers revision 2, compacts nothing
        await slept.get()
        await store.list("/", revision=1)  # still readable
        second = await store.update("/a", b"", expected_revision=first.mod_revision)
        ticks.put_nowait(None)  # round 2: compacts at 2, remembers 3
        await slept.get()
        with pytest.raises(Compacted):
            await store.list("/", revision=1)
        assert (await store.list("/", revision=2)).items == [first]
        ticks.put_nowait(None)  # round 3: nothing written since round 2, nothing to compact
        await slept.get()
        assert (await store.list("/", revision=2)).items == [first]
        await store.create("/b", b"")
        ticks.put_nowait(None)  # round 4: compacts at 3
        await slept.get()
        with pytest.raises(Compacted):
            await store.list("/", revision=2)
        assert (await store.list("/", revision=3)).items == [second]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


class FlakyCompaction(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.failures_left = 1

    async def compact(self, revision: int) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise StoreError("disk full")
        await super().compact(revision)


def test_a_failed_round_is_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        store = FlakyCompaction()
        rounds = 0

        async def sleep(seconds: float) -> None:
            nonlocal rounds
            rounds += 1
            await store.create(f"/k{rounds}", b"")
            if rounds > 3:
                raise asyncio.CancelledError

        with pytest.raises(asyncio.CancelledError):
            await run_compactor(store, interval=1, sleep=sleep)
        # Round 2 failed to compact at 2 and kept that target; round 3 compacted at it.
        assert store.failures_left == 0
        with pytest.raises(Compacted):
            await store.list("/", revision=1)
        assert [kv.key for kv in (await store.list("/", revision=2)).items] == ["/k1"]

    asyncio.run(main())
    assert "compaction failed (will retry): disk full" in caplog.text
