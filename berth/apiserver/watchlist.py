"""List and watch options ``sendInitialEvents`` and ``resourceVersionMatch`` (watch-list).

A watch with ``sendInitialEvents=true&resourceVersionMatch=NotOlderThan`` streams the current
state of the collection as ``ADDED`` events, then (when the client allows bookmarks) one
``BOOKMARK`` annotated ``k8s.io/initial-events-end: "true"`` at the revision of that state,
then changes as any watch: a list and a watch in one request (client-go's WatchListClient,
kube-apiserver 1.32's beta ``WatchList``). ``sendInitialEvents=false`` starts at
``resourceVersion`` (or now) with no initial state.

The combinations are validated as kube-apiserver's ``ValidateListOptions`` does: a 422 on
``ListOptions.meta.k8s.io`` naming every bad field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ApiError, FieldError
from .params import parse_bool

INITIAL_EVENTS_END = "k8s.io/initial-events-end"
NOT_OLDER_THAN = "NotOlderThan"
EXACT = "Exact"


@dataclass(frozen=True, slots=True)
class WatchListOptions:
    send_initial_events: bool | None  # None: not given (the legacy watch semantics)
    resource_version_match: str


def _forbidden(why: str) -> FieldError:
    return FieldError("FieldValueForbidden", "resourceVersionMatch", f"Forbidden: {why}")


def _not_supported(value: str, supported: tuple[str, ...]) -> FieldError:
    values = ", ".join(json.dumps(v) for v in supported)
    return FieldError(
        "FieldValueNotSupported",
        "resourceVersionMatch",
        f"Unsupported value: {json.dumps(value)}: supported values: {values}",
    )


def list_options(query: Mapping[str, str], *, watch: bool) -> WatchListOptions:
    """The watch-list options of a list (``watch=False``) or watch request; 422 for a
    combination kube-apiserver refuses, 400 for a ``sendInitialEvents`` that is no bool."""
    raw_send = query.get("sendInitialEvents")
    send = None if raw_send in (None, "") else parse_bool(raw_send, "sendInitialEvents")
    match = query.get("resourceVersionMatch", "")
    rv = query.get("resourceVersion", "")
    continued = bool(query.get("continue"))
    errors: list[FieldError] = []
    if watch:
        if send is not None and match != NOT_OLDER_THAN:
            errors.append(
                _forbidden(
                    f"sendInitialEvents requires setting resourceVersionMatch to {NOT_OLDER_THAN}"
                )
            )
        if match:
            if send is None:
                errors.append(
                    _forbidden(
                        "resourceVersionMatch is forbidden for watch unless sendInitialEvents is"
                        " provided"
                    )
                )
            if match != NOT_OLDER_THAN:
                errors.append(_not_supported(match, (NOT_OLDER_THAN,)))
            if continued:
                errors.append(
                    _forbidden("resourceVersionMatch is forbidden when continue is provided")
                )
    else:
        if match:
            if not rv:
                errors.append(
                    _forbidden(
                        "resourceVersionMatch is forbidden unless resourceVersion is provided"
                    )
                )
            if continued:
                errors.append(
                    _forbidden("resourceVersionMatch is forbidden when continue is provided")
                )
            if match not in (EXACT, NOT_OLDER_THAN):
                errors.append(_not_supported(match, (EXACT, NOT_OLDER_THAN, "")))
            if match == EXACT and rv == "0":
                errors.append(
                    _forbidden('resourceVersionMatch "exact" is forbidden for resourceVersion "0"')
                )
        if send is not None:
            errors.append(
                FieldError(
                    "FieldValueForbidden",
                    "sendInitialEvents",
                    "Forbidden: sendInitialEvents is forbidden for list",
                )
            )
    if errors:
        raise invalid_list_options(errors)
    return WatchListOptions(send, match)


def invalid_list_options(errors: list[FieldError]) -> ApiError:
    """422 Invalid on the ListOptions of meta.k8s.io, worded as upstream's ``NewInvalid``."""
    parts = [f"{e.field}: {e.message}" for e in errors]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return ApiError(
        422,
        "Invalid",
        f'ListOptions.meta.k8s.io "" is invalid: {joined}',
        details={
            "group": "meta.k8s.io",
            "kind": "ListOptions",
            "causes": [
                {"reason": e.reason, "message": e.message, "field": e.field} for e in errors
            ],
        },
    )
