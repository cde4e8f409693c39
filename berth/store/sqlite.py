"""The embedded default store: an append-only revision log in one SQLite file.

The layout follows kine's mapping of etcd onto SQL. Every create, update and delete *appends*
a row whose ``id`` is the new cluster-wide revision::

    log(id = revision, name, created, deleted, create_revision, prev_revision, value, old_value)

The current value of a key is its newest row unless that row is a deletion; the value as of
revision R is its newest row with ``id <= R``, which gives list-at-revision (MVCC) and watch
replay straight from the table. A unique index on ``(name, prev_revision)`` makes two rows
that claim to succeed the same version impossible, so compare-and-swap cannot be raced even
by a bug in the code above it. Compaction deletes rows that are superseded at or below the
compaction revision (and deletion tombstones there); the newest version of each key as of
that revision survives.

Concurrency and durability:

* **Single writer.** One process owns the file: :meth:`SqliteStore.open` takes an exclusive
  ``flock`` on ``<path>.lock`` and fails if another process holds it. Revisions are assigned
  in Python by the one writer thread, so they are gapless.
* **Durable acknowledgements.** WAL journal with ``synchronous=FULL``: a write is acknowledged
  only after its transaction is fsynced, so it survives ``kill -9`` and power loss.
* **Group commit.** Writes queue up while the previous transaction is being fsynced and are
  then applied together in one transaction (one fsync for the whole batch). Each write is
  still checked and answered on its own: a conflict fails only that write.
* **Off the event loop.** All SQLite calls run in threads: one writer thread, and a small pool
  of reader threads with their own connections (WAL lets them read while a commit is in
  flight).
* **Watches** are fed in-process from the write path (no polling): after each commit the
  batch's events go to :class:`~berth.store.fanout.Broadcaster`; history is read from the log.
* **Time to live.** A write with a ``ttl`` also records ``(key, revision, deadline)`` in the
  ``expiry`` table, in the same transaction. One sweep task deletes, through the ordinary write
  path, each key whose deadline passed and whose revision is still the recorded one (a later
  write without a ttl thus makes it permanent); a row that no longer matches is dropped. The
  table is on disk, so a restart keeps every deadline. The sweep skips its query until the
  earliest known deadline (kept in memory) has passed.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from berth.store.fanout import DEFAULT_WATCH_BUFFER, Broadcaster, LogWatch
from berth.store.interface import (
    Compacted,
    Conflict,
    Event,
    EventType,
    FutureRevision,
    KeyExists,
    KeyNotFound,
    KeyValue,
    ListResult,
    StoreError,
    Watch,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY,           -- the revision of this change
    name TEXT NOT NULL,               -- the key
    created INTEGER NOT NULL,         -- 1: this row creates the key
    deleted INTEGER NOT NULL,         -- 1: this row is a deletion tombstone
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,   -- id of the row this one succeeds (0: none)
    value BLOB NOT NULL,              -- the new value (for a deletion: the last value)
    old_value BLOB                    -- the value this row replaces (NULL for a create)
);
CREATE INDEX IF NOT EXISTS log_name_id ON log (name, id);
CREATE UNIQUE INDEX IF NOT EXISTS log_name_prev_revision ON log (name, prev_revision);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS expiry (
    name TEXT PRIMARY KEY,            -- a key written with a ttl
    revision INTEGER NOT NULL,        -- the write that set it: a newer one cancels it
    at REAL NOT NULL                  -- the deadline (Unix time)
);
CREATE INDEX IF NOT EXISTS expiry_at ON expiry (at);
"""

