"""Consistent snapshots of the datastore, for backups and before upgrades.

* SQLite: :func:`save_sqlite` copies the database with SQLite's online backup API, which
  yields one consistent revision even while a :class:`~berth.store.sqlite.SqliteStore` keeps
  writing to it. :func:`restore_sqlite` puts a snapshot back in place of a database that is
  *not* open (it takes the store's single-writer lock to be sure) and removes the old WAL.
* etcd: :func:`save_etcd` streams ``/v3/maintenance/snapshot`` from one member and checks the
  SHA-256 etcd appends to it. The file is what ``etcdctl snapshot save`` writes, so it is
  restored with ``etcdctl snapshot restore`` (Debian package ``etcd-client``) per member; that
  is a cluster operation, not done here.

Every snapshot is written to a temporary file next to ``dest``, fsynced, made 0600 (it holds
Secrets) and renamed into place, so a crash never leaves a half-written snapshot behind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from berth.store.etcd import EtcdStore
from berth.store.interface import StoreError
from berth.store.sqlite import SCHEMA_VERSION, WriterLock

SNAPSHOT_MODE = 0o600


class SnapshotError(StoreError):
    """A snapshot could not be taken, verified or restored."""


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    path: Path
    revision: int  # SQLite: exactly the snapshot's revision; etcd: a lower bound
    size: int
    sha256: str


@contextlib.contextmanager
def _atomic_target(dest: Path) -> Iterator[Path]:
    """A temp path next to ``dest`` that becomes ``dest`` (fsynced, 0600) on success."""
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        tmp.chmod(SNAPSHOT_MODE)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(dest)
        dir_fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_sqlite(path: Path) -> int:
    """Verify ``path`` is an intact berth database; return its revision."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise SnapshotError(f"{path}: cannot open as SQLite: {exc}") from exc
    try:
        if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise SnapshotError(f"{path}: SQLite integrity check failed")
        meta = dict(conn.execute("SELECT key, value FROM meta"))
    except sqlite3.Error as exc:
        raise SnapshotError(f"{path}: not a berth datastore: {exc}") from exc
    finally:
        conn.close()
    if meta.get("schema") != SCHEMA_VERSION:
        raise SnapshotError(
            f"{path}: schema version {meta.get('schema')} (this berth reads {SCHEMA_VERSION})"
        )
    return int(meta["revision"])


def _save_sqlite(db_path: Path, dest: Path) -> SnapshotInfo:
    if not db_path.is_file():
        raise SnapshotError(f"{db_path}: no such database")
    with _atomic_target(dest) as tmp:
        source = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        target = sqlite3.connect(tmp)
        try:
            source.backup(target)  # one read transaction: a consistent revision
            target.execute("PRAGMA journal_mode = DELETE")  # a single self-contained file
        finally:
            target.close()
            source.close()
        revision = _check_sqlite(tmp)
    return SnapshotInfo(dest, revision, dest.stat().st_size, _sha256(dest))


async def save_sqlite(
    db_path: str | os.PathLike[str], dest: str | os.PathLike[str]
) -> SnapshotInfo:
    """Snapshot the SQLite database at ``db_path`` into ``dest`` (safe while it is in use)."""
    return await asyncio.to_thread(_save_sqlite, Path(db_path), Path(dest))


def restore_sqlite(
    snapshot: str | os.PathLike[str], db_path: str | os.PathLike[str]
) -> SnapshotInfo:
    """Replace the database at ``db_path`` with ``snapshot``. The database must not be open
    (stop the API server first): this takes its single-writer lock and fails otherwise."""
    src, db = Path(snapshot), Path(db_path)
    revision = _check_sqlite(src)
    lock = WriterLock(db)
    try:
        with _atomic_target(db) as tmp:
            conn = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
            target = sqlite3.connect(tmp)
            try:
                conn.backup(target)
            finally:
                target.close()
                conn.close()
            # The old database's WAL and index belong to the old file: drop them before the
            # new file takes its name, or SQLite would replay them into it.
            for suffix in ("-wal", "-shm"):
                db.with_name(db.name + suffix).unlink(missing_ok=True)
    finally:
        lock.release()
    return SnapshotInfo(db, revision, db.stat().st_size, _sha256(db))


async def save_etcd(store: EtcdStore, dest: str | os.PathLike[str]) -> SnapshotInfo:
    """Stream a snapshot of etcd (from the store's first reachable endpoint) into ``dest``."""
    target = Path(dest)
    revision = await store.current_revision()
    chunks: list[bytes] = []
    async with store.raw_stream("/v3/maintenance/snapshot", {}) as messages:
        async for message in messages:
            if "error" in message:
                raise SnapshotError(f"etcd snapshot failed: {message['error']}")
            chunks.append(base64.b64decode(message.get("result", {}).get("blob", "")))
    data = b"".join(chunks)
    body, checksum = data[:-32], data[-32:]
    if len(data) <= 32 or hashlib.sha256(body).digest() != checksum:
        raise SnapshotError("etcd snapshot is truncated or corrupt (SHA-256 mismatch)")

    def write() -> None:
        with _atomic_target(target) as tmp:
            tmp.write_bytes(data)

    await asyncio.to_thread(write)
    return SnapshotInfo(target, revision, len(data), hashlib.sha256(data).hexdigest())


__all__ = [
    "SnapshotError",
    "SnapshotInfo",
    "restore_sqlite",
    "save_etcd",
    "save_sqlite",
]
