"""Layer application: whiteouts, opaque directories, and no escape from the root."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import pytest

from berth.runtime.digest import sha256_digest
from berth.runtime.errors import UnsafeLayer
from berth.runtime.unpack import apply_layer, resolve_in_root
from tests.unit.runtime.helpers import Entry, make_tar


@pytest.fixture
def jail(tmp_path: Path) -> Path:
    """A root inside a directory we can inspect for escapes (``tmp_path/outside``)."""
    (tmp_path / "outside").mkdir()
    root = tmp_path / "root"
    root.mkdir()
    return root


def _apply(root: Path, *entries: Entry, gz: bool = False) -> str:
    raw = make_tar(*entries)
    data = gzip.compress(raw) if gz else raw
    diff_id = apply_layer(root, io.BytesIO(data))
    assert diff_id == sha256_digest(raw), "diff id is the digest of the uncompressed tar"
    return diff_id


def test_files_dirs_links_and_modes_are_created(jail: Path) -> None:
    _apply(
        jail,
        Entry("bin", "dir", mode=0o755),
        Entry("bin/busybox", data=b"ELF", mode=0o755),
        Entry("bin/sh", "symlink", target="busybox"),
        Entry("bin/ls", "hardlink", target="bin/busybox"),
        Entry("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n"),
        Entry("run/fifo", "fifo", mode=0o600),
        gz=True,
    )
    assert (jail / "bin/busybox").read_bytes() == b"ELF"
    assert os.stat(jail / "bin/busybox").st_mode & 0o777 == 0o755
    assert os.readlink(jail / "bin/sh") == "busybox"
    assert os.stat(jail / "bin/ls").st_ino == os.stat(jail / "bin/busybox").st_ino
    assert (jail / "etc/passwd").read_text().startswith("root:")
    assert (jail / "run/fifo").is_fifo()


def test_whiteout_removes_lower_file_and_directory(jail: Path) -> None:
    _apply(jail, Entry("a/keep"), Entry("a/gone"), Entry("b/deep/file"))
    _apply(jail, Entry("a/.wh.gone"), Entry(".wh.b"))
    assert (jail / "a/keep").exists()
    assert not (jail / "a/gone").exists()
    assert not (jail / "b").exists()
    assert not (jail / "a/.wh.gone").exists(), "whiteout markers are never materialised"


def test_opaque_directory_hides_lower_content_but_keeps_its_own_layer(jail: Path) -> None:
    _apply(jail, Entry("etc/app/old.conf"), Entry("etc/app/sub/x"), Entry("etc/other"))
    _apply(
        jail,
        Entry("etc/app", "dir", mode=0o755),
        Entry("etc/app/new.conf", data=b"new"),
        Entry("etc/app/.wh..wh..opq"),
    )
    assert sorted(p.name for p in (jail / "etc/app").iterdir()) == ["new.conf"]
    assert (jail / "etc/other").exists(), "opaque applies to its own directory only"


def test_a_later_layer_replaces_a_file_with_a_directory_and_back(jail: Path) -> None:
    _apply(jail, Entry("x", data=b"file"))
    _apply(jail, Entry("x", "dir", mode=0o755), Entry("x/y", data=b"in dir"))
    assert (jail / "x/y").read_bytes() == b"in dir"
    _apply(jail, Entry("x", data=b"file again"))
    assert (jail / "x").read_bytes() == b"file again"


@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "/../escape", "./a/../../x"])
def test_dotdot_entries_are_rejected(jail: Path, name: str) -> None:
    with pytest.raises(UnsafeLayer, match="path traversal"):
        _apply(jail, Entry(name, data=b"pwned"))
    assert list((jail.parent / "outside").iterdir()) == []
    assert not (jail.parent / "escape").exists()


@pytest.mark.parametrize("target", ["/", "../../outside", "../outside", "/../../outside"])
def test_writes_through_a_symlink_stay_inside_the_root(jail: Path, target: str) -> None:
    outside = jail.parent / "outside"
    _apply(jail, Entry("evil", "symlink", target=target), Entry("evil/pwned", data=b"x"))
    assert list(outside.iterdir()) == [], "nothing may be written outside the root"
    assert resolve_in_root(jail, ("evil", "pwned")).is_relative_to(jail)
    assert (resolve_in_root(jail, ("evil",), follow_last=True) / "pwned").read_bytes() == b"x"


def test_a_symlink_chain_cannot_climb_out(jail: Path) -> None:
    outside = jail.parent / "outside"
    _apply(
        jail,
        Entry("a", "symlink", target="b/../../.."),
        Entry("b", "dir", mode=0o755),
        Entry("a/etc/shadow", data=b"x"),
    )
    assert list(outside.iterdir()) == []
    assert not (jail.parent / "etc").exists()
    assert (jail / "etc/shadow").read_bytes() == b"x"


def test_hardlink_to_outside_is_confined_and_must_exist(jail: Path) -> None:
    secret = jail.parent / "outside" / "secret"
    secret.write_text("host secret")
    with pytest.raises(UnsafeLayer, match="path traversal"):
        _apply(jail, Entry("link", "hardlink", target="../outside/secret"))
    with pytest.raises(UnsafeLayer, match="hard link"):
        _apply(jail, Entry("up", "symlink", target="/.."), Entry("l2", "hardlink", target="up/x"))
    assert secret.stat().st_nlink == 1


def test_symlink_replacing_a_directory_does_not_delete_through_it(jail: Path) -> None:
    keep = jail.parent / "outside" / "keep"
    keep.write_text("k")
    _apply(jail, Entry("d", "symlink", target=str(jail.parent / "outside")))
    _apply(jail, Entry(".wh.d"))
    assert keep.exists(), "removing a symlink never removes its target"


def test_corrupt_gzip_is_reported_as_an_unreadable_layer(jail: Path) -> None:
    broken = gzip.compress(make_tar(Entry("f", data=b"x" * 1000)))[:-40]
    with pytest.raises(UnsafeLayer, match="not a readable tar"):
        apply_layer(jail, io.BytesIO(broken))
