"""The client seam: :class:`ApiClient` is what every control loop talks to.

Two implementations exist: :class:`berth.client.http.HttpClient` (aiohttp, mTLS, the real API
server) and :class:`tests.harness.fake_client.FakeClient` (in memory, for unit tests). Objects
travel as plain JSON dictionaries exactly as the Kubernetes REST API defines them; the API is
the contract.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from berth.api.resources import PODS, ResourceDef

Obj = dict[str, Any]
"""One API object (or any JSON body) as decoded JSON."""

PropagationPolicy = Literal["Background", "Foreground", "Orphan"]
PatchType = Literal["merge", "strategic", "json"]
"""JSON merge patch (RFC 7386), Kubernetes strategic merge patch, JSON patch (RFC 6902)."""
PatchBody = Obj | list[Obj]
"""A merge or strategic merge patch (an object), or a JSON patch (a list of operations)."""
WatchEventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: WatchEventType
    object: Obj


@dataclass(slots=True)
class ObjectList:
    items: list[Obj]
    resource_version: str
    continue_token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class ApiClient(Protocol):
    async def get(
        self,
        resource: ResourceDef,
        name: str,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> Obj: ...

    async def list(
        self,
        resource: ResourceDef,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
    ) -> ObjectList: ...

    async def create(
        self,
        resource: ResourceDef,
        body: Obj,
        *,
        namespace: str | None = None,
    ) -> Obj: ...

    async def create_subresource(
        self,
        resource: ResourceDef,
        name: str,
        subresource: str,
        *,
        body: Obj,
        namespace: str | None = None,
    ) -> Obj:
        """POST to a subresource (``binding``, ``eviction``)."""
        ...

    async def update(
        self,
        resource: ResourceDef,
        body: Obj,
        *,
        subresource: str | None = None,
    ) -> Obj:
        """PUT; conflicts (409) when ``metadata.resourceVersion`` is set and stale."""
        ...

    async def patch(
        self,
        resource: ResourceDef,
        name: str,
        patch: PatchBody,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
        patch_type: PatchType = "merge",
    ) -> Obj:
        """PATCH; a JSON merge patch (RFC 7386) unless ``patch_type`` says otherwise (a JSON
        patch is a list of operations)."""
        ...

    async def delete(
        self,
        resource: ResourceDef,
        name: str,
        *,
        namespace: str | None = None,
        propagation_policy: PropagationPolicy | None = None,
        grace_period_seconds: int | None = None,
        precondition_uid: str | None = None,
    ) -> Obj | None:
        """Returns the object when the server answers with one (graceful deletion,
        finalizers; pods also on final deletion), None when it answers with a Status."""
        ...

    def watch(
        self,
        resource: ResourceDef,
        *,
        namespace: str | None = None,
        resource_version: str = "",
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Events after ``resource_version``; ERROR events carry a Status (410 = relist)."""
        ...

    async def served(self, resource: ResourceDef) -> bool:
        """Whether the server serves ``resource`` (API discovery)."""
        ...

    async def close(self) -> None: ...


async def bind(client: ApiClient, *, namespace: str, pod: str, node: str) -> None:
    """Bind ``pod`` to ``node`` through ``pods/{name}/binding``."""
    body: Obj = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": pod, "namespace": namespace},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }
    await client.create_subresource(PODS, pod, "binding", body=body, namespace=namespace)


async def evict(client: ApiClient, *, namespace: str, pod: str) -> None:
    """Evict ``pod`` through ``pods/{name}/eviction`` (honours its grace period)."""
    body: Obj = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod, "namespace": namespace},
    }
    await client.create_subresource(PODS, pod, "eviction", body=body, namespace=namespace)