SCHEMA_VERSION = 1
COMPACT_CHUNK = 5000  # revisions per compaction transaction, so writers are not held up long
READER_THREADS = 2
WRITER_CACHE_KIB = 16384
"""SQLite page cache of the writer connection: the pages a write touches (indexes, the
latest rows) stay hot."""
READER_CACHE_KIB = 4096
"""Page cache of each reader connection. Lists scan whole prefixes, so a reader's cache fills up
to the database's size; a page it misses is a read from the kernel's page cache (the file
is hot there), while a full 16 MiB cache per reader was resident memory of the API server
(bench/footprint.py)."""
DEFAULT_MAX_BATCH = 512
EXPIRY_INTERVAL = 1.0
"""Seconds between checks for keys whose ttl has passed (a check with no deadline due is a
comparison, no query)."""
EXPIRE_CHUNK = 500
"""Keys deleted per sweep round at most (the rest in the next round)."""


@dataclass(slots=True)
class _Write:
    kind: Literal["create", "update", "delete", "expire"]
    key: str
    value: bytes
    expected: int
    future: asyncio.Future[KeyValue] = field(repr=False)
    deadline: float = 0.0  # create/update with a ttl: when the key expires (Unix time)


@dataclass(slots=True)
class _Compact:
    low: int  # delete superseded rows with low < id <= high
    high: int
    target: int  # the compaction revision
    future: asyncio.Future[int] = field(repr=False)  # the first row id above high


_Outcome = tuple[KeyValue, Event] | BaseException
_Row = tuple[int, str, int, int, int, int, bytes, bytes | None]


def _prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            return prefix[:-1] + chr(last + 1)
        prefix = prefix[:-1]
    return None


def _range_clause(prefix: str, params: builtins.list[Any]) -> str:
    clause = "name >= ?"
    params.append(prefix)
    end = _prefix_end(prefix)
    if end is not None:
        clause += " AND name < ?"
        params.append(end)
    return clause


def _event(row: _Row) -> Event:
    rev, name, created, deleted, create_rev, prev_rev, value, old_value = row
    kv = KeyValue(name, value, create_rev, rev)
    if created:
        return Event(EventType.PUT, kv, None)
    prev = KeyValue(name, old_value if old_value is not None else b"", create_rev, prev_rev)
    return Event(EventType.DELETE if deleted else EventType.PUT, kv, prev)


