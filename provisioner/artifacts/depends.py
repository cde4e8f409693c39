"""Which ``.deb`` files a host needs: the packages asked for and the dependencies it lacks.

A dependency is a group of alternatives (``A | B``). Taking every alternative as required is
wrong: ``init-system-helpers`` would then drag ``usrmerge`` and perl in, which fail to
configure on hosts that have ``usr-is-merged``. So the walk treats a group as satisfied when any
alternative is installed on the host or already chosen, and otherwise ships its first real
package (and walks that package's own dependencies).
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence

from provisioner.errors import OperationError

Group = tuple[str, ...]
"""The alternatives of one dependency (``A | B`` -> ``("A", "B")``)."""


def parse_depends(output: str) -> dict[str, list[Group]]:
    """``apt-cache depends`` output -> Depends/PreDepends groups per package (virtual
    packages, shown as ``<name>``, are dropped from groups)."""
    out: dict[str, list[Group]] = {}
    current: list[Group] | None = None
    pending: list[str] = []
    for line in output.splitlines():
        if line and not line[0].isspace():
            current = out.setdefault(line.strip(), [])
            pending = []
            continue
        stripped = line.strip()
        alternative = stripped.startswith("|")
        kind, _, name = stripped.lstrip("|").partition(": ")
        if current is None or kind not in ("Depends", "PreDepends"):
            continue
        if not name.startswith("<"):
            pending.append(name)
        if not alternative:
            if pending:
                current.append(tuple(pending))
            pending = []
    return out


AptOptions = tuple[str, ...]
"""Options of every apt call for one release (:func:`provisioner.artifacts.aptroot.apt_options`;
empty: this machine's own)."""

_known: dict[tuple[AptOptions, str], tuple[Group, ...]] = {}
_known_lock = threading.Lock()  # every host's plan walks at once: one apt-cache run serves all


def prefetch(names: Sequence[str], options: AptOptions = (), *, recurse: bool = False) -> None:
    """Learn the dependencies of every name in ``names`` not known yet, in one ``apt-cache``
    run (it loads the whole package cache each time: ~0.1 s, so one run per package made a
    walk take seconds); with ``recurse``, those of everything they depend on, transitively,
    in that same run."""
    with _known_lock:
        wanted = sorted({n for n in names if (options, n) not in _known})
        if not wanted:
            return
        deep = ("--recurse",) if recurse else ()
        done = subprocess.run(
            ["apt-cache", *options, "depends", *deep, "--no-recommends", "--no-suggests",
             "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *wanted],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise OperationError(
                f"apt-cache depends {' '.join(wanted)} failed on this machine: "
                f"{done.stderr.strip()[-300:]}",
                hint="run `apt-get update` on this machine",
            )
        parsed = parse_depends(done.stdout)
        for name in wanted:
            _known[options, name] = tuple(parsed.get(name, []))
        for name, groups in parsed.items():  # what --recurse reached
            _known.setdefault((options, name), tuple(groups))


def _prefetch_walk(
    names: Sequence[str], installed: Mapping[str, str | None], options: AptOptions
) -> None:
    """Learn every package the walk below may visit: one recursive apt-cache run for the
    whole tree (each run takes ~0.5 s on a quiet machine, 2 s on a busy one: a run per level
    of the tree cost five of them on the critical path of every cold plan), then a run per
    level for anything it did not reach."""
    prefetch(sorted(names), options, recurse=True)
    frontier = set(names)
    while frontier:
        prefetch(sorted(frontier), options)
        frontier = {
            group[0]
            for name in frontier
            for group in _known[options, name]
            if (options, group[0]) not in _known
            and not any(installed.get(a) is not None for a in group)
        }


Graph = dict[str, list[list[str]]]
Memo = Callable[[str, Callable[[], Graph]], Graph]
"""``memo(key, compute)``: the value kept under ``key``, or ``compute()``'s, kept."""


def closure(names: Sequence[str], options: AptOptions = ()) -> Graph:
    """Every package the walk of :func:`missing` from ``names`` may visit on any host (every
    alternative, transitively) with its dependency groups: one recursive apt-cache run, then a
    run per level for anything it did not reach. It depends on apt's lists alone, not on a
    host, so it can be memoised beside them (:meth:`DebCache.resolve
    <provisioner.artifacts.debs.DebCache.resolve>`) and a later run need not ask apt at all."""
    prefetch(sorted(names), options, recurse=True)
    graph: Graph = {}
    todo = sorted(set(names))
    while todo:
        prefetch(todo, options)
        for name in todo:
            graph[name] = [list(group) for group in _known[options, name]]
        todo = sorted({a for n in todo for g in graph[n] for a in g if a not in graph})
    return graph


def _apt_depends(name: str, options: AptOptions = ()) -> tuple[Group, ...]:
    prefetch([name], options)
    return _known[options, name]


_depends: Callable[[str], Sequence[Group]] = _apt_depends
"""This machine's apt (tests put a dependency graph here)."""


def missing(
    names: Sequence[str],
    installed: Mapping[str, str | None],
    *,
    depends: Callable[[str], Sequence[Group]] | None = None,
    options: AptOptions = (),
    memo: Memo | None = None,
) -> list[str]:
    """``names`` plus the dependencies the host lacks (``depends``: a package's dependency
    groups; by default apt's, for the release of ``options``, walked over their
    :func:`closure` as ``memo`` keeps it when one is given)."""
    if all(installed.get(name) is not None for name in names):
        # dpkg installed them with their dependencies, so there is nothing to walk. This keeps a
        # no-op apply free of apt-cache calls (seconds per run). A newer candidate that adds a
        # dependency is the one case this misses; dpkg then names the missing package.
        return list(names)
    lookup = _depends if depends is None else depends
    if lookup is _apt_depends and memo is not None:
        graph = memo("closure:" + ",".join(sorted(names)), lambda: closure(names, options))

        def lookup(name: str) -> Sequence[Group]:
            return [tuple(group) for group in graph[name]]

    elif lookup is _apt_depends:
        _prefetch_walk(names, installed, options)

        def lookup(name: str) -> Sequence[Group]:
            return _apt_depends(name, options)

    chosen: list[str] = []
    todo = list(names)
    while todo:
        name = todo.pop(0)
        if name in chosen:
            continue
        chosen.append(name)
        for group in lookup(name):
            if any(installed.get(alt) is not None or alt in chosen for alt in group):
                continue
            todo.append(group[0])
    return chosen
