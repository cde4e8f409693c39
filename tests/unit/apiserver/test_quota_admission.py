"""Quota admission on a registry over the memory store: charges ``status.used`` before the
object is stored, refuses past ``hard`` with upstream's message, and concurrent creates (and
several quotas at once) never overshoot nor charge twice."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from berth.api.resources import CONFIGMAPS, PODS, RESOURCEQUOTAS
from berth.apiserver.errors import ApiError
from berth.apiserver.registry import Registry
from berth.store.interface import KeyValue
from berth.store.memory import MemoryStore
from tests.harness.registry import memory_registry


class YieldingStore(MemoryStore):
    """Reads give way to other tasks, as a real datastore's round trips do, so concurrent
    creates interleave between reading a quota and charging it."""

    async def get(self, key: str) -> KeyValue | None:
        await asyncio.sleep(0)
        return await super().get(key)


async def _registry(*quotas: dict[str, Any]) -> Registry:
    reg = await memory_registry(store=YieldingStore(), namespaces=("ns",))
    for quota in quotas:
        await reg.create(RESOURCEQUOTAS, "ns", quota, user=None)
    return reg


def _quota(name: str, **hard: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"hard": hard}}


async def _used(reg: Registry, name: str) -> dict[str, str]:
    quota = await reg.get(RESOURCEQUOTAS, "ns", name)
    return dict(quota["status"]["used"])


def test_concurrent_creates_stop_exactly_at_hard() -> None:
    async def body() -> None:
        reg = await _registry(_quota("a", configmaps="3"), _quota("b", **{"count/configmaps": "4"}))

        async def create(i: int) -> int:
            try:
                await reg.create(CONFIGMAPS, "ns", {"metadata": {"name": f"c{i}"}}, user=None)
            except ApiError as exc:
                return exc.code
            return 201

        results = await asyncio.gather(*(create(i) for i in range(12)))
        assert sorted(results) == [201] * 3 + [403] * 9
        assert await _used(reg, "a") == {"configmaps": "3"}
        assert await _used(reg, "b") == {"count/configmaps": "3"}  # charged once each

    asyncio.run(body())


def test_refusal_names_what_was_requested_used_and_limited() -> None:
    async def body() -> None:
        reg = await _registry(_quota("cpu", **{"requests.cpu": "1", "pods": "10"}))
        pod: dict[str, Any] = {
            "metadata": {"name": "p1"},
            "spec": {
                "containers": [
                    {"name": "c", "image": "i", "resources": {"requests": {"cpu": "700m"}}}
                ]
            },
        }
        await reg.create(PODS, "ns", pod, user=None)
        pod["metadata"] = {"name": "p2"}
        with pytest.raises(ApiError) as exc:
            await reg.create(PODS, "ns", pod, user=None)
        assert exc.value.message == (
            'pods "p2" is forbidden: exceeded quota: cpu, requested: requests.cpu=700m,'
            " used: requests.cpu=700m, limited: requests.cpu=1"
        )
        assert await _used(reg, "cpu") == {"pods": "1", "requests.cpu": "700m"}
        # a dry run is judged the same and charges nothing
        pod["metadata"] = {"name": "p3"}
        pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "300m"
        await reg.create(PODS, "ns", pod, user=None, dry_run=True)
        assert await _used(reg, "cpu") == {"pods": "1", "requests.cpu": "700m"}

    asyncio.run(body())
