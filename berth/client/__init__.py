"""Async Kubernetes API client: the :class:`ApiClient` seam, the HTTPS implementation, an
object keys and errors (resources, selectors and patches are :mod:`berth.api`'s)."""

from berth.client.errors import (
    AlreadyExists,
    ApiError,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
)
from berth.client.interface import (
    ApiClient,
    Obj,
    ObjectList,
    PropagationPolicy,
    WatchEvent,
    bind,
    evict,
)
from berth.client.keys import ObjectKey, make_key, split_key

__all__ = [
    "AlreadyExists",
    "ApiClient",
    "ApiError",
    "Conflict",
    "Forbidden",
    "Gone",
    "Invalid",
    "NotFound",
    "Obj",
    "ObjectKey",
    "ObjectList",
    "PropagationPolicy",
    "WatchEvent",
    "bind",
    "evict",
    "make_key",
    "split_key",
]
