"""SqliteStore behaves exactly like the MemoryStore model on random operation sequences.

Both stores number revisions the same way, so every answer (values, revisions, errors, lists
at past revisions, pages, watch histories after compaction) must be identical.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from berth.store.interface import Conflict, Event, Store, StoreError
from berth.store.memory import MemoryStore
from berth.store.sqlite import SqliteStore

KEYS = ["/a", "/a/1", "/a/2/x", "/b/1"]  # few keys, so operations often hit existing ones
PREFIXES = ["", "/a", "/a/", "/b/", "/c/"]

keys = st.sampled_from(KEYS)
values = st.binary(max_size=8)
fractions = st.one_of(st.just(1.0), st.floats(min_value=0, max_value=1))  # 1.0 = newest
writes = st.one_of(
    st.tuples(st.just("create"), keys, values),
    st.tuples(st.just("update"), keys, values, st.booleans()),
    st.tuples(st.just("delete"), keys, st.sampled_from(["none", "right", "stale"])),
)
reads = st.tuples(st.just("list"), st.sampled_from(PREFIXES), fractions, st.integers(0, 3))
# Compaction is rarer than in real life per operation, or it would erase most of the history
# the other operations are there to check.
compactions = st.tuples(st.just("compact"), st.floats(min_value=0, max_value=1))
operations = st.lists(
    st.one_of(writes, writes, reads, reads, compactions), min_size=20, max_size=60
)


async def apply(store: Store, op: tuple[Any, ...]) -> object:
    """Run one operation; return a comparable description of its outcome."""
    try:
        return await _apply(store, op)
    except Conflict as exc:
        return ("Conflict", exc.current)
    except StoreError as exc:
        return (type(exc).__name__, str(exc))


async def _apply(store: Store, op: tuple[Any, ...]) -> object:
    kind = op[0]
    current = await store.get(op[1]) if kind in ("update", "delete") else None
    mod = current.mod_revision if current else 5
    if kind == "create":
        return await store.create(op[1], op[2])
    if kind == "update":
        return await store.update(op[1], op[2], expected_revision=mod - 1 if op[3] else mod)
    if kind == "delete":
        expected = {"none": 0, "right": mod, "stale": mod - 1}[op[2]]
        return await store.delete(op[1], expected_revision=expected)
    now = await store.current_revision()
    if kind == "compact":
        await store.compact(1 + int(op[1] * (now - 1)))
        return None
    revision = 1 + int(op[2] * (now - 1))
    first = await store.list(op[1], revision=revision, limit=op[3])
    pages = [first]
    while pages[-1].more and pages[-1].items:
        pages.append(
            await store.list(
                op[1], revision=first.revision, limit=op[3], start_after=pages[-1].items[-1].key
            )
        )
    return pages


async def history(store: Store) -> list[Event]:
    """Every event still in the log, via a watch from the oldest readable revision."""
    now = await store.current_revision()
    start = 1
    while True:
        try:
            await store.list("", revision=start)
            break
        except StoreError:
            start += 1
    watch = store.watch("", revision=start)
    events: list[Event] = []
    try:
        while start + len(events) < now:
            events.append(await asyncio.wait_for(watch.__anext__(), 5))
    finally:
        await watch.aclose()
    return events


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,  # the same sequences every run: CI never flakes on a lucky draw
    database=None,  # no .hypothesis/ directory in the working tree
    suppress_health_check=[HealthCheck.too_slow],
)
@given(ops=operations)
def test_sqlite_matches_the_memory_model(ops: list[tuple[Any, ...]]) -> None:
    async def main(directory: Path) -> None:
        model = MemoryStore()
        sqlite = await SqliteStore.open(directory / "state.db")
        try:
            for op in ops:
                expected = await apply(model, op)
                assert await apply(sqlite, op) == expected, op
            assert await sqlite.current_revision() == await model.current_revision()
            assert await history(sqlite) == await history(model)
        finally:
            await sqlite.close()
            await model.close()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp)))
