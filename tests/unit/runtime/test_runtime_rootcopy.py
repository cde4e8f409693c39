"""The in-process root file system copy: what ``cp -a`` kept, kept; nothing outside written."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from berth.runtime import rootcopy
from berth.runtime.errors import ContainerError
from berth.runtime.rootcopy import CopyError, SnapshotListing, copy_root, list_snapshot
from berth.runtime.runc import copy_tree

T1, T2 = 1_600_000_000_123_456_789, 1_700_000_000_987_654_321


def _tree(root: Path) -> Path:
    """A snapshot with every kind the unpacker makes and the metadata cp -a kept."""
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "tmp").mkdir()
    (root / "ro").mkdir()
    (root / "bin/busybox").write_bytes(b"\x7fELF" + bytes(range(256)) * 64)
    os.chmod(root / "bin/busybox", 0o4755)  # setuid
    (root / "bin/sh").symlink_to("busybox")
    (root / "bin/abs").symlink_to("/etc/passwd")
    os.link(root / "bin/busybox", root / "bin/ls")  # a hard link inside the tree
    (root / "etc/passwd").write_text("root:x:0:0::/:/bin/sh\napp:x:1234:2345::/:/bin/sh\n")
    (root / "etc/shadow").write_text("secret\n")
    os.chown(root / "etc/shadow", 0, 42)
    os.chmod(root / "etc/shadow", 0o640)
    (root / "etc/app.conf").write_text("owned by app\n")
    os.chown(root / "etc/app.conf", 1234, 2345)
    os.chown(root / "bin/sh", 1234, 2345, follow_symlinks=False)
    (root / "empty").write_bytes(b"")
    os.mkfifo(root / "tmp/fifo", 0o620)
    os.setxattr(root / "etc/app.conf", "user.origin", b"layer-3")
    os.chmod(root / "tmp", 0o1777)
    (root / "ro/file").write_text("x\n")
    os.chmod(root / "ro", 0o555)
    os.chown(root / "ro", 1234, 2345)
    for path in sorted(root.rglob("*"), reverse=True):
        os.utime(path, ns=(T1, T2), follow_symlinks=False)
    os.utime(root, ns=(T1, T2))
    return root


def _describe(root: Path) -> dict[str, Any]:
    """Everything cp -a preserves, per name (hard links as groups of names)."""
    out: dict[str, Any] = {}
    inodes: dict[int, list[str]] = {}
    paths = [root, *sorted(root.rglob("*"))]
    stats = {path: os.lstat(path) for path in paths}  # before any read moves an atime
    for path in paths:
        name = str(path.relative_to(root))
        st = stats[path]
        doc: dict[str, Any] = {
            "mode": oct(st.st_mode),
            "owner": (st.st_uid, st.st_gid),
            "mtime": st.st_mtime_ns,
            "xattrs": sorted(
                (n, os.getxattr(path, n, follow_symlinks=False))
                for n in os.listxattr(path, follow_symlinks=False)
            ),
        }
        if stat.S_ISLNK(st.st_mode):
            doc["target"] = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            doc["sha"] = hashlib.sha256(path.read_bytes()).hexdigest()
            inodes.setdefault(st.st_ino, []).append(name)
        if not stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode):
            doc["atime"] = st.st_atime_ns
        out[name] = doc
    out["<hard links>"] = sorted(names for names in inodes.values() if len(names) > 1)
    return out


def test_the_copy_keeps_what_cp_a_keeps(tmp_path: Path) -> None:
    snapshot = _tree(tmp_path / "snap")
    entries = list_snapshot(snapshot)  # before cp reads the files (and so moves their atimes)
    subprocess.run(["cp", "-a", f"{snapshot}/.", str(tmp_path / "by-cp")], check=True)
    copy_root(snapshot, tmp_path / "ours", entries, hardlink=False)
    assert _describe(tmp_path / "ours") == _describe(tmp_path / "by-cp")
    # and it is a copy: the container writing its root never reaches the snapshot
    ours = tmp_path / "ours"
    assert os.stat(ours / "bin/busybox").st_ino != os.stat(snapshot / "bin/busybox").st_ino
    (ours / "etc/passwd").write_text("changed\n")
    assert (snapshot / "etc/passwd").read_text().startswith("root:")
    assert os.stat(ours / "bin/busybox").st_mode & stat.S_ISUID


def test_a_read_only_root_is_hard_linked_like_cp_al(tmp_path: Path) -> None:
    snapshot = _tree(tmp_path / "snap")
    copy_root(snapshot, tmp_path / "ro-root", list_snapshot(snapshot), hardlink=True)
    for name in ("bin/busybox", "bin/ls", "etc/shadow", "bin/sh", "tmp/fifo"):
        a, b = os.lstat(snapshot / name), os.lstat(tmp_path / "ro-root" / name)
        assert a.st_ino == b.st_ino, name
    assert os.lstat(tmp_path / "ro-root/ro").st_ino != os.lstat(snapshot / "ro").st_ino
    assert stat.S_IMODE(os.lstat(tmp_path / "ro-root/ro").st_mode) == 0o555


def test_symlinks_of_the_image_are_copied_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "host-dir"
    outside.mkdir()
    (outside / "keep").write_text("host file\n")
    snapshot = tmp_path / "snap"
    snapshot.mkdir()
    (snapshot / "escape").symlink_to(outside)
    (snapshot / "up").symlink_to("../../host-dir/keep")
    (snapshot / "etc").mkdir()
    (snapshot / "etc/passwd").symlink_to("/etc/passwd")
    entries = list_snapshot(snapshot)
    assert sorted(e.path for e in entries) == ["", "escape", "etc", "etc/passwd", "up"]
    copy_root(snapshot, tmp_path / "copy", entries, hardlink=False)
    assert os.readlink(tmp_path / "copy/escape") == str(outside)
    assert os.readlink(tmp_path / "copy/etc/passwd") == "/etc/passwd"
    assert sorted(p.name for p in outside.iterdir()) == ["keep"]
    assert (outside / "keep").read_text() == "host file\n"


def test_a_name_that_exists_is_never_written_through(tmp_path: Path) -> None:
    """Every entry is created new (O_EXCL): a target that exists (with a planted symlink
    in it) fails the copy instead of being written through."""
    snapshot = _tree(tmp_path / "snap")
    target = tmp_path / "copy"
    target.mkdir()
    (tmp_path / "host-etc").mkdir()
    (target / "etc").symlink_to(tmp_path / "host-etc")
    with pytest.raises(CopyError, match="exists"):
        copy_root(snapshot, target, list_snapshot(snapshot), hardlink=False)
    # through the runtime's helper: a ContainerError naming what failed
    with pytest.raises(ContainerError, match="copying the image root file system"):
        copy_tree(snapshot, target, hardlink=False)
    assert list((tmp_path / "host-etc").iterdir()) == []


def test_device_nodes_and_sockets_are_not_copied(tmp_path: Path) -> None:
    import socket  # noqa: PLC0415

    snapshot = tmp_path / "snap"
    snapshot.mkdir()
    os.mknod(snapshot / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(snapshot / "sock"))
    (snapshot / "file").write_text("x")
    copy_root(snapshot, tmp_path / "copy", list_snapshot(snapshot), hardlink=False)
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == ["file"]


def test_file_data_falls_back_to_sendfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def no_copy_file_range(*args: object) -> int:
        calls.append(1)
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", no_copy_file_range)
    snapshot = _tree(tmp_path / "snap")
    copy_root(snapshot, tmp_path / "copy", list_snapshot(snapshot), hardlink=False)
    assert calls
    assert (tmp_path / "copy/bin/busybox").read_bytes() == (snapshot / "bin/busybox").read_bytes()


def test_a_listing_is_read_once_per_snapshot_and_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[Path] = []
    real = rootcopy.list_snapshot

    def counting(root: Path) -> list[rootcopy.Entry]:
        reads.append(root)
        return real(root)

    monkeypatch.setattr(rootcopy, "list_snapshot", counting)
    first = _tree(tmp_path / "a")
    listings = SnapshotListing(limit=40)
    for n in range(3):
        copy_tree(first, tmp_path / f"copy{n}", hardlink=False, listings=listings)
    assert reads == [first]
    # a snapshot removed and unpacked again under the same name is listed again
    subprocess.run(["rm", "-rf", str(first)], check=True)
    (first / "only").mkdir(parents=True)
    copy_tree(first, tmp_path / "copy-new", hardlink=False, listings=listings)
    assert reads == [first, first]
    assert sorted(p.name for p in (tmp_path / "copy-new").iterdir()) == ["only"]
    # bounded: a snapshot over the limit is listed per copy, never kept
    big = tmp_path / "big"
    big.mkdir()
    for i in range(50):
        (big / f"f{i}").write_text(str(i))
    copy_tree(big, tmp_path / "big1", hardlink=False, listings=listings)
    copy_tree(big, tmp_path / "big2", hardlink=False, listings=listings)
    assert reads.count(big) == 2
    listings.forget()
    copy_tree(first, tmp_path / "copy-after-forget", hardlink=False, listings=listings)
    assert reads.count(first) == 3


def test_a_missing_snapshot_file_is_a_clear_error(tmp_path: Path) -> None:
    snapshot = _tree(tmp_path / "snap")
    entries = list_snapshot(snapshot)
    (snapshot / "etc/passwd").unlink()
    with pytest.raises(CopyError, match="etc/passwd"):
        copy_root(snapshot, tmp_path / "copy", entries, hardlink=False)
