"""SqliteStore behaviour beyond the shared contract: durability, reopening, single writer."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from berth.store.interface import Compacted, StoreError
from berth.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[3]


def test_every_acknowledged_write_survives_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.store.ack_writer", str(db)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        acked: dict[str, int] = {}
        while len(acked) < 400:  # kill it mid-stream, with writes still in flight
            line = proc.stdout.readline()
            assert line, "writer exited early"
            key, rev = line.split()
            acked[key] = int(rev)
        os.kill(proc.pid, signal.SIGKILL)
        for line in proc.stdout:  # acknowledgements already in the pipe count too
            if line.endswith("\n"):
                key, rev = line.split()
                acked[key] = int(rev)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    async def check() -> None:
        store = await SqliteStore.open(db)  # the dead writer's lock is gone with it
        try:
            listed = await store.list("/acked/")
            found = {kv.key: kv.mod_revision for kv in listed.items}
            missing = {k: r for k, r in acked.items() if found.get(k) != r}
            assert not missing, f"{len(missing)} acknowledged writes lost"
            # Revisions stay gapless: every committed write is one revision after the last.
            assert sorted(found.values()) == list(range(2, 2 + len(found)))
            assert await store.current_revision() == 1 + len(found)
        finally:
            await store.close()

    asyncio.run(check())


def test_reopening_keeps_data_revision_and_compaction_point(tmp_path: Path) -> None:
    db = tmp_path / "state.db"

    async def first() -> tuple[int, int]:
        store = await SqliteStore.open(db)
        a = await store.create("/a", b"1")
        await store.update("/a", b"2", expected_revision=a.mod_revision)
        await store.compact(await store.current_revision())
        await store.create("/b", b"3")
        rev = await store.current_revision()
        await store.close()
        return a.mod_revision, rev

    async def second(old: int, rev: int) -> None:
        store = await SqliteStore.open(db)
        try:
            assert await store.current_revision() == rev
            assert [kv.value for kv in (await store.list("/")).items] == [b"2", b"3"]
            with pytest.raises(Compacted):
                await store.list("/", revision=old)
            assert (await store.create("/c", b"")).mod_revision == rev + 1
        finally:
            await store.close()

    asyncio.run(second(*asyncio.run(first())))


def test_a_second_writer_on_the_same_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "state.db"

    async def main() -> None:
        store = await SqliteStore.open(db)
        try:
            with pytest.raises(StoreError, match="single writer") as info:
                await SqliteStore.open(db)
            assert str(os.getpid()) in str(info.value)
        finally:
            await store.close()
        reopened = await SqliteStore.open(db)  # released on close
        await reopened.close()

    asyncio.run(main())


def test_compaction_deletes_superseded_rows_and_tombstones(tmp_path: Path) -> None:
    db = tmp_path / "state.db"

    async def main() -> None:
        store = await SqliteStore.open(db)
        try:
            kv = await store.create("/k", b"0")
            for i in range(1, 20):
                kv = await store.update("/k", str(i).encode(), expected_revision=kv.mod_revision)
            await store.create("/gone", b"")
            await store.delete("/gone")
            await store.compact(await store.current_revision())
        finally:
            await store.close()

    asyncio.run(main())
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT name, value FROM log ORDER BY id").fetchall()
    conn.close()
    assert rows == [("/k", b"19")]


def test_concurrent_writes_are_group_committed(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    commits = 0

    async def main() -> None:
        nonlocal commits
        store = await SqliteStore.open(db)
        apply = store._apply

        def counting_apply(batch: list) -> list:  # type: ignore[type-arg]
            nonlocal commits
            commits += 1
            return apply(batch)

        store._apply = counting_apply  # type: ignore[method-assign]
        try:
            written = await asyncio.gather(*(store.create(f"/k{i}", b"") for i in range(200)))
        finally:
            await store.close()
        assert sorted(kv.mod_revision for kv in written) == list(range(2, 202))

    asyncio.run(main())
    assert 1 <= commits < 50, f"{commits} transactions for 200 concurrent writes"


def test_writes_after_close_are_refused(tmp_path: Path) -> None:
    async def main() -> None:
        store = await SqliteStore.open(tmp_path / "state.db")
        await store.close()
        await store.close()  # idempotent
        with pytest.raises(StoreError, match="closed"):
            await store.create("/a", b"")
        with pytest.raises(StoreError, match="closed"):
            await store.list("/")

    asyncio.run(main())


def test_durability_settings_are_in_force(tmp_path: Path) -> None:
    async def main() -> None:
        store = await SqliteStore.open(tmp_path / "state.db")
        try:
            conn = store._writer_conn
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        finally:
            await store.close()

    asyncio.run(main())


def test_database_files_are_owner_only(tmp_path: Path) -> None:
    async def main() -> None:
        store = await SqliteStore.open(tmp_path / "state.db")
        try:
            await store.create("/secret", b"")
            for name in ("state.db", "state.db-wal", "state.db-shm", "state.db.lock"):
                assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
        finally:
            await store.close()

    asyncio.run(main())


def test_an_unwritable_key_fails_alone_not_its_whole_batch(tmp_path: Path) -> None:
    async def main() -> None:
        store = await SqliteStore.open(tmp_path / "state.db")
        try:
            results = await asyncio.gather(
                store.create("/ok/1", b""),
                store.create("/bad/\udcff", b""),  # a lone surrogate cannot be UTF-8
                store.create("/ok/2", b""),
                return_exceptions=True,
            )
            assert isinstance(results[1], StoreError)
            assert [kv.mod_revision for kv in (results[0], results[2])] == [2, 3]  # type: ignore[union-attr]
            assert await store.current_revision() == 3
        finally:
            await store.close()

    asyncio.run(main())


def test_a_dead_writer_fails_queued_and_later_writes(tmp_path: Path) -> None:
    async def main() -> None:
        store = await SqliteStore.open(tmp_path / "state.db")
        store._writer_task.cancel()
        with pytest.raises(StoreError):
            await store.create("/a", b"")
        with pytest.raises(StoreError, match="closed"):
            await store.create("/b", b"")
        await store.close()
        reopened = await SqliteStore.open(tmp_path / "state.db")  # the lock was released
        await reopened.close()

    asyncio.run(main())


def test_compaction_removes_versions_kept_by_an_earlier_compaction(tmp_path: Path) -> None:
    # Regression: compact(C2) used to scan only rows after the previous compaction point C1,
    # so a key's version kept at C1 survived after its deletion tombstone (<= C2) was
    # removed, and the deleted key came back.
    async def main() -> None:
        store = await SqliteStore.open(tmp_path / "state.db")
        try:
            await store.create("/k", b"old")
            first = await store.current_revision()
            await store.compact(first)  # keeps /k@first: it is the value as of `first`
            await store.delete("/k")
            await store.compact(await store.current_revision())
            assert await store.get("/k") is None
            assert (await store.list("/")).items == []
            assert (await store.create("/k", b"new")).value == b"new"
        finally:
            await store.close()

    asyncio.run(main())


def test_a_ttl_outlives_a_restart_and_expires_after_it(tmp_path: Path) -> None:
    """The deadline is on disk: a key written with a ttl before a restart is deleted after it
    (an ordinary delete, in the log), and a key without one stays."""
    db = tmp_path / "state.db"

    async def before() -> int:
        store = await SqliteStore.open(db, expiry_interval=3600)  # no sweep before the close
        try:
            await store.create("/events/a", b"a", ttl=1)
            kept = await store.create("/events/b", b"b")
            return kept.mod_revision
        finally:
            await store.close()

    async def after(last: int) -> None:
        store = await SqliteStore.open(db, expiry_interval=0.1)
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while await store.get("/events/a") is not None:
                assert asyncio.get_running_loop().time() < deadline, "the ttl was forgotten"
                await asyncio.sleep(0.1)
            watch = store.watch("/events/", revision=last)
            try:
                gone = await asyncio.wait_for(watch.__anext__(), 10)
            finally:
                await watch.aclose()
            assert (gone.type.value, gone.kv.key, gone.kv.value) == ("DELETE", "/events/a", b"a")
            assert [kv.key for kv in (await store.list("/events/")).items] == ["/events/b"]
            with sqlite3.connect(db) as conn:  # the deadline is done with
                assert conn.execute("SELECT COUNT(*) FROM expiry").fetchone() == (0,)
        finally:
            await store.close()

    asyncio.run(after(asyncio.run(before())))
