"""Snapshots: consistent while writes go on, restorable, refused when unsafe."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from berth.store.etcd import EtcdStore
from berth.store.interface import StoreError
from berth.store.snapshot import SnapshotError, restore_sqlite, save_etcd, save_sqlite
from berth.store.sqlite import SqliteStore

from .etcd_server import EtcdProcess


def test_sqlite_snapshot_under_load_restores_exactly_its_revision(tmp_path: Path) -> None:
    db, snap = tmp_path / "state.db", tmp_path / "backup" / "snap.db"
    snap.parent.mkdir()

    async def take() -> tuple[int, list[tuple[str, bytes, int]]]:
        store = await SqliteStore.open(db)
        try:
            for i in range(50):
                await store.create(f"/before/{i}", b"x" * 100)
            stop, writing = asyncio.Event(), asyncio.Event()

            async def keep_writing() -> None:
                i = 0
                while not stop.is_set():
                    await store.create(f"/during/{i}", b"y")
                    i += 1
                    if i == 4:
                        writing.set()

            writer = asyncio.create_task(keep_writing())
            await writing.wait()  # concurrent writes have begun landing (no sleep-and-hope)
            info = await save_sqlite(db, snap)
            stop.set()
            await writer
            assert info.revision > 51  # some concurrent writes made it into the snapshot
            assert await store.current_revision() > info.revision  # and some did not
            expected = await store.list("/", revision=info.revision)
            return info.revision, [(kv.key, kv.value, kv.mod_revision) for kv in expected.items]
        finally:
            await store.close()

    revision, expected = asyncio.run(take())
    assert stat.S_IMODE(snap.stat().st_mode) == 0o600

    restored = restore_sqlite(snap, db)
    assert restored.revision == revision

    async def check() -> None:
        store = await SqliteStore.open(db)
        try:
            assert await store.current_revision() == revision
            items = (await store.list("/")).items
            assert [(kv.key, kv.value, kv.mod_revision) for kv in items] == expected
            assert (await store.create("/after", b"")).mod_revision == revision + 1
        finally:
            await store.close()

    asyncio.run(check())


def test_restore_is_refused_while_the_database_is_open(tmp_path: Path) -> None:
    db, snap = tmp_path / "state.db", tmp_path / "snap.db"

    async def main() -> None:
        store = await SqliteStore.open(db)
        try:
            await store.create("/a", b"")
            await save_sqlite(db, snap)
            with pytest.raises(StoreError, match="single writer"):
                restore_sqlite(snap, db)
        finally:
            await store.close()

    asyncio.run(main())


def test_a_corrupt_snapshot_is_refused_and_the_database_left_alone(tmp_path: Path) -> None:
    db, bad = tmp_path / "state.db", tmp_path / "bad.db"
    bad.write_bytes(b"not a database at all" * 100)

    async def make() -> None:
        store = await SqliteStore.open(db)
        await store.create("/keep", b"")
        await store.close()

    asyncio.run(make())
    before = db.read_bytes()
    with pytest.raises(SnapshotError):
        restore_sqlite(bad, db)
    assert db.read_bytes() == before


def test_etcd_snapshot_is_checksummed_and_holds_the_data(
    etcd_server: EtcdProcess, tmp_path: Path
) -> None:
    dest = tmp_path / "etcd.snap"

    async def main() -> None:
        store = await EtcdStore.open([etcd_server.url])
        try:
            await store.create("/snapshot-test/marker", b"snapshot-marker-value")
            info = await save_etcd(store, dest)
            assert info.size == dest.stat().st_size > 32
        finally:
            await store.close()

    asyncio.run(main())
    data = dest.read_bytes()
    assert b"snapshot-marker-value" in data  # bbolt stores values verbatim
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
