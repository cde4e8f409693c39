"""``additionalPrinterColumns`` as Table columns and cells, as upstream's CRD table convertor.

The first column is always Name; a version without columns gets upstream's default Age
column (``.metadata.creationTimestamp``, type date). Each cell is the first value the column's
JSONPath finds, typed by the column: integer and number cells are numbers, boolean cells
booleans, string cells the value printed as text (JSON for lists and maps), date cells an age
such as ``5m``; a missing value or one of the wrong type is an empty (null) cell.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from berth.api.meta import Obj, get_path
from berth.apiserver.tables import age

from . import jsonpath
from .fielderrors import go_float

DEFAULT_COLUMNS: tuple[dict[str, Any], ...] = (
    {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
        "description": "CreationTimestamp is a timestamp representing the server time when this "
        "object was created.",
    },
)

NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although "
    "some resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated."
)


@dataclass(frozen=True, slots=True)
class PrinterColumn:
    name: str
    type: str
    format: str
    description: str
    priority: int
    path: tuple[jsonpath.Segment, ...]

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


def columns_for(specs: list[Any] | None) -> tuple[PrinterColumn, ...]:
    """Columns from a version's ``additionalPrinterColumns`` (already validated)."""
    out = []
    for c in specs or DEFAULT_COLUMNS:
        if not isinstance(c, dict):
            continue
        path = str(c.get("jsonPath") or "")
        try:
            segments = jsonpath.parse(path)
        except jsonpath.PathError:
            continue  # refused at CRD validation; never served
        out.append(
            PrinterColumn(
                name=str(c.get("name") or ""),
                type=str(c.get("type") or "string"),
                format=str(c.get("format") or ""),
                description=str(
                    c.get("description")
                    or f"Custom resource definition column (in JSONPath format): {path}"
                ),
                priority=int(c.get("priority") or 0),
                path=segments,
            )
        )
    return tuple(out)


def _text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, int):
        return str(v)
    if v is None:
        return "<nil>"
    return json.dumps(v, separators=(",", ":"))


def cell(col: PrinterColumn, obj: Obj) -> Any:
    v = jsonpath.find(obj, col.path)
    if v is jsonpath.MISSING:
        return None
    if col.type == "string":
        return _text(v)
    if v is None:
        return None
    if col.type == "integer":
        if isinstance(v, int | float) and not isinstance(v, bool):
            return int(v)
        return None
    if col.type == "number":
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
        return None
    if col.type == "boolean":
        return v if isinstance(v, bool) else None
    if col.type == "date":
        if isinstance(v, str):
            text = age(v)
            return "<invalid>" if text == "<unknown>" else text
        return None
    return None


def row(columns: tuple[PrinterColumn, ...], obj: Obj) -> list[Any]:
    return [str(get_path(obj, "metadata", "name") or ""), *(cell(c, obj) for c in columns)]


def definitions(columns: tuple[PrinterColumn, ...]) -> list[dict[str, Any]]:
    name = {
        "name": "Name",
        "type": "string",
        "format": "name",
        "description": NAME_DESCRIPTION,
        "priority": 0,
    }
    return [name, *(c.definition() for c in columns)]
