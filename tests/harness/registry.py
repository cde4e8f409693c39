"""A :class:`~berth.apiserver.registry.Registry` over an in-memory store, for unit tests of
the server's object rules without HTTP; and reading a 422's field causes."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from berth.api.resources import TABLE
from berth.apiserver.allocators import IPAllocator, PortAllocator
from berth.apiserver.codec import Codec
from berth.apiserver.errors import ApiError
from berth.apiserver.podsecurity_policy import PodSecurityConfig
from berth.apiserver.registry import Registry
from berth.apiserver.tolerations import DefaultTolerationSeconds
from berth.store.interface import Store
from berth.store.memory import MemoryStore

SERVICE_CIDR = "10.96.0.0/24"


async def memory_registry(
    *,
    namespaces: Sequence[str] = ("default",),
    store: Store | None = None,
    pod_security: PodSecurityConfig | None = None,
    default_tolerations: DefaultTolerationSeconds | None = None,
) -> Registry:
    """A registry over ``store`` (a fresh :class:`MemoryStore` by default) with a
    ``10.96.0.0/24`` service range, the default node port range and ``namespaces`` created."""
    reg = Registry(
        store if store is not None else MemoryStore(),
        Codec(),
        service_ips=IPAllocator(SERVICE_CIDR),
        node_ports=PortAllocator(),
        pod_security=pod_security,
        default_tolerations=default_tolerations,
    )
    rd = TABLE.lookup("", "v1", "namespaces")
    assert rd is not None
    for ns in namespaces:
        await reg.create(rd, "", {"metadata": {"name": ns}}, user=None)
    return reg


def invalid_fields(exc: pytest.ExceptionInfo[ApiError]) -> list[str]:
    """The fields of a 422 Invalid answer's causes, in order."""
    assert exc.value.code == 422
    assert exc.value.details is not None
    return [str(c["field"]) for c in exc.value.details["causes"]]
