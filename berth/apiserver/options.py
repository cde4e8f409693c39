"""Options of list and delete calls, parsed once at the HTTP edge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from berth.api.meta import Obj
from berth.api.selectors import EVERYTHING, NO_FIELDS, FieldSelector, LabelSelector

from .errors import ApiError, bad_request

DRY_RUN_ALL = "All"
"""The one ``dryRun`` value there is: every stage of the request runs, nothing is stored."""

OPTIONS_KIND = {
    "create": "CreateOptions",
    "update": "UpdateOptions",
    "patch": "PatchOptions",
    "delete": "DeleteOptions",
    "deletecollection": "DeleteOptions",
}
"""The options object (``meta.k8s.io``) whose ``dryRun`` a write verb's query sets."""


SHOWN_VALUES = 8
"""Most refused ``dryRun`` values an error message repeats (a body may hold thousands)."""


def _go_strings(values: list[Any]) -> str:
    """A list as Go prints a ``[]string`` (kube-apiserver's wording of the bad value), cut
    short past :data:`SHOWN_VALUES` values of 64 characters."""
    shown = ['"' + str(v)[:64].replace('"', '\\"') + '"' for v in values[:SHOWN_VALUES]]
    if len(values) > SHOWN_VALUES:
        shown.append("...")
    return "[]string{" + ", ".join(shown) + "}"


def parse_dry_run(values: Any, options_kind: str) -> bool:
    """Whether ``values`` (the ``dryRun`` query values, or a DeleteOptions body's ``dryRun``
    list) ask for a dry run. Only ``All`` exists; anything else is refused as kube-apiserver
    refuses it (422, the options object is invalid) rather than taken for a real write."""
    if values is None or values == []:
        return False
    if not isinstance(values, list):
        raise bad_request(f"{options_kind}.dryRun must be a list of strings")
    if all(v == DRY_RUN_ALL for v in values):
        return True
    message = f'Unsupported value: {_go_strings(values)}: supported values: "{DRY_RUN_ALL}"'
    raise ApiError(
        422,
        "Invalid",
        f'{options_kind}.meta.k8s.io "" is invalid: dryRun: {message}',
        details={
            "name": "",
            "group": "meta.k8s.io",
            "kind": options_kind,
            "causes": [{"reason": "FieldValueNotSupported", "message": message, "field": "dryRun"}],
        },
    )


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
            dry_run=parse_dry_run(body.get("dryRun"), "DeleteOptions"),
        )
