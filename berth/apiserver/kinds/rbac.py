"""Roles, ClusterRoles and their bindings (rbac.authorization.k8s.io)."""

from __future__ import annotations

from berth.api.meta import Obj
from berth.api.resources import ResourceDef
from berth.apiserver.errors import FieldError
from berth.apiserver.tables import AGE, NAME, Cell, Column, Printer, age, created, name_of
from berth.apiserver.validation import (
    PATH_SEGMENT,
    RBAC_GROUP,
    binding_fields,
    binding_update,
    policy_rules,
)

from .base import KindStrategy


def _subjects(o: Obj, kind: str) -> str:
    names = []
    for s in o.get("subjects") or []:
        if s.get("kind") == kind:
            if kind == "ServiceAccount":
                names.append(f"{s.get('namespace', '')}/{s.get('name', '')}")
            else:
                names.append(str(s.get("name", "")))
    return ", ".join(names)


def _binding_row(o: Obj) -> list[Cell]:
    ref = o.get("roleRef") or {}
    return [
        name_of(o),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        age(created(o)),
        _subjects(o, "User"),
        _subjects(o, "Group"),
        _subjects(o, "ServiceAccount"),
    ]


BINDING = Printer(
    (
        NAME,
        Column("Role"),
        AGE,
        Column("Users", priority=1),
        Column("Groups", priority=1),
        Column("ServiceAccounts", priority=1),
    ),
    _binding_row,
)


class _Rbac(KindStrategy):
    group = RBAC_GROUP
    specless = True
    name_rule = PATH_SEGMENT


class RoleStrategy(_Rbac):
    kind = "Role"

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        return policy_rules(obj, namespaced=True)


class ClusterRoleStrategy(_Rbac):
    kind = "ClusterRole"

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        return policy_rules(obj, namespaced=False)


class _Binding(_Rbac):
    role_kinds: tuple[str, ...] = ()
    columns = BINDING

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        """kube's v1 defaults: roleRef and User/Group subjects are of the RBAC API group."""
        ref = obj.get("roleRef")
        if isinstance(ref, dict) and not ref.get("apiGroup"):
            ref["apiGroup"] = RBAC_GROUP
        for s in obj.get("subjects") or []:
            if isinstance(s, dict) and not s.get("apiGroup") and s.get("kind") in ("User", "Group"):
                s["apiGroup"] = RBAC_GROUP

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        return binding_fields(obj, role_kinds=self.role_kinds)

    def validate_update(self, rd: ResourceDef, old: Obj, new: Obj) -> list[FieldError]:
        return binding_update(old, new)


class RoleBindingStrategy(_Binding):
    kind = "RoleBinding"
    role_kinds = ("Role", "ClusterRole")


class ClusterRoleBindingStrategy(_Binding):
    kind = "ClusterRoleBinding"
    role_kinds = ("ClusterRole",)