class WriterLock:
    """An exclusive advisory lock on ``<db>.lock`` (one writer process per database).

    Held by an open :class:`SqliteStore` and by snapshot restores; released by the kernel if
    the process dies, so a crash never leaves a stale lock."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            raise StoreError(
                f"{db_path} is already open in another process (pid {holder}); berth's SQLite "
                "store has a single writer: run one API server per database file"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        os.close(self._fd)


class SqliteStore:
    """The SQLite store. Create with ``await SqliteStore.open(path)``, use it from that event
    loop only (its writer task lives there), and ``await close()`` it."""

    def __init__(
        self,
        path: Path,
        *,
        lock: WriterLock,
        writer: sqlite3.Connection,
        revision: int,
        watch_buffer: int,
        max_batch: int,
        expiry_interval: float = EXPIRY_INTERVAL,
    ) -> None:
        self.path = path
        self._lock = lock
        self._writer_conn = writer
        self._revision = revision  # acknowledged revision (event loop side)
        self._next_revision = revision  # writer thread side, may run ahead inside a batch
        self._max_batch = max_batch
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="berth-sqlite-writer")
        self._read_threads = ThreadPoolExecutor(
            READER_THREADS, thread_name_prefix="berth-sqlite-reader"
        )
        self._local = threading.local()
        self._readers: builtins.list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._queue: asyncio.Queue[_Write | _Compact | None] = asyncio.Queue()
        self._broadcaster = Broadcaster(watch_buffer)
        self._closed = False  # no new reads or writes
        self._released = False  # threads, connections and lock given back
        self._writer_task = asyncio.get_running_loop().create_task(self._write_loop())
        self._writer_task.add_done_callback(self._writer_stopped)
        # The earliest deadline in the expiry table, or sooner (0: unknown, look at once).
        self._next_expiry = 0.0
        self._expiry_interval = expiry_interval
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop())

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        watch_buffer: int = DEFAULT_WATCH_BUFFER,
        max_batch: int = DEFAULT_MAX_BATCH,
        expiry_interval: float = EXPIRY_INTERVAL,
    ) -> SqliteStore:
        """Open (creating if needed) the database at ``path`` for exclusive use by this
        process. The parent directory must exist."""
        db_path = Path(path)
        loop = asyncio.get_running_loop()
        lock = await loop.run_in_executor(None, WriterLock, db_path)
        try:
            conn, revision = await loop.run_in_executor(None, cls._init_db, db_path)
        except BaseException:
            lock.release()
            raise
        return cls(
            db_path,
            lock=lock,
            writer=conn,
            revision=revision,
            watch_buffer=watch_buffer,
            max_batch=max_batch,
            expiry_interval=expiry_interval,
        )

    @staticmethod
    def _connect(path: Path, *, cache_kib: int = WRITER_CACHE_KIB) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA cache_size = -{int(cache_kib)}")  # negative: KiB, not pages
        # A burst of writes can grow the WAL a lot; shrink it back after checkpoints.
        conn.execute("PRAGMA journal_size_limit = 67108864")
        return conn

    @classmethod
    def _init_db(cls, path: Path) -> tuple[sqlite3.Connection, int]:
        # The store holds Secrets: the file is owner-only (tightened if it was not). SQLite
        # gives the -wal and -shm files the database file's mode.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        conn = cls._connect(path)
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{path}: SQLite refused WAL mode (got {mode!r})")
            conn.executescript(SCHEMA)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema', ?), ('revision', 1), "
                "('compacted', 0)",
                (SCHEMA_VERSION,),
            )
            conn.execute("COMMIT")
            schema = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]
            if schema != SCHEMA_VERSION:
                raise StoreError(
                    f"{path}: schema version {schema} is not supported by this berth "
                    f"(expects {SCHEMA_VERSION})"
                )
            revision = conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()
        except BaseException:
            conn.close()
            raise
        return conn, int(revision[0])

    # -- reads ---------------------------------------------------------------------------

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreError("store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_threads, self._in_read_txn, fn)

    def _in_read_txn(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect(self.path, cache_kib=READER_CACHE_KIB)
            with self._readers_lock:
                self._readers.append(conn)
        conn.execute("BEGIN")  # one snapshot for everything fn reads
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    @staticmethod
    def _meta(conn: sqlite3.Connection) -> tuple[int, int]:
        rows = dict(
            conn.execute("SELECT key, value FROM meta WHERE key IN ('revision', 'compacted')")
        )
        return rows["revision"], rows["compacted"]

    async def current_revision(self) -> int:
        return self._revision

    async def get(self, key: str) -> KeyValue | None:
        return await self._read(lambda conn: self._head(conn, key)[1])

    @staticmethod
    def _head(conn: sqlite3.Connection, key: str) -> tuple[int, KeyValue | None]:
        """The id of the key's newest row (0 if none) and its current value (None if the
        key does not exist now)."""
        row = conn.execute(
            "SELECT id, deleted, create_revision, value FROM log WHERE name = ? "
            "ORDER BY id DESC LIMIT 1",
            (key,),
        ).fetchone()
        if row is None:
            return 0, None
        return row[0], None if row[1] else KeyValue(key, row[3], row[2], row[0])

    async def list(
        self, prefix: str, *, revision: int = 0, limit: int = 0, start_after: str = ""
    ) -> ListResult:
        def read(conn: sqlite3.Connection) -> ListResult:
            current, compacted = self._meta(conn)
            at = current if revision == 0 else revision
            if at < compacted:
                raise Compacted(at, compacted)
            if at > current:
                raise FutureRevision(at, current)
            params: builtins.list[Any] = []
            where = _range_clause(prefix, params)
            if start_after:
                where += " AND name > ?"
                params.append(start_after)
            params.append(at)
            # Only fixed clause text is formatted in; every value is a bound parameter.
            sql = (
                "SELECT l.name, l.value, l.create_revision, l.id FROM log l JOIN "  # noqa: S608
                f"(SELECT MAX(id) AS id FROM log WHERE {where} AND id <= ? GROUP BY name) m "
                "ON l.id = m.id WHERE l.deleted = 0 ORDER BY l.name"
            )
            if limit:
                sql += " LIMIT ?"
                params.append(limit + 1)
            items = [KeyValue(*row) for row in conn.execute(sql, params)]
            more = bool(limit) and len(items) > limit
            return ListResult(items=items[:limit] if more else items, revision=at, more=more)

        return await self._read(read)

    # -- watch ---------------------------------------------------------------------------

    def watch(self, prefix: str, *, revision: int) -> Watch:
        return LogWatch(
            prefix=prefix,
            revision=revision,
            read_history=self._read_history,
            broadcaster=self._broadcaster,
        )

    async def _read_history(self, prefix: str, after: int, limit: int) -> builtins.list[Event]:
        def read(conn: sqlite3.Connection) -> builtins.list[Event]:
            _, compacted = self._meta(conn)
            if after < compacted:
                raise Compacted(after, compacted)
            params: builtins.list[Any] = [after]
            where = _range_clause(prefix, params)
            # Only fixed clause text is formatted in; every value is a bound parameter.
            sql = (
                "SELECT id, name, created, deleted, create_revision, prev_revision, value, "  # noqa: S608
                f"old_value FROM log WHERE id > ? AND {where} ORDER BY id"
            )
            if limit:
                sql += " LIMIT ?"
                params.append(limit)
            return [_event(row) for row in conn.execute(sql, params)]

        return await self._read(read)

    # -- writes --------------------------------------------------------------------------

    async def create(self, key: str, value: bytes, *, ttl: int = 0) -> KeyValue:
        return await self._submit("create", key, value, 0, ttl)

    async def update(
        self, key: str, value: bytes, *, expected_revision: int, ttl: int = 0
    ) -> KeyValue:
        return await self._submit("update", key, value, expected_revision, ttl)

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        return await self._submit("delete", key, b"", expected_revision)

    async def _submit(
        self,
        kind: Literal["create", "update", "delete", "expire"],
        key: str,
        value: bytes,
        expected: int,
        ttl: int = 0,
    ) -> KeyValue:
        if self._closed:
            raise StoreError("store is closed")
        future: asyncio.Future[KeyValue] = asyncio.get_running_loop().create_future()
        deadline = time.time() + ttl if ttl > 0 else 0.0
        self._queue.put_nowait(_Write(kind, key, value, expected, future, deadline))
        # A caller cancelled before its batch starts is dropped from it; one cancelled while
        # the batch is being committed may still have been written (as with any database).
        return await future

    def _writer_stopped(self, task: asyncio.Task[None]) -> None:
        """If the writer dies (a bug, or its loop shutting down), fail what is still queued
        and every later write, instead of leaving callers waiting forever."""
        if task.cancelled() or task.exception() is not None:
            self._closed = True
            reason = "cancelled" if task.cancelled() else repr(task.exception())
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if item is not None and not item.future.done():
                    item.future.set_exception(StoreError(f"store writer stopped: {reason}"))

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await self._queue.get()
            if item is None:
                return
            if isinstance(item, _Compact):
                await self._run_compact(item)
                continue
            batch = [item]
            pending: _Compact | None = None
            stop = False
            while len(batch) < self._max_batch and not self._queue.empty():
                more = self._queue.get_nowait()
                if isinstance(more, _Write):
                    batch.append(more)
                    continue
                pending, stop = (more, False) if more is not None else (None, True)
                break
            batch = [write for write in batch if not write.future.cancelled()]
            try:
                outcomes = await loop.run_in_executor(self._write_thread, self._apply, batch)
            except BaseException as exc:  # the whole transaction failed: fail every write
                for write in batch:
                    if not write.future.done():
                        write.future.set_exception(
                            StoreError(f"write to {self.path} failed: {exc}")
                        )
                if not isinstance(exc, Exception):
                    raise
            else:
                events = [o[1] for o in outcomes if not isinstance(o, BaseException)]
                if events:
                    self._revision = events[-1].kv.mod_revision
                # Writers are answered before watchers are offered the events: both are only
                # woken here and run later in that order, so a writer's code after its write
                # runs before any watcher sees it. The API server's create handler thus hands
                # its object to the watch hub in time, which then need not decode the bytes.
                for write, outcome in zip(batch, outcomes, strict=True):
                    if write.deadline and not isinstance(outcome, BaseException):
                        # Lowered once committed, on this loop: a sweep that reset it before
                        # now either read the row or sees this (see expire_due).
                        self._next_expiry = min(self._next_expiry, write.deadline)
                    if write.future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        write.future.set_exception(outcome)
                    else:
                        write.future.set_result(outcome[0])
                if events:
                    self._broadcaster.publish(events)
            if pending is not None:
                await self._run_compact(pending)
            if stop:
                return

    def _apply(self, batch: builtins.list[_Write]) -> builtins.list[_Outcome]:
        """Writer thread: apply a batch in one transaction (one fsync)."""
        if not batch:
            return []
        conn = self._writer_conn
        start = self._next_revision
        outcomes: builtins.list[_Outcome] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for write in batch:
                try:
                    outcomes.append(self._apply_one(conn, write))
                except (UnicodeEncodeError, sqlite3.IntegrityError, sqlite3.InterfaceError) as exc:
                    # Rejected at bind time or by a constraint: the statement did nothing and
                    # the transaction goes on for the other writes in the batch.
                    outcomes.append(StoreError(f"cannot write {write.key!r}: {exc}"))
            if self._next_revision != start:
                conn.execute(
                    "UPDATE meta SET value = ? WHERE key = 'revision'", (self._next_revision,)
                )
            conn.execute("COMMIT")
        except BaseException:
            self._next_revision = start
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return outcomes

    def _apply_one(self, conn: sqlite3.Connection, write: _Write) -> _Outcome:
        head, current = self._head(conn, write.key)
        rev = self._next_revision + 1
        row: _Row
        if write.kind == "expire":
            # The ttl set by revision ``expected`` ran out: delete the key if that is still
            # its version. Either way the deadline is done with.
            conn.execute(
                "DELETE FROM expiry WHERE name = ? AND revision = ?", (write.key, write.expected)
            )
            if current is None:
                return KeyNotFound(write.key)
            if current.mod_revision != write.expected:
                return Conflict(write.key, current)
        if write.kind == "create":
            if current is not None:
                return KeyExists(write.key)
            kv = KeyValue(write.key, write.value, rev, rev)
            row = (rev, write.key, 1, 0, rev, head, write.value, None)
            event = Event(EventType.PUT, kv, None)
        else:
            if current is None:
                return KeyNotFound(write.key)
            if (write.expected or write.kind == "update") and (
                current.mod_revision != write.expected
            ):
                return Conflict(write.key, current)
            deleted = write.kind in ("delete", "expire")
            value = current.value if deleted else write.value
            kv = KeyValue(write.key, value, current.create_revision, rev)
            row = (rev, write.key, 0, int(deleted), kv.create_revision, current.mod_revision,
                   value, current.value)  # fmt: skip
            event = Event(EventType.DELETE if deleted else EventType.PUT, kv, current)
        conn.execute("INSERT INTO log VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
        if write.deadline:
            conn.execute(
                "INSERT OR REPLACE INTO expiry VALUES (?, ?, ?)", (write.key, rev, write.deadline)
            )
        self._next_revision = rev
        return kv, event

    # -- time to live --------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._expiry_interval)
            if time.time() < self._next_expiry:
                continue
            try:
                await self.expire_due(time.time())
            except StoreError as exc:  # close() cancels this task first: not a closed store
                # Nothing is lost: the deadlines stay in the table for the next round.
                log.warning("expiring keys whose ttl passed failed (will retry): %s", exc)

    async def expire_due(self, now: float) -> int:
        """Delete the keys whose ttl ran out by ``now`` (at most :data:`EXPIRE_CHUNK`);
        returns how many were deleted."""
        # Reset before reading: a ttl write racing the read lowers it again (see _submit).
        self._next_expiry = float("inf")

        def read(conn: sqlite3.Connection) -> tuple[builtins.list[tuple[str, int]], float]:
            due = conn.execute(
                "SELECT name, revision FROM expiry WHERE at <= ? ORDER BY at LIMIT ?",
                (now, EXPIRE_CHUNK),
            ).fetchall()
            (earliest,) = conn.execute("SELECT MIN(at) FROM expiry").fetchone()
            return due, float("inf") if earliest is None else float(earliest)

        try:
            due, earliest = await self._read(read)
        except BaseException:
            self._next_expiry = 0.0
            raise
        self._next_expiry = min(self._next_expiry, earliest)
        outcomes = await asyncio.gather(
            *(self._submit("expire", name, b"", revision) for name, revision in due),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(
                outcome, (Conflict, KeyNotFound)
            ):
                self._next_expiry = 0.0
                raise outcome
        return sum(1 for outcome in outcomes if isinstance(outcome, KeyValue))

    # -- compaction ----------------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        if self._closed:
            raise StoreError("store is closed")
        current, compacted = await self._read(self._meta)
        if revision > current:
            raise FutureRevision(revision, current)
        if revision <= compacted:
            return
        loop = asyncio.get_running_loop()
        # Scan from the oldest row, not from the previous compaction point: the version a key
        # had at that point survived it, and may be superseded by now. The first chunk also
        # records the new compaction point, so reads below it fail from then on even while
        # older rows are still being deleted. Each chunk reports the next row id after it,
        # so empty stretches of ids are skipped.
        low = 0
        while low < revision:
            if self._closed:
                raise StoreError("store closed while compacting")
            future: asyncio.Future[int] = loop.create_future()
            high = min(low + COMPACT_CHUNK, revision)
            self._queue.put_nowait(_Compact(low, high, revision, future))
            next_id = await future
            low = max(high, next_id - 1)

    async def _run_compact(self, job: _Compact) -> None:
        loop = asyncio.get_running_loop()
        try:
            next_id = await loop.run_in_executor(self._write_thread, self._compact_chunk, job)
        except Exception as exc:
            job.future.set_exception(exc)
        else:
            job.future.set_result(next_id)

    def _compact_chunk(self, job: _Compact) -> int:
        conn = self._writer_conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "UPDATE meta SET value = MAX(value, ?) WHERE key = 'compacted'", (job.target,)
            )
            conn.execute(
                "DELETE FROM log WHERE id > ? AND id <= ? AND (deleted = 1 OR EXISTS "
                "(SELECT 1 FROM log AS newer WHERE newer.name = log.name "
                "AND newer.id > log.id AND newer.id <= ?))",
                (job.low, job.high, job.target),
            )
            (next_id,) = conn.execute(
                "SELECT IFNULL(MIN(id), ?) FROM log WHERE id > ?", (job.target + 1, job.high)
            ).fetchone()
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return int(next_id)

    # -- lifecycle -----------------------------------------------------------------------

    async def close(self) -> None:
        """Finish queued writes, end watches, close the database and release the lock."""
        if self._released:
            return
        self._released = True
        self._closed = True
        self._sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sweeper
        if not self._writer_task.done():
            self._queue.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer_task
        self._broadcaster.close()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._shutdown)

    def _shutdown(self) -> None:
        self._write_thread.shutdown(wait=True)
        self._read_threads.shutdown(wait=True)
        for conn in self._readers:
            conn.close()
        with contextlib.suppress(sqlite3.Error):
            self._writer_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._writer_conn.close()
        self._lock.release()
