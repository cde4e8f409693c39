"""API errors as the server reports them (a ``meta/v1 Status``), one class per HTTP code that
control loops branch on."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A non-2xx answer from the API server; ``status`` is the HTTP code, ``reason`` the
    Status reason (``NotFound``, ``Conflict``, ...)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class BadRequest(ApiError):
    pass


class Forbidden(ApiError):
    pass


class NotFound(ApiError):
    pass


class AlreadyExists(ApiError):
    pass


class Conflict(ApiError):
    pass


class Gone(ApiError):
    """410: the resourceVersion asked for is too old; relist."""


class Invalid(ApiError):
    pass


class TooManyRequests(ApiError):
    pass


class Unreachable(ApiError):
    """The request never got an answer (connection refused or reset, timeout). Status 0."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "Unreachable", message)


def from_status(status: int, body: dict[str, Any] | None) -> ApiError:
    """Build the error for an HTTP answer ``status`` whose body was ``body`` (a Status)."""
    body = body or {}
    reason = str(body.get("reason") or "")
    message = str(body.get("message") or f"HTTP {status}")
    cls: type[ApiError] = ApiError
    if status == 400:
        cls = BadRequest
    elif status == 403:
        cls = Forbidden
    elif status == 404:
        cls = NotFound
    elif status == 409:
        cls = AlreadyExists if reason == "AlreadyExists" else Conflict
    elif status == 410:
        cls = Gone
    elif status == 422:
        cls = Invalid
    elif status == 429:
        cls = TooManyRequests
    return cls(status, reason or cls.__name__, message)


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    """A ``meta/v1 Status`` failure body (used by the fake client and watch ERROR events)."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
