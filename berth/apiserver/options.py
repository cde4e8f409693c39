"""Options of list and delete calls, parsed once at the HTTP edge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from berth.api.meta import Obj
from berth.api.selectors import EVERYTHING, NO_FIELDS, FieldSelector, LabelSelector

from .errors import bad_request


@dataclass(frozen=True, slots=True)
class ListOptions:
    label: LabelSelector = EVERYTHING
    field: FieldSelector = NO_FIELDS
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""


@dataclass(frozen=True, slots=True)
class ListPage:
    items: list[Obj]
    revision: int
    continue_token: str


@dataclass(frozen=True, slots=True)
class DeleteOptions:
    grace_period: int | None = None
    propagation: str = ""
    uid: str = ""
    resource_version: str = ""
    dry_run: bool = False

    @classmethod
    def from_body(cls, body: Any, *, grace_query: int | None = None) -> DeleteOptions:
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise bad_request("DeleteOptions must be a JSON object")
        grace = body.get("gracePeriodSeconds", grace_query)
        if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool)):
            raise bad_request("gracePeriodSeconds must be an integer")
        pre = body.get("preconditions") or {}
        policy = body.get("propagationPolicy") or ""
        if body.get("orphanDependents") is True and not policy:
            policy = "Orphan"
        if policy not in ("", "Background", "Foreground", "Orphan"):
            raise bad_request(f"unsupported propagationPolicy {policy!r}")
        return cls(
            grace_period=grace,
            propagation=policy,
            uid=str(pre.get("uid") or "") if isinstance(pre, dict) else "",
            resource_version=str(pre.get("resourceVersion") or "") if isinstance(pre, dict) else "",
            dry_run=bool(body.get("dryRun")),
        )
