"""``berth lab up --release``: each host's Debian release."""

from __future__ import annotations

import pytest

from provisioner.errors import LabError
from provisioner.lab.rootfs import default_recipe, parse_releases


def test_default_one_release_and_counts_in_host_order() -> None:
    assert parse_releases(None, 2) == ["bookworm", "bookworm"]
    assert parse_releases("trixie", 3) == ["trixie"] * 3
    assert parse_releases("bookworm:2,trixie:1", 3) == ["bookworm", "bookworm", "trixie"]
    assert parse_releases("trixie:1,bookworm:1", 2) == ["trixie", "bookworm"]


@pytest.mark.parametrize(
    ("text", "count", "says"),
    [
        ("bullseye", 1, "unknown release 'bullseye'"),
        ("bookworm:2,trixie:1", 2, "names 3 host(s), but the lab has 2"),
        ("bookworm:0", 0, "'0' is not a host count"),
        ("bookworm,trixie", 2, "give a count for each release"),
    ],
)
def test_bad_release_lists_are_refused_saying_why(text: str, count: int, says: str) -> None:
    with pytest.raises(LabError) as caught:
        parse_releases(text, count)
    assert says in caught.value.message


def test_each_release_has_its_own_cached_rootfs_from_the_same_mirror() -> None:
    bookworm, trixie = default_recipe("bookworm"), default_recipe("trixie")
    assert bookworm.mirror == trixie.mirror
    assert bookworm.key() != trixie.key()
