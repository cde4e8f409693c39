"""PodDisruptionBudget enforcement for evictions.

The budget is evaluated from the pods themselves (healthy = Ready condition True), so
evictions are safe even before any controller maintains PDB status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from berth.api.meta import Obj, get_path
from berth.api.selectors import SelectorError, label_selector_from_object

from .errors import ApiError
from .options import ListOptions

if TYPE_CHECKING:
    from .registry import Registry


async def check_budgets(registry: Registry, ns: str, name: str) -> None:
    """Refuse an eviction (429) that would break a PodDisruptionBudget covering the pod.

    The budget is evaluated here from the pods themselves (healthy = Ready condition
    True), so evictions are safe even before any controller maintains PDB status.
    """
    pods_rd, pdb_rd = registry._rd("", "pods"), registry._rd("policy", "poddisruptionbudgets")
    pod = await registry.get(pods_rd, ns, name)
    if pod["metadata"].get("deletionTimestamp") or get_path(pod, "status", "phase") in (
        "Pending",
        "Succeeded",
        "Failed",
    ):
        # as upstream: a terminating, finished or not yet running pod disrupts nothing
        return
    labels = pod["metadata"].get("labels") or {}
    budgets = await registry.store.list(pdb_rd.key_prefix(ns))
    for kv in budgets.items:
        pdb = registry.codec.decode(kv)
        spec = pdb.get("spec") or {}
        try:
            selector = label_selector_from_object(spec.get("selector"))
        except SelectorError:
            continue  # as upstream's eviction: a budget whose selector does not parse is skipped
        if selector.empty or not selector.matches(labels):
            continue
        pods = await registry.list_objects(pods_rd, ns, ListOptions(label=selector))
        live = [p for p in pods.items if not p["metadata"].get("deletionTimestamp")]
        healthy = sum(1 for p in live if _ready(p))
        expected = len(live)
        if "minAvailable" in spec:
            desired = _scaled(spec["minAvailable"], expected, round_up=True)
        else:
            desired = expected - _scaled(spec.get("maxUnavailable", 0), expected, round_up=True)
        if _ready(pod) and healthy - 1 >= desired:
            continue
        if not _ready(pod) and healthy >= desired:
            continue
        why = (
            f"The disruption budget {pdb['metadata']['name']} needs {desired} healthy pods"
            f" and has {healthy} currently"
        )
        raise ApiError(
            429,
            "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget.",
            # No Retry-After (upstream suggests 0 seconds here): client-go would otherwise
            # retry the request itself ten times before kubectl drain saw the 429, which
            # made drain overrun its --timeout by close to a minute.
            details={"causes": [{"reason": "DisruptionBudget", "message": why}]},
        )


def _ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in get_path(pod, "status", "conditions") or []
        if isinstance(c, dict)
    )


def _scaled(value: Any, total: int, *, round_up: bool) -> int:
    """An int-or-percent budget value applied to ``total`` pods."""
    if isinstance(value, str) and value.endswith("%"):
        try:
            pct = int(value[:-1])
        except ValueError:
            return total
        n = pct * total
        return -(-n // 100) if round_up else n // 100
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
