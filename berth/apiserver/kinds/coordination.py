"""Leases (coordination.k8s.io)."""

from __future__ import annotations

from berth.api.meta import Obj, get_path
from berth.api.resources import ResourceDef
from berth.apiserver.errors import FieldError
from berth.apiserver.tables import AGE, NAME, Column, Printer, age, created, name_of
from berth.apiserver.validation import lease_fields

from .base import KindStrategy

LEASE = Printer(
    (NAME, Column("Holder"), AGE),
    lambda o: [name_of(o), get_path(o, "spec", "holderIdentity") or "", age(created(o))],
)


class LeaseStrategy(KindStrategy):
    group = "coordination.k8s.io"
    kind = "Lease"
    upsert = True
    columns = LEASE

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        return lease_fields(obj)
