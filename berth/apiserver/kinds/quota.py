"""ResourceQuotas (core/v1): validation, the ``kubectl get quota`` columns, and keeping the
quota admission's list of quotas current (:mod:`berth.apiserver.quota_admission`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from berth.api import quota as q
from berth.api.meta import Obj, get_path
from berth.api.quantity import QuantityError, parse_quantity
from berth.api.resources import ResourceDef
from berth.apiserver.errors import FieldError, invalid_value, not_supported
from berth.apiserver.tables import AGE, NAME, Cell, Column, Printer, age, created, name_of

from .base import KindStrategy

if TYPE_CHECKING:
    from berth.apiserver.registry import Registry

SCOPE_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def _quota_row(o: Obj) -> list[Cell]:
    hard = get_path(o, "status", "hard") or {}
    used = get_path(o, "status", "used") or {}
    requests: list[str] = []
    limits: list[str] = []
    for name in sorted(hard):
        cell = f"{name}: {used.get(name, '0')}/{hard[name]}"
        (limits if name.startswith("limits.") else requests).append(cell)
    return [name_of(o), age(created(o)), ", ".join(requests), ", ".join(limits)]


QUOTA = Printer(
    (
        NAME,
        AGE,
        Column("Request", description="Request represents a minimum amount of cpu/memory."),
        Column("Limit", description="Limits control the maximum amount of cpu/memory."),
    ),
    _quota_row,
)


def resource_list_errors(field: str, values: Any) -> list[FieldError]:
    """Each value a quantity of at least zero."""
    errs: list[FieldError] = []
    if not isinstance(values, Mapping):
        return errs
    for k, v in values.items():
        try:
            amount = parse_quantity(v)
        except QuantityError:
            errs.append(invalid_value(f"{field}[{k}]", v, "must be a valid quantity"))
            continue
        if amount.nanos < 0:
            errs.append(invalid_value(f"{field}[{k}]", v, "must be greater than or equal to 0"))
    return errs


class ResourceQuotaStrategy(KindStrategy):
    kind = "ResourceQuota"
    empty_status: Mapping[str, Any] = {}
    columns = QUOTA

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        spec = obj.get("spec") or {}
        errs = resource_list_errors("spec.hard", spec.get("hard"))
        errs += resource_list_errors("status.hard", get_path(obj, "status", "hard"))
        errs += resource_list_errors("status.used", get_path(obj, "status", "used"))
        for i, scope in enumerate(spec.get("scopes") or []):
            if scope not in q.SCOPES:
                errs.append(not_supported(f"spec.scopes[{i}]", scope, q.SCOPES))
        exprs = get_path(spec, "scopeSelector", "matchExpressions") or []
        for i, expr in enumerate(exprs if isinstance(exprs, list) else []):
            where = f"spec.scopeSelector.matchExpressions[{i}]"
            if not isinstance(expr, dict):
                continue
            if expr.get("scopeName") not in q.SCOPES:
                errs.append(not_supported(f"{where}.scopeName", expr.get("scopeName"), q.SCOPES))
            if expr.get("operator") not in SCOPE_OPERATORS:
                errs.append(
                    not_supported(f"{where}.operator", expr.get("operator"), SCOPE_OPERATORS)
                )
        return errs

    async def after_create(self, reg: Registry, rd: ResourceDef, obj: Obj) -> None:
        reg.quotas.remember(_key(rd, obj), obj)

    async def after_update(self, reg: Registry, rd: ResourceDef, old: Obj, new: Obj) -> None:
        reg.quotas.remember(_key(rd, new), new)

    async def after_delete(self, reg: Registry, rd: ResourceDef, obj: Obj) -> None:
        reg.quotas.remember(_key(rd, obj), None)


def _key(rd: ResourceDef, obj: Obj) -> str:
    m = obj.get("metadata") or {}
    return rd.key(str(m.get("namespace") or ""), str(m.get("name") or ""))
