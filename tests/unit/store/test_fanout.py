"""LogWatch's hand-over from history to live events, with a scripted history reader."""

from __future__ import annotations

import asyncio

from berth.store.fanout import Broadcaster, LogWatch
from berth.store.interface import Event, EventType, KeyValue


def put(rev: int, key: str = "/k") -> Event:
    return Event(EventType.PUT, KeyValue(key, b"", rev, rev), None)


def test_an_event_seen_in_history_and_live_is_delivered_once() -> None:
    async def main() -> None:
        broadcaster = Broadcaster(10)
        calls: list[tuple[int, int]] = []

        async def read_history(prefix: str, after: int, limit: int) -> list[Event]:
            calls.append((after, limit))
            if limit == 0:
                # A write commits after the watch subscribed but before this read: it shows
                # up both in the log and in the live buffer.
                broadcaster.publish([put(3)])
                return [e for e in (put(2), put(3)) if e.kv.mod_revision > after]
            return [put(2)] if after < 2 else []

        watch = LogWatch(prefix="/", revision=1, read_history=read_history, broadcaster=broadcaster)
        got = [(await watch.__anext__()).kv.mod_revision for _ in range(2)]
        broadcaster.publish([put(4)])
        got.append((await watch.__anext__()).kv.mod_revision)
        await watch.aclose()
        assert got == [2, 3, 4]
        assert calls == [(1, 500), (1, 0)]  # a short page, then the gap read after subscribing

    asyncio.run(main())


def test_history_is_paged_before_subscribing() -> None:
    async def main() -> None:
        broadcaster = Broadcaster(10)
        log = [put(r) for r in range(2, 9)]

        async def read_history(prefix: str, after: int, limit: int) -> list[Event]:
            newer = [e for e in log if e.kv.mod_revision > after]
            if limit:
                assert broadcaster.subscriber_count == 0  # still replaying: not subscribed
            return newer[:limit] if limit else newer

        watch = LogWatch(
            prefix="/", revision=1, read_history=read_history, broadcaster=broadcaster, page=3
        )
        got = [(await watch.__anext__()).kv.mod_revision for _ in range(7)]
        assert got == list(range(2, 9))
        assert broadcaster.subscriber_count == 1
        await watch.aclose()
        assert broadcaster.subscriber_count == 0

    asyncio.run(main())


def test_prefixes_only_receive_their_own_keys() -> None:
    broadcaster = Broadcaster(10)
    pods = broadcaster.subscribe("/pods/")
    everything = broadcaster.subscribe("/")
    broadcaster.publish([put(2, "/pods/a"), put(3, "/nodes/n1")])
    assert [e.kv.key for e in pods.events] == ["/pods/a"]
    assert [e.kv.key for e in everything.events] == ["/pods/a", "/nodes/n1"]
