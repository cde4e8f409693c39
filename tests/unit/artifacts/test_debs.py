"""The .deb cache shared by every apply on the machine (parallel applies, test workers)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from provisioner.artifacts import debs
from provisioner.artifacts.debs import Candidate, DebCache
from provisioner.errors import OperationError

CANDIDATE = Candidate("tool", "1:2.0-1", "amd64")


def test_a_deb_appears_in_the_cache_only_once_downloaded_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process reading the cache never sees a download under way: apt writes into a
    scratch directory and the finished file is moved into place."""
    cache = DebCache(tmp_path)
    target = tmp_path / CANDIDATE.filename
    seen: list[bool] = []

    def apt(*argv: str, cwd: Path | None = None, options: tuple[str, ...] = ()) -> str:
        assert argv[:2] == ("apt-get", "download")
        assert cwd is not None
        assert cwd != tmp_path
        (cwd / CANDIDATE.filename).write_bytes(b"half")
        seen.append(target.exists())  # what a reader of the cache sees meanwhile
        (cwd / CANDIDATE.filename).write_bytes(b"whole deb")
        return ""

    monkeypatch.setattr(debs, "_apt", apt)
    monkeypatch.setattr(DebCache, "candidate", lambda self, name: CANDIDATE)
    (fetched,) = cache.fetch(["tool"], arch="amd64")
    assert seen == [False]
    assert fetched.source == target
    assert target.read_bytes() == b"whole deb"
    assert [p.name for p in tmp_path.iterdir()] == [CANDIDATE.filename]  # no scratch left


def test_a_download_that_produces_nothing_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(debs, "_apt", lambda *argv, cwd=None, options=(): "")
    monkeypatch.setattr(DebCache, "candidate", lambda self, name: CANDIDATE)
    with pytest.raises(OperationError, match="did not produce"):
        DebCache(tmp_path).fetch(["tool"], arch="amd64")
    assert list(tmp_path.iterdir()) == []


def test_a_debs_digest_is_computed_once_until_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = {data: hashlib.sha256(data).hexdigest() for data in (b"one", b"two", b"3", b"4")}
    hashed: list[bytes] = []
    real = hashlib.sha256

    def counting(*args: Any) -> Any:
        hashed.append(b"".join(args))
        return real(*args)

    monkeypatch.setattr(hashlib, "sha256", counting)
    deb = tmp_path / "a.deb"
    deb.write_bytes(b"one")
    # every host of a run ships the same file: hashed once
    assert [debs._sha256(deb) for _ in range(3)] == [expected[b"one"]] * 3
    assert len(hashed) == 1
    # replaced the way the cache replaces files (a rename), same size and same mtime: new inode
    stamp = deb.stat().st_mtime_ns
    other = tmp_path / "b.deb"
    other.write_bytes(b"two")
    os.utime(other, ns=(stamp, stamp))
    other.replace(deb)
    assert debs._sha256(deb) == expected[b"two"]
    # rewritten in place: another size
    deb.write_bytes(b"3")
    assert debs._sha256(deb) == expected[b"3"]
    # rewritten in place with the same size: another modification time
    deb.write_bytes(b"4")
    os.utime(deb, ns=(stamp + 10**9, stamp + 10**9))
    assert debs._sha256(deb) == expected[b"4"]
    assert len(hashed) == 4
