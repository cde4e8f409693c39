"""Informer against the fake API: initial list, watch events, handlers, frozen cache,
resume after a stream ends, relist on 410."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from berth.api.resources import CONFIGMAPS
from berth.machinery.clock import FakeClock
from berth.machinery.informer import Handlers, Informer
from berth.machinery.objects import Frozen, name
from tests.harness.fake_client import FakeClient


def cm(n: str, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": n, "namespace": "default"}, "data": dict(data)}


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def test_informer_lists_watches_and_dispatches() -> None:
    async def body() -> None:
        api = FakeClient()
        api.seed(CONFIGMAPS, cm("a", v="1"))
        inf = Informer(api, CONFIGMAPS, clock=FakeClock())
        log: list[str] = []
        inf.add_handlers(
            Handlers(
                on_add=lambda o: log.append(f"add {name(o)}"),
                on_update=lambda old, new: log.append(
                    f"update {name(new)} {old['data']['v']}->{new['data']['v']}"
                ),
                on_delete=lambda o: log.append(f"delete {name(o)}"),
            )
        )
        task = asyncio.create_task(inf.run())
        await asyncio.wait_for(inf.wait_synced(), 1)
        await api.create(CONFIGMAPS, cm("b", v="1"))
        await api.patch(CONFIGMAPS, "a", {"data": {"v": "2"}}, namespace="default")
        await api.delete(CONFIGMAPS, "b", namespace="default")
        await settle()
        assert log == ["add a", "add b", "update a 1->2", "delete b"]
        assert inf.get("default/a") is not None
        assert inf.get("default/b") is None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(body())


def test_cached_objects_cannot_be_mutated() -> None:
    inf = Informer(FakeClient(), CONFIGMAPS, clock=FakeClock())
    inf.replace([cm("a", v="1")], "5")
    obj: Frozen = inf.get("default/a")  # type: ignore[assignment]
    with pytest.raises(TypeError):
        obj["data"]["v"] = "2"
    assert obj["data"]["v"] == "1"


def test_watch_resumes_from_last_resource_version_without_relisting() -> None:
    async def body() -> None:
        api = FakeClient()
        inf = Informer(api, CONFIGMAPS, clock=FakeClock())
        task = asyncio.create_task(inf.run())
        await asyncio.wait_for(inf.wait_synced(), 1)
        await settle()
        api.end_watches()
        await api.create(CONFIGMAPS, cm("during-gap"))
        await settle()
        assert inf.get("default/during-gap") is not None
        assert inf.relists == 1
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(body())


def test_410_triggers_relist_and_reports_missed_deletions() -> None:
    async def body() -> None:
        api = FakeClient()
        api.seed(CONFIGMAPS, cm("old"))
        inf = Informer(api, CONFIGMAPS, clock=FakeClock())
        deleted: list[str] = []
        inf.add_handlers(Handlers(on_delete=lambda o: deleted.append(name(o))))
        task = asyncio.create_task(inf.run())
        await asyncio.wait_for(inf.wait_synced(), 1)
        await settle()
        api.end_watches()
        await api.delete(CONFIGMAPS, "old", namespace="default")
        await api.create(CONFIGMAPS, cm("new"))
        api.compact()  # the informer's resourceVersion is now too old
        await settle()
        assert inf.relists == 2
        assert deleted == ["old"]
        assert [name(o) for o in inf.list()] == ["new"]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(body())


def test_custom_index() -> None:
    inf = Informer(FakeClient(), CONFIGMAPS, clock=FakeClock())
    inf.add_index("v", lambda o: [o["data"].get("v", "")])
    inf.replace([cm("a", v="x"), cm("b", v="y"), cm("c", v="x")], "1")
    assert sorted(name(o) for o in inf.by_index("v", "x")) == ["a", "c"]
    inf.replace([cm("a", v="y")], "2")
    assert inf.by_index("v", "x") == []
