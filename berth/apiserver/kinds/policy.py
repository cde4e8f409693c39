"""PodDisruptionBudgets (policy/v1); the budgets themselves are checked by eviction
(:mod:`berth.apiserver.disruption`)."""

from __future__ import annotations

from berth.api.meta import Obj, get_path
from berth.apiserver.tables import (
    AGE,
    NAME,
    Cell,
    Column,
    Printer,
    age,
    created,
    int_or_zero,
    name_of,
)

from .base import KindStrategy


def _pdb_row(o: Obj) -> list[Cell]:
    spec = o.get("spec") or {}
    return [
        name_of(o),
        str(spec["minAvailable"]) if "minAvailable" in spec else "N/A",
        str(spec["maxUnavailable"]) if "maxUnavailable" in spec else "N/A",
        int_or_zero(get_path(o, "status", "disruptionsAllowed")),
        age(created(o)),
    ]


PDB = Printer(
    (
        NAME,
        Column("Min Available"),
        Column("Max Unavailable"),
        Column("Allowed Disruptions", type="integer"),
        AGE,
    ),
    _pdb_row,
)


class PodDisruptionBudgetStrategy(KindStrategy):
    group = "policy"
    kind = "PodDisruptionBudget"
    columns = PDB
