"""The dependency walk over this machine's apt: one recursive ``apt-cache depends`` run for the
whole tree (each run loads apt's whole cache), shared by every host planned at once, with the same
answer as walking one package at a time."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from provisioner.artifacts import debs, depends
from provisioner.artifacts.debs import DebCache

# name -> dependency groups (alternatives), as apt-cache would print them
GRAPH: dict[str, list[tuple[str, ...]]] = {
    "runc": [("libc6",), ("libseccomp2",)],
    "nftables": [("libnftables1",), ("libedit2",)],
    "libnftables1": [("libmnl0",), ("libjansson4",), ("libc6",)],
    "libedit2": [("libbsd0",), ("libtinfo6",)],
    "libbsd0": [("libmd0",)],
    "libseccomp2": [("libc6",)],
    "libmnl0": [],
    "libjansson4": [],
    "libtinfo6": [],
    "libmd0": [],
    "libc6": [("libgcc-s1",)],
    "libgcc-s1": [],
}


def _apt_cache(argv: Sequence[str], **_: Any) -> subprocess.CompletedProcess[str]:
    names = [a for a in argv[1:] if not a.startswith("-") and a != "depends"]
    if "--recurse" in argv:  # every package reached, each printed once
        reached: list[str] = []
        todo = list(names)
        while todo:
            name = todo.pop(0)
            if name not in reached:
                reached.append(name)
                todo += [alt for group in GRAPH[name] for alt in group]
        names = reached
    out = []
    for name in names:
        out.append(name)
        for group in GRAPH[name]:
            for index, alt in enumerate(group):
                bar = "|" if index < len(group) - 1 else " "
                out.append(f" {bar}Depends: {alt}")
    return subprocess.CompletedProcess(list(argv), 0, "\n".join(out) + "\n", "")


@pytest.fixture
def apt(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    runs: list[list[str]] = []

    def run(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        runs.append(list(argv))
        return _apt_cache(argv, **kwargs)

    monkeypatch.setattr("provisioner.artifacts.depends.subprocess.run", run)
    monkeypatch.setattr(depends, "_known", {})
    return runs


def test_one_apt_cache_run_for_the_tree_and_the_same_answer(apt: list[list[str]]) -> None:
    installed: dict[str, str | None] = {"libc6": "2.36"}
    wanted = ["runc", "nftables"]
    batched = depends.missing(wanted, installed)
    one_by_one = depends.missing(wanted, installed, depends=lambda n: GRAPH[n])
    assert batched == one_by_one
    assert batched == ["runc", "nftables", "libseccomp2", "libnftables1", "libedit2", "libmnl0",
                       "libjansson4", "libbsd0", "libtinfo6", "libmd0"]  # fmt: skip
    # one recursive run; it used to take one per level of the tree (four here)
    assert len(apt) == 1
    assert "--recurse" in apt[0]
    assert depends.missing(wanted, installed) == batched
    assert len(apt) == 1, "known dependencies are not asked again"


def test_hosts_planned_at_once_share_one_walk(apt: list[list[str]]) -> None:
    results: list[list[str]] = []
    threads = [
        threading.Thread(target=lambda: results.append(depends.missing(["nftables"], {})))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({tuple(r) for r in results}) == 1
    assert len(apt) == 1


def test_the_tree_is_memoised_with_apt_lists_so_a_later_run_asks_apt_nothing(
    apt: list[list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recursive apt-cache run was on the critical path of every cold plan: DebCache keeps
    the closure beside apt's lists, and a later process (nothing known in memory) walks it for
    another host with the answer apt itself would give, without running apt-cache."""
    monkeypatch.setattr(debs, "_apt_generation", lambda stamp=None: "lists-1")
    cache = DebCache(tmp_path / "debs")  # this machine's release: no private apt
    first = cache.resolve(["runc", "nftables"], {"libc6": "2.36"})
    assert first == depends.missing(
        ["runc", "nftables"], {"libc6": "2.36"}, depends=GRAPH.__getitem__
    )
    assert len(apt) == 1
    monkeypatch.setattr(depends, "_known", {})  # a later process
    other_host: dict[str, str | None] = {"libedit2": "3.1"}
    later = DebCache(tmp_path / "debs").resolve(["nftables", "runc"], other_host)
    assert later == depends.missing(["nftables", "runc"], other_host, depends=GRAPH.__getitem__)
    assert len(apt) == 1, "served from the memo"
    monkeypatch.setattr(debs, "_apt_generation", lambda stamp=None: "lists-2")  # apt-get update
    DebCache(tmp_path / "debs").resolve(["runc"], {})
    assert len(apt) == 2, "new lists, asked again"


def test_an_apt_get_update_is_seen_without_apt_s_binary_cache(tmp_path: Path) -> None:
    """Debian's container images switch pkgcache.bin off: the memo's generation must then come
    from the lists themselves, or a dependency tree cached before `apt-get update` would be
    served for ever."""
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "deb.debian.org_dists_bookworm_InRelease").write_text("one")
    (lists / "lock").write_text("")
    before = debs._lists_generation(lists)
    assert debs._lists_generation(lists) == before, "unchanged lists, same generation"
    replaced = lists / "partial-new"
    replaced.write_text("two, longer")
    replaced.replace(lists / "deb.debian.org_dists_bookworm_InRelease")  # how apt lands a list
    assert debs._lists_generation(lists) != before
    assert debs._lists_generation(tmp_path / "absent") == "none"
