"""LimitRanges (core/v1): upstream's defaulting of Container items, validation, and keeping
the LimitRanger admission's copy current (:mod:`berth.apiserver.limitranger`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from berth.api.meta import Obj, get_path
from berth.api.resources import ResourceDef
from berth.apiserver.errors import FieldError, not_supported
from berth.apiserver.tables import NAME, Column, Printer, created, name_of

from .base import KindStrategy
from .quota import resource_list_errors

if TYPE_CHECKING:
    from berth.apiserver.registry import Registry

TYPES = ("Pod", "Container", "PersistentVolumeClaim")

LIMITRANGE = Printer(
    (
        NAME,
        Column(
            "Created At",
            type="date",
            description="CreationTimestamp is a timestamp representing the server time when"
            " this object was created.",
        ),
    ),
    lambda o: [name_of(o), str(created(o) or "")],
)


class LimitRangeStrategy(KindStrategy):
    kind = "LimitRange"
    columns = LIMITRANGE

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        # As upstream's API defaulting of a Container item: the default limit is the max,
        # the default request the default limit, else the min.
        for item in get_path(obj, "spec", "limits") or []:
            if not isinstance(item, dict) or item.get("type") != "Container":
                continue
            default = item.setdefault("default", {})
            request = item.setdefault("defaultRequest", {})
            if not isinstance(default, dict) or not isinstance(request, dict):
                continue
            for k, v in (item.get("max") or {}).items():
                default.setdefault(k, v)
            for k, v in default.items():
                request.setdefault(k, v)
            for k, v in (item.get("min") or {}).items():
                request.setdefault(k, v)
            if not default:
                del item["default"]
            if not request:
                del item["defaultRequest"]

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        errs: list[FieldError] = []
        for i, item in enumerate(get_path(obj, "spec", "limits") or []):
            if not isinstance(item, dict):
                continue
            where = f"spec.limits[{i}]"
            if item.get("type") not in TYPES:
                errs.append(not_supported(f"{where}.type", item.get("type"), TYPES))
            for field in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
                errs += resource_list_errors(f"{where}.{field}", item.get(field))
        return errs

    async def after_create(self, reg: Registry, rd: ResourceDef, obj: Obj) -> None:
        reg.limit_ranger.remember(_key(rd, obj), obj)

    async def after_update(self, reg: Registry, rd: ResourceDef, old: Obj, new: Obj) -> None:
        reg.limit_ranger.remember(_key(rd, new), new)

    async def after_delete(self, reg: Registry, rd: ResourceDef, obj: Obj) -> None:
        reg.limit_ranger.remember(_key(rd, obj), None)


def _key(rd: ResourceDef, obj: Obj) -> str:
    m = obj.get("metadata") or {}
    return rd.key(str(m.get("namespace") or ""), str(m.get("name") or ""))
