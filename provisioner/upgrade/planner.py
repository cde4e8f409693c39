"""The order of a rolling upgrade.

Control-plane hosts go first, one at a time (the API server of every later host is then never
older than an agent), in spec order so the plan is stable. Workers follow in batches of
``spec.upgrade.maxUnavailable``. Hosts already on the target bundle are left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PlannedHost:
    name: str
    control_plane: bool


def plan_batches(
    hosts: Sequence[PlannedHost],
    *,
    running: Mapping[str, str | None],
    target: str,
    max_unavailable: int,
) -> list[list[str]]:
    """Batches of host names, in the order they are upgraded (see the module docstring)."""
    if max_unavailable < 1:
        raise ValueError("maxUnavailable must be at least 1")
    todo = [h for h in hosts if running.get(h.name) != target]
    batches = [[h.name] for h in todo if h.control_plane]
    workers = [h.name for h in todo if not h.control_plane]
    for start in range(0, len(workers), max_unavailable):
        batches.append(workers[start : start + max_unavailable])
    return batches


def describe_plan(batches: Sequence[Sequence[str]], *, target: str) -> list[str]:
    """One line per batch, for ``berth upgrade --plan`` and the journal's report."""
    if not batches:
        return [f"every host already runs {target}; nothing to upgrade"]
    return [f"batch {i}: {', '.join(batch)} -> {target}" for i, batch in enumerate(batches, 1)]
