"""The controller reads TLS Secrets one by one, only those named by Ingresses it serves: what
the ingress authorizer allows (berth.apiserver.ingressauthz). Against a fake API that refuses,
as the API server does, any Secret list/watch not pinned to one name in one namespace."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from berth.api.resources import INGRESSCLASSES, INGRESSES, SECRETS, ResourceDef
from berth.api.selectors import pinned_field_value
from berth.client import errors
from berth.client.interface import ObjectList, WatchEvent
from berth.ingress.controller import IngressController
from berth.ingress.routes import Routes
from berth.machinery.clock import RealClock
from tests.harness.fake_client import FakeClient

from .objects import CLASS, ingress, path, tls_secret

pytestmark = pytest.mark.timeout(60)


@dataclass
class PinnedSecretsClient(FakeClient):
    """Refuses Secret lists and watches that are not pinned to one object; records the rest."""

    secret_reads: list[tuple[str, str, str]] = field(default_factory=list)

    def _check_secrets(self, verb: str, namespace: str | None, fields: str | None) -> None:
        name = pinned_field_value(fields or "", "metadata.name")
        if not namespace or not name:
            raise errors.Forbidden(403, "Forbidden", f"{verb} secrets: not one named object")
        self.secret_reads.append((verb, namespace, name))

    async def list(self, resource: ResourceDef, **kw: Any) -> ObjectList:
        if resource == SECRETS:
            self._check_secrets("list", kw.get("namespace"), kw.get("field_selector"))
        return await super().list(resource, **kw)

    def watch(self, resource: ResourceDef, **kw: Any) -> AsyncIterator[WatchEvent]:
        if resource == SECRETS:
            self._check_secrets("watch", kw.get("namespace"), kw.get("field_selector"))
        return super().watch(resource, **kw)


class RecordingProxy:
    running = True

    def __init__(self) -> None:
        self.last: Routes | None = None

    async def apply(self, routes: Routes) -> None:
        self.last = routes

    def certificates(self) -> set[str]:
        return {c.name for c in self.last.certificates} if self.last else set()


async def _until(check: Callable[[], bool], limit: float = 10.0) -> None:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > limit:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


def _web(*secrets: str, class_name: str = "berth") -> dict[str, Any]:
    obj = ingress(
        "web",
        [("a.test", [path("/", "alpha")])],
        tls=[{"hosts": [f"{s}.test"], "secretName": s} for s in secrets],
    )
    obj["spec"]["ingressClassName"] = class_name
    return obj


def test_reads_only_named_secrets_one_by_one_and_drops_unnamed() -> None:
    asyncio.run(_named_secrets())


async def _named_secrets() -> None:
    client = PinnedSecretsClient()
    client.seed(INGRESSCLASSES, dict(CLASS))
    client.seed(
        INGRESSCLASSES, {"metadata": {"name": "other"}, "spec": {"controller": "example.com/x"}}
    )
    for name in ("a", "b", "unnamed"):
        client.seed(SECRETS, tls_secret(name, f"{name}.test"))
    client.seed(INGRESSES, _web("a"))
    other = _web("b", class_name="other")  # another controller's Ingress: not ours to read
    other["metadata"]["name"] = "theirs"
    client.seed(INGRESSES, other)
    proxy = RecordingProxy()
    controller = IngressController(client, RealClock(), proxy)
    task = asyncio.create_task(controller.run())
    try:
        await _until(lambda: proxy.certificates() == {"default_a"})
        assert controller.secrets.watched() == {("default", "a")}

        # a Secret named later, created later: read as soon as it exists
        web = await client.get(INGRESSES, "web", namespace="default")
        web["spec"]["tls"].append({"hosts": ["late.test"], "secretName": "late"})
        await client.update(INGRESSES, web)
        await _until(
            lambda: controller.secrets.watched() == {("default", "a"), ("default", "late")}
        )
        client.seed(SECRETS, tls_secret("late", "late.test"))
        await _until(lambda: proxy.certificates() == {"default_a", "default_late"})

        # no longer named: dropped from the proxy and no longer watched
        web = await client.get(INGRESSES, "web", namespace="default")
        web["spec"]["tls"] = [{"hosts": ["late.test"], "secretName": "late"}]
        await client.update(INGRESSES, web)
        await _until(lambda: proxy.certificates() == {"default_late"})
        assert controller.secrets.watched() == {("default", "late")}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert controller.secrets.watched() == set()
    read = {name for _verb, _ns, name in client.secret_reads}
    assert read == {"a", "late"}, client.secret_reads
