"""Async Kubernetes API client: the :class:`ApiClient` seam, the HTTPS implementation, an
in-memory fake for tests, resources, selectors and errors."""

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
from berth.client.resources import ObjectKey, Resource, make_key, split_key

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
    "Resource",
    "WatchEvent",
    "bind",
    "evict",
    "make_key",
    "split_key",
]
