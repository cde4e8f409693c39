"""API errors and their ``meta/v1 Status`` bodies.

Every non-2xx response the server sends is one of these, so clients always get a ``Status``
(kubectl prints ``Error from server (<reason>): <message>``). Every one carries ``details``
(``{}`` at least, as kube-apiserver's route 404 and 405 do): clients read its fields without
checking it is there (kubectl 1.32 ``debug`` dereferences ``details.name`` of a 404).
"""

from __future__ import annotations

from typing import Any

from berth.api.resources import ResourceDef


class ApiError(Exception):
    """An error with an HTTP code, a Kubernetes reason and optional details."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        return status_body(self.code, self.reason, self.message, self.details)


def status_body(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details or {},
        "code": code,
    }
    return body


def _details(rd: ResourceDef | None, name: str) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name} if name else {}
    if rd is not None:
        d["kind"] = rd.plural
        if rd.group:
            d["group"] = rd.group
    return d


def not_found(rd: ResourceDef | None, name: str) -> ApiError:
    what = rd.group_resource if rd else "resource"
    return ApiError(404, "NotFound", f'{what} "{name}" not found', details=_details(rd, name))


def route_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def already_exists(rd: ResourceDef, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{rd.group_resource} "{name}" already exists',
        details=_details(rd, name),
    )


def conflict(rd: ResourceDef, name: str, why: str = "") -> ApiError:
    msg = why or (
        "the object has been modified; please apply your changes to the latest version "
        "and try again"
    )
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rd.group_resource} "{name}": {msg}',
        details=_details(rd, name),
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def forbidden(message: str, rd: ResourceDef | None = None, name: str = "") -> ApiError:
    """403; with ``rd`` (and ``name``) the details name the object, as upstream's
    ``NewForbidden`` does for a request on a resource."""
    return ApiError(403, "Forbidden", message, details=_details(rd, name) if rd else {})


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def method_not_allowed(method: str) -> ApiError:
    """405 for a method the path does not serve, worded as kube-apiserver's router answers
    (``method`` is not in the message: upstream names it only in the client's fallback)."""
    del method
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def unsupported_media(content_type: str) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format: {content_type}",
    )


def not_acceptable() -> ApiError:
    return ApiError(
        406,
        "NotAcceptable",
        "only the following media types are accepted: application/json",
    )


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def internal(message: str = "an internal error occurred") -> ApiError:
    return ApiError(500, "InternalError", message, details={"causes": [{"message": message}]})


DATASTORE_RETRY_AFTER = 2
"""Seconds a client is told to wait after a 503 for an unavailable datastore (kube-apiserver
tells clients 2 s when its storage is unreachable)."""


def datastore_unavailable(why: str, *, outcome_unknown: bool = False) -> ApiError:
    """503 ServiceUnavailable with ``Retry-After`` (and ``details.retryAfterSeconds``, which
    client-go honours): the datastore cannot serve now, e.g. this server's etcd member has no
    quorum. Another API server, or this one later, may succeed."""
    message = f"{why}; retry later or through another API server"
    if outcome_unknown:
        message += " (the write was sent and may still be applied: read before retrying it)"
    return ApiError(
        503,
        "ServiceUnavailable",
        message,
        details={"retryAfterSeconds": DATASTORE_RETRY_AFTER},
        headers={"Retry-After": str(DATASTORE_RETRY_AFTER)},
    )


class FieldError:
    """One validation problem: ``field`` is a path such as ``spec.containers[0].name``."""

    __slots__ = ("field", "message", "reason")

    def __init__(self, reason: str, field: str, message: str) -> None:
        self.reason = reason
        self.field = field
        self.message = message


def required(field: str) -> FieldError:
    return FieldError("FieldValueRequired", field, "Required value")


def invalid_value(field: str, value: Any, why: str) -> FieldError:
    return FieldError("FieldValueInvalid", field, f"Invalid value: {value!r}: {why}")


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", field, f"Duplicate value: {value!r}")


def not_found_value(field: str, value: Any) -> FieldError:
    return FieldError("FieldValueNotFound", field, f"Not found: {value!r}")


def forbidden_field(field: str, why: str) -> FieldError:
    return FieldError("FieldValueForbidden", field, f"Forbidden: {why}")


def not_supported(field: str, value: Any, supported: tuple[str, ...]) -> FieldError:
    values = ", ".join(f'"{v}"' for v in supported)
    return FieldError(
        "FieldValueNotSupported", field, f"Unsupported value: {value!r}: supported values: {values}"
    )


def invalid(rd: ResourceDef, name: str, errors: list[FieldError]) -> ApiError:
    """422 Invalid with one cause per field error, worded like kube-apiserver."""
    parts = [f"{e.field}: {e.message}" for e in errors]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details = _details(rd, name)
    details["kind"] = rd.kind
    details["causes"] = [
        {"reason": e.reason, "message": e.message, "field": e.field} for e in errors
    ]
    return ApiError(422, "Invalid", f'{rd.kind} "{name}" is invalid: {joined}', details=details)


def too_large_resource_version(wanted: int, current: int) -> ApiError:
    """504 for a read at a resourceVersion the store has not reached (upstream's
    ``NewTooLargeResourceVersionError``: a Timeout with a cause and one second's retry)."""
    return ApiError(
        504,
        "Timeout",
        f"Too large resource version: {wanted}, current: {current}",
        details={
            "causes": [
                {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
            ],
            "retryAfterSeconds": 1,
        },
    )
