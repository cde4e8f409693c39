"""The one mountinfo parser (berth.runtime.mountinfo): field 5, the kernel's octal escapes
decoded, stacked mounts kept, and the sandbox's and netns' checks see escaped paths right."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from berth.runtime import sandbox
from berth.runtime.mountinfo import mount_points, parse_mount_points, unescape

TABLE = (
    "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
    "30 22 0:40 / /var/lib/berth/pods/a\\040b rw shared:2 - tmpfs tmpfs rw\n"
    "31 30 0:41 / /var/lib/berth/pods/a\\040b rw shared:3 - tmpfs tmpfs rw\n"
    "32 22 0:42 / /x\\134y\\011z\\012 rw - tmpfs tmpfs rw\n"
    "torn\n"
)


def test_mount_points_are_field_five_decoded_in_order_with_stacked_mounts_repeated() -> None:
    assert parse_mount_points(TABLE) == [
        "/",
        "/var/lib/berth/pods/a b",
        "/var/lib/berth/pods/a b",
        "/x\\y\tz\n",
    ]


def test_unescape_leaves_a_lone_backslash_and_short_escapes_alone() -> None:
    assert unescape("/plain") == "/plain"
    assert unescape("/a\\04") == "/a\\04"
    assert unescape("/a\\x41") == "/a\\x41"


def test_an_unreadable_table_is_no_mounts(tmp_path: Path) -> None:
    assert mount_points(tmp_path / "missing") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
def test_a_real_mount_with_a_space_is_seen_by_the_sandbox(tmp_path: Path) -> None:
    # The sandbox read field 5 raw before: a volume directory with a space in its path was
    # never seen as mounted, so its teardown left the tmpfs behind.
    target = tmp_path / "pod dir" / "vol"
    target.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(target)], check=True)
    try:
        assert str(target) in mount_points()
        assert sandbox._is_mountpoint(target)
        assert target in sandbox._mounts_under(tmp_path / "pod dir")
    finally:
        subprocess.run(["umount", str(target)], check=True)
    assert not sandbox._is_mountpoint(target)
