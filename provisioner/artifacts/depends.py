"""Which ``.deb`` files a host needs: the packages asked for and the dependencies it lacks.

A dependency is a group of alternatives (``A | B``). Taking every alternative as required is
wrong: ``init-system-helpers`` would then drag ``usrmerge`` and perl in, which fail to
configure on hosts that have ``usr-is-merged``. So the walk treats a group as satisfied when any
alternative is installed on the host or already chosen, and otherwise ships its first real
package (and walks that package's own dependencies).
"""

from __future__ import annotations

import functools
import subprocess
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


@functools.cache
def _depends(name: str) -> tuple[Group, ...]:
    done = subprocess.run(
        ["apt-cache", "depends", "--no-recommends", "--no-suggests", "--no-conflicts",
         "--no-breaks", "--no-replaces", "--no-enhances", name],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise OperationError(
            f"apt-cache depends {name} failed on this machine: {done.stderr.strip()[-300:]}",
            hint="run `apt-get update` on this machine",
        )
    return tuple(parse_depends(done.stdout).get(name, []))


def missing(
    names: Sequence[str],
    installed: Mapping[str, str | None],
    *,
    depends: Callable[[str], Sequence[Group]] | None = None,
) -> list[str]:
    """``names`` plus the dependencies the host lacks (``depends``: a package's dependency
    groups; this machine's apt by default)."""
    if all(installed.get(name) is not None for name in names):
        # dpkg installed them with their dependencies, so there is nothing to walk. This keeps a
        # no-op apply free of apt-cache calls (seconds per run). A newer candidate that adds a
        # dependency is the one case this misses; dpkg then names the missing package.
        return list(names)
    lookup = _depends if depends is None else depends
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
