"""The kind strategies' catalog and the runtime-mutable resource table."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from berth.api.meta import Obj
from berth.api.resources import RESOURCES, TABLE, ResourceDef, ResourceTable
from berth.apiserver.allocators import IPAllocator, PortAllocator
from berth.apiserver.codec import Codec
from berth.apiserver.errors import ApiError, FieldError, required
from berth.apiserver.kinds import BUILTIN, KindStrategy, Strategies, strategy_for
from berth.apiserver.registry import Registry
from berth.store.memory import MemoryStore

WIDGETS = ResourceDef(
    group="example.com",
    version="v1",
    plural="widgets",
    singular="widget",
    kind="Widget",
    namespaced=True,
    subresources=("status",),
)


class WidgetStrategy(KindStrategy):
    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        obj.setdefault("spec", {}).setdefault("size", 1)

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        return [] if "color" in obj.get("spec", {}) else [required("spec.color")]


def test_every_builtin_resource_has_its_kinds_strategy() -> None:
    for rd in RESOURCES:
        assert strategy_for(rd).kind == rd.kind, rd.plural
    assert len({(s.group, s.kind) for s in BUILTIN}) == len(BUILTIN)


def test_unknown_resources_fall_back_to_the_default_and_registration_wins() -> None:
    strategies = Strategies()
    assert strategies.of(WIDGETS) is strategies.default
    widget = WidgetStrategy()
    strategies.register(WIDGETS, widget)
    assert strategies.of(WIDGETS) is widget
    strategies.unregister(WIDGETS)
    assert strategies.of(WIDGETS) is strategies.default


def test_resource_table_add_and_remove_bump_the_generation() -> None:
    table = ResourceTable()
    assert table.lookup("example.com", "v1", "widgets") is None
    assert "example.com" not in table.group_versions()
    table.add(WIDGETS)
    assert table.generation == 1
    assert table.lookup("example.com", "v1", "widgets") is WIDGETS
    assert table.by_kind("example.com", "Widget") is WIDGETS
    assert table.group_versions()["example.com"] == ["v1"]
    renamed = ResourceDef(**{**_fields(WIDGETS), "short_names": ("wd",)})
    table.add(renamed)  # same (group, version, plural): replaced, not doubled
    assert table.generation == 2
    assert table.in_group_version("example.com", "v1") == [renamed]
    table.remove(renamed)
    assert table.generation == 3
    assert table.lookup("example.com", "v1", "widgets") is None
    assert table.by_kind("example.com", "Widget") is None
    table.remove(renamed)  # not served: nothing changes
    assert table.generation == 3
    assert TABLE.lookup("example.com", "v1", "widgets") is None  # the shared table untouched


def _fields(rd: ResourceDef) -> dict[str, Any]:
    return {f: getattr(rd, f) for f in rd.__dataclass_fields__}


def test_a_registered_strategy_serves_a_resource_added_at_run_time() -> None:
    async def scenario() -> None:
        table = ResourceTable()
        table.add(WIDGETS)
        strategies = Strategies()
        strategies.register(WIDGETS, WidgetStrategy())
        reg = Registry(
            MemoryStore(),
            Codec(),
            service_ips=IPAllocator("10.96.0.0/24"),
            node_ports=PortAllocator(),
            resources=table,
            strategies=strategies,
        )
        ns = table.lookup("", "v1", "namespaces")
        assert ns is not None
        await reg.create(ns, "", {"metadata": {"name": "default"}}, user=None)
        with pytest.raises(ApiError) as exc:
            await reg.create(WIDGETS, "default", {"metadata": {"name": "w"}}, user=None)
        assert exc.value.code == 422
        obj = await reg.create(
            WIDGETS,
            "default",
            {"metadata": {"name": "w"}, "spec": {"color": "red"}, "status": {"x": 1}},
            user=None,
        )
        assert obj["kind"] == "Widget"
        assert obj["apiVersion"] == "example.com/v1"
        assert obj["spec"] == {"color": "red", "size": 1}
        assert "status" not in obj  # reset on create: the resource has a status subresource
        assert obj["metadata"]["generation"] == 1

    asyncio.run(scenario())
