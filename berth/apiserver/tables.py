"""Server-side ``meta.k8s.io Table`` rendering: the columns ``kubectl get`` prints.

Each kind's strategy (:mod:`berth.apiserver.kinds`) brings its :class:`Printer`; this module
holds the cell helpers they share and the Table document itself.

kubectl asks for ``as=Table`` and prints the cells it gets, so the server formats every cell,
the Age included, exactly the way kube-apiserver's printers do. Columns with ``priority: 1``
appear only with ``-o wide``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from berth.api.meta import Obj, get_path, now, parse_time

from .selectors import selector_to_string

Cell = str | int | float | bool | None


def human_duration(seconds: float) -> str:
    """Duration as kubectl prints ages: ``5s``, ``3m2s``, ``45m``, ``4h``, ``2d3h``, ``400d``."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        sec = s % 60
        return f"{minutes}m" if sec == 0 else f"{minutes}m{sec}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if dy == 0 else f"{years}y{dy}d"
    return f"{hours // 24 // 365}y"


def age(ts: Any, at: datetime | None = None) -> str:
    t = parse_time(ts) if isinstance(ts, str) else None
    if t is None:
        return "<unknown>"
    return human_duration(((at or now()) - t).total_seconds())


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str = "string"
    priority: int = 0
    format: str = ""
    description: str = ""

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description or self.name,
            "priority": self.priority,
        }


@dataclass(frozen=True, slots=True)
class Printer:
    columns: tuple[Column, ...]
    row: Callable[[Obj], list[Cell]]


NAME = Column("Name", format="name", description="Name must be unique within a namespace.")
AGE = Column(
    "Age",
    description="Time since the object was created.",
)


def none_cell(v: Any) -> str:
    return str(v) if v not in (None, "") else "<none>"


def created(o: Obj) -> Any:
    return get_path(o, "metadata", "creationTimestamp")


def name_of(o: Obj) -> str:
    return str(get_path(o, "metadata", "name") or "")


def template_cells(o: Obj) -> list[Cell]:
    containers = get_path(o, "spec", "template", "spec", "containers") or []
    return [
        ",".join(str(c.get("name", "")) for c in containers),
        ",".join(str(c.get("image", "")) for c in containers),
        selector_to_string(get_path(o, "spec", "selector")) or "<none>",
    ]


WIDE_TEMPLATE = (
    Column("Containers", priority=1, description="Names of each container in the template."),
    Column(
        "Images", priority=1, description="Images referenced by each container in the template."
    ),
    Column("Selector", priority=1, description="Label selector for pods."),
)


def int_or_zero(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


DEFAULT = Printer(
    (NAME, Column("Created At", type="date", description="Creation timestamp")),
    lambda o: [name_of(o), created(o) or ""],
)


def _row_object(o: Obj, include: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return o
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": o.get("metadata") or {},
    }


def to_table(
    printer: Printer,
    objs: list[Obj],
    *,
    table_api_version: str,
    resource_version: str,
    include_object: str = "Metadata",
    with_columns: bool = True,
    continue_token: str = "",
) -> Obj:
    """Render ``objs`` as a Table; ``with_columns=False`` for watch events after the first."""
    rows = []
    for o in objs:
        row: Obj = {"cells": printer.row(o)}
        obj = _row_object(o, include_object)
        if obj is not None:
            row["object"] = obj
        rows.append(row)
    meta: Obj = {"resourceVersion": resource_version}
    if continue_token:
        meta["continue"] = continue_token
    table: Obj = {"kind": "Table", "apiVersion": table_api_version, "metadata": meta}
    table["columnDefinitions"] = [c.definition() for c in printer.columns] if with_columns else None
    table["rows"] = rows
    return table
