"""PriorityClasses (scheduling.k8s.io/v1, cluster-scoped): defaults, validation (reserved
``system-`` names, the user range, one global default, an immutable value), columns, and
keeping the Priority admission's copy current (:mod:`berth.apiserver.priority`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from berth.api.meta import Obj, get_path
from berth.api.resources import ResourceDef
from berth.apiserver.errors import (
    FieldError,
    forbidden,
    forbidden_field,
    invalid_value,
    not_supported,
)
from berth.apiserver.priority import HIGHEST_USER_PRIORITY, PREEMPT, SYSTEM_CLASSES
from berth.apiserver.tables import AGE, NAME, Cell, Column, Printer, age, created, name_of

from .base import KindStrategy

if TYPE_CHECKING:
    from berth.apiserver.registry import Registry

SYSTEM = {str(c["metadata"]["name"]): c for c in SYSTEM_CLASSES}
POLICIES = ("PreemptLowerPriority", "Never")


def _row(o: Obj) -> list[Cell]:
    return [
        name_of(o),
        o.get("value", 0),
        bool(o.get("globalDefault")),
        age(created(o)),
        o.get("preemptionPolicy") or "",
    ]


PRIORITYCLASS = Printer(
    (
        NAME,
        Column("Value", type="integer"),
        Column("Global-Default", type="boolean"),
        AGE,
        Column("PreemptionPolicy"),
    ),
    _row,
)


class PriorityClassStrategy(KindStrategy):
    group = "scheduling.k8s.io"
    kind = "PriorityClass"
    specless = True
    columns = PRIORITYCLASS

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        obj.setdefault("preemptionPolicy", PREEMPT)

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        errs: list[FieldError] = []
        name = str(get_path(obj, "metadata", "name") or "")
        value = obj.get("value")
        if not isinstance(value, int) or isinstance(value, bool):
            return [invalid_value("value", value, "must be an integer")]
        system = SYSTEM.get(name)
        if system is not None:
            if value != system["value"]:
                errs.append(
                    invalid_value(
                        "metadata.name", name, "name is reserved for a system PriorityClass"
                    )
                )
        elif name.startswith("system-"):
            errs.append(
                invalid_value(
                    "metadata.name",
                    name,
                    "priority class names with 'system-' prefix are reserved",
                )
            )
        elif value > HIGHEST_USER_PRIORITY:
            errs.append(
                forbidden_field(
                    "value",
                    f"maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}",
                )
            )
        if obj.get("preemptionPolicy") not in POLICIES:
            errs.append(not_supported("preemptionPolicy", obj.get("preemptionPolicy"), POLICIES))
        return errs

    def validate_update(self, rd: ResourceDef, old: Obj, new: Obj) -> list[FieldError]:
        errs: list[FieldError] = []
        if old.get("value") != new.get("value"):
            errs.append(forbidden_field("value", "may not be changed in an update."))
        if old.get("preemptionPolicy") != new.get("preemptionPolicy"):
            errs.append(forbidden_field("preemptionPolicy", "field is immutable"))
        return errs

    async def admit_create(self, reg: Registry, rd: ResourceDef, ns: str, obj: Obj) -> None:
        self._one_default(reg, obj)

    def admit_update(self, reg: Registry, rd: ResourceDef, new: Obj, subresource: str) -> None:
        self._one_default(reg, new)

    def _one_default(self, reg: Registry, obj: Obj) -> None:
        if obj.get("globalDefault") is not True:
            return
        name = get_path(obj, "metadata", "name")
        other = reg.priority.global_default()
        if other is not None and get_path(other, "metadata", "name") != name:
            raise forbidden(
                f"PriorityClass {get_path(other, 'metadata', 'name')} is already marked as"
                " default. Only one default can exist"
            )

    async def after_create(self, reg: Registry, rd: ResourceDef, obj: Obj) -> None:
        reg.priority.remember(rd.key("", str(get_path(obj, "metadata", "name"))), obj)

    async def after_update(self, reg: Registry, rd: ResourceDef, old: Obj, new: Obj) -> None:
        reg.priority.remember(rd.key("", str(get_path(new, "metadata", "name"))), new)

    async def after_delete(self, reg: Registry, rd: ResourceDef, obj: Obj) -> None:
        reg.priority.remember(rd.key("", str(get_path(obj, "metadata", "name"))), None)
