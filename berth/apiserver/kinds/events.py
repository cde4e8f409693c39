"""Events (core v1)."""

from __future__ import annotations

from berth.api.meta import Obj
from berth.api.resources import ResourceDef
from berth.apiserver.errors import FieldError
from berth.apiserver.selectors import path_getter
from berth.apiserver.tables import Cell, Column, Printer, age, created, int_or_zero, name_of
from berth.apiserver.validation import event_fields

from .base import KindStrategy


def _event_row(o: Obj) -> list[Cell]:
    inv = o.get("involvedObject") or {}
    last = o.get("lastTimestamp") or o.get("eventTime") or created(o)
    first = o.get("firstTimestamp") or o.get("eventTime") or created(o)
    src = o.get("source") or {}
    source = src.get("component") or o.get("reportingComponent") or ""
    if src.get("host"):
        source = f"{source}, {src['host']}"
    return [
        age(last),
        o.get("type") or "",
        o.get("reason") or "",
        f"{str(inv.get('kind', '')).lower()}/{inv.get('name', '')}",
        o.get("message") or "",
        inv.get("fieldPath") or "",
        source,
        age(first),
        int_or_zero(o.get("count")) or 1,
        name_of(o),
    ]


EVENT = Printer(
    (
        Column("Last Seen"),
        Column("Type"),
        Column("Reason"),
        Column("Object"),
        Column("Message"),
        Column("Subobject", priority=1),
        Column("Source", priority=1),
        Column("First Seen", priority=1),
        Column("Count", type="integer", priority=1),
        Column("Name", priority=1, format="name"),
    ),
    _event_row,
)


class EventStrategy(KindStrategy):
    kind = "Event"
    specless = True
    upsert = True
    expires = True  # an Event lives event_ttl after its last write, then the store drops it
    field_selectors = {
        f"involvedObject.{f}": path_getter("involvedObject", f)
        for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
    } | {
        "reason": path_getter("reason"),
        "source": path_getter("source", "component"),
        "type": path_getter("type"),
    }
    columns = EVENT

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        obj.setdefault("count", 1)
        obj.setdefault("type", "Normal")
        obj.setdefault("source", {})

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        return event_fields(obj)
