"""Which facts a host's plan needed last time, so the next plan reads them all in one round trip.

Some operations are built from facts (the packages a host lacks decide which ``.deb`` files to
ship), so their own facts are known only after a first round trip: planning would need two. The
memo remembers, per cluster, phase selection and host, the keys of the facts the last plan
needed; the next plan gathers those *speculatively* in its first batch. It is only a prediction
of what to read: every value is still read fresh from the host, a fact the plan no longer needs
is simply unused, one it needs but the memo lacked is gathered in a second trip as before, and a
speculative fact whose output does not parse is dropped instead of failing the host.

The memo is JSON (fact keys, never pickles) in the cache directory; a key whose fact class is
unknown or whose arguments no longer rebuild the same key is skipped.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from provisioner.facts.base import Fact, fact_class

MAX_BYTES = 1 << 20
"""A memo file larger than this is ignored (it is ours, but a bound costs nothing)."""


def rebuild(key: str) -> Fact[Any] | None:
    """The fact whose :meth:`~provisioner.facts.base.Fact.key` is ``key``, or None."""
    name, brace, args = key.partition("{")
    cls = fact_class(name)
    if cls is None or not brace:
        return None
    try:
        data = json.loads(brace + args)
        fact = cls(**{k: _frozen(v) for k, v in data.items()})
    except (ValueError, TypeError):
        return None
    return fact if fact.key() == key else None


def _frozen(value: object) -> object:
    # fact arguments are scalars and tuples (facts are hashable): JSON gave lists
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


class FactMemo:
    """The memo of one cluster and phase selection (see the module docstring)."""

    def __init__(self, path: Path, selection: str) -> None:
        self.path = path
        self.selection = selection
        self._all: dict[str, dict[str, list[str]]] = _load(path)
        self._hosts: dict[str, list[str]] = dict(self._all.get(selection, {}))
        self._changed = False

    def predicted(self, host: str) -> list[Fact[Any]]:
        """The facts ``host``'s last plan needed (those that still rebuild)."""
        facts = (rebuild(key) for key in self._hosts.get(host, ()))
        return [f for f in facts if f is not None and not f.solo]

    def record(self, host: str, facts: Iterable[Fact[Any]]) -> None:
        keys = sorted({f.key() for f in facts if not f.solo})
        if self._hosts.get(host) != keys:
            self._hosts[host] = keys
            self._changed = True

    def save(self) -> None:
        """Write the memo if any host's facts changed (a no-op run writes nothing)."""
        if not self._changed:
            return
        self._all[self.selection] = self._hosts
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        temp.write_text(json.dumps(self._all, sort_keys=True))
        temp.replace(self.path)
        self._changed = False


def _load(path: Path) -> dict[str, dict[str, list[str]]]:
    try:
        if path.stat().st_size > MAX_BYTES:
            return {}
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(selection): {
            str(host): [k for k in keys if isinstance(k, str)]
            for host, keys in hosts.items()
            if isinstance(keys, list)
        }
        for selection, hosts in data.items()
        if isinstance(hosts, dict)
    }


def memo_path(cache_dir: Path, cluster: str) -> Path:
    # cluster names are DNS labels; anything else still makes one plain file name
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", cluster).lstrip(".") or "_"
    return cache_dir / "fact-memo" / f"{safe}.json"


def selection_key(phases: Sequence[str]) -> str:
    return ",".join(phases)
