"""Pod predicates and pod construction shared by the workload controllers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from berth.api.meta import parse_time
from berth.client.interface import Obj
from berth.machinery.objects import Frozen, get_condition, is_deleting, meta, owner_reference, thaw


def phase(pod: Frozen) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def is_terminal(pod: Frozen) -> bool:
    return phase(pod) in ("Succeeded", "Failed")


def is_active(pod: Frozen) -> bool:
    """Counts toward a workload's replicas: not finished and not being deleted."""
    return not is_terminal(pod) and not is_deleting(pod)


def is_ready(pod: Frozen) -> bool:
    cond = get_condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def is_available(pod: Frozen, min_ready_seconds: int, now: datetime) -> bool:
    """Ready for at least ``min_ready_seconds``."""
    cond = get_condition(pod, "Ready")
    if cond is None or cond.get("status") != "True":
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time(cond.get("lastTransitionTime"))
    return since is not None and (now - since).total_seconds() >= min_ready_seconds


def available_in(pod: Frozen, min_ready_seconds: int, now: datetime) -> float | None:
    """Seconds until a ready pod becomes available (None if not ready or already is)."""
    cond = get_condition(pod, "Ready")
    if cond is None or cond.get("status") != "True" or min_ready_seconds <= 0:
        return None
    since = parse_time(cond.get("lastTransitionTime"))
    if since is None:
        return None
    left = min_ready_seconds - (now - since).total_seconds()
    return left if left > 0 else None


def deletion_rank(pod: Frozen) -> tuple[int, int, int, str]:
    """Sort key: pods to delete first sort first (unscheduled, pending, not ready, newest)."""
    spec = pod.get("spec") or {}
    unscheduled = 0 if not spec.get("nodeName") else 1
    pending = {"Pending": 0, "Unknown": 1, "Running": 2}.get(phase(pod), 1)
    ready = 1 if is_ready(pod) else 0
    created = str(meta(pod).get("creationTimestamp") or "")
    # Newest first: invert the timestamp ordering by negating character codes.
    return (unscheduled, pending, ready, "".join(chr(0x10FFFF - ord(c)) for c in created))


def pod_from_template(
    template: Frozen,
    owner: Frozen,
    *,
    generate_name: str,
    extra_labels: dict[str, str] | None = None,
) -> Obj:
    tmpl: dict[str, Any] = thaw(template)
    tmeta = tmpl.get("metadata") or {}
    labels = dict(tmeta.get("labels") or {})
    labels.update(extra_labels or {})
    pod_meta: Obj = {
        "generateName": generate_name,
        "namespace": meta(owner).get("namespace"),
        "labels": labels,
        "ownerReferences": [owner_reference(owner)],
    }
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": pod_meta,
        "spec": tmpl.get("spec") or {},
    }


def random_suffix(n: int = 5) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    raw = uuid.uuid4().int
    out = []
    for _ in range(n):
        raw, r = divmod(raw, len(alphabet))
        out.append(alphabet[r])
    return "".join(out)
