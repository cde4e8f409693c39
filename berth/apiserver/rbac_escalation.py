"""RBAC privilege-escalation prevention: nobody grants through RBAC what they do not hold.

The rules of kube-apiserver's RBAC registry, applied on every write path (create, update,
every patch type including apply, dry-run alike) by :class:`EscalationCheck`:

* creating or updating a Role (ClusterRole) requires holding every permission it grants in
  the role's namespace (cluster-wide), or the ``escalate`` verb on roles (clusterroles);
* a ClusterRole with an ``aggregationRule`` (which can gather any rules) requires holding
  everything (``*`` on ``*.*`` and on every non-resource URL), or ``escalate``;
* creating or updating a RoleBinding (ClusterRoleBinding) requires holding every permission of
  the referenced role in the binding's namespace (cluster-wide), or the ``bind`` verb on that
  role (``resourceNames`` honoured: ``bind`` may be limited to named roles);
* an update that changes nothing but ``ownerReferences``/``finalizers`` (the garbage
  collector's writes) is not checked;
* ``system:masters`` is never checked (it can do anything anyway).

"Holding" a permission is rule coverage as upstream defines it: each rule to grant is broken
down into single (group, resource, verb[, name]) and (non-resource URL, verb) tuples, and each
tuple must be covered by one rule the requester holds. A ``*`` in a granted rule is covered only
by ``*``; ``*/status`` covers any resource's status; ``/apis/*`` covers every path under
``/apis/``; a held rule without resourceNames covers any name.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from berth.api.meta import Obj
from berth.api.resources import TABLE, ResourceDef, ResourceTable

from .auth import UserInfo
from .errors import ApiError
from .rbac import RBAC_GROUP, Attributes, RbacAuthorizer

FULL_AUTHORITY: tuple[Obj, ...] = (
    {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
    {"nonResourceURLs": ["*"], "verbs": ["*"]},
)
ROLE_KINDS = {"Role": "roles", "ClusterRole": "clusterroles"}
BINDING_KINDS = ("RoleBinding", "ClusterRoleBinding")
# What the garbage collector may change on an RBAC object without an escalation check.
_GC_META = ("ownerReferences", "finalizers")
# Server-maintained metadata that differs between the stored and the written object.
_VOLATILE_META = ("resourceVersion", "managedFields")

ObjectGetter = Callable[[ResourceDef, str, str], Awaitable[Obj]]
"""``(resource, namespace, name) -> stored object``; raises the 404 ApiError when missing."""


# --- rule coverage ----------------------------------------------------------------------------


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def breakdown(rule: Obj) -> list[Obj]:
    """``rule`` as single-verb, single-resource, single-name (or single-URL) rules."""
    out: list[Obj] = []
    names = _strings(rule.get("resourceNames"))
    verbs = _strings(rule.get("verbs"))
    for group in _strings(rule.get("apiGroups")):
        for resource in _strings(rule.get("resources")):
            for verb in verbs:
                base: Obj = {"apiGroups": [group], "resources": [resource], "verbs": [verb]}
                if names:
                    out.extend({**base, "resourceNames": [n]} for n in names)
                else:
                    out.append(base)
    for url in _strings(rule.get("nonResourceURLs")):
        out.extend({"nonResourceURLs": [url], "verbs": [verb]} for verb in verbs)
    return out


def _resource_covered(held: list[str], wanted: str) -> bool:
    if "*" in held or wanted in held:
        return True
    _, sep, sub = wanted.partition("/")
    return bool(sep) and f"*/{sub}" in held


def _url_covered(held: list[str], wanted: str) -> bool:
    return any(h == wanted or (h.endswith("*") and wanted.startswith(h.rstrip("*"))) for h in held)


def rule_covers(owner: Obj, sub: Obj) -> bool:
    """Whether held rule ``owner`` covers ``sub`` (one tuple from :func:`breakdown`)."""
    verbs = _strings(owner.get("verbs"))
    if not ("*" in verbs or set(_strings(sub.get("verbs"))) <= set(verbs)):
        return False
    urls = _strings(sub.get("nonResourceURLs"))
    if urls:
        return all(_url_covered(_strings(owner.get("nonResourceURLs")), u) for u in urls)
    groups = _strings(owner.get("apiGroups"))
    if not ("*" in groups or set(_strings(sub.get("apiGroups"))) <= set(groups)):
        return False
    held_resources = _strings(owner.get("resources"))
    if not all(_resource_covered(held_resources, r) for r in _strings(sub.get("resources"))):
        return False
    held_names = _strings(owner.get("resourceNames"))
    wanted_names = _strings(sub.get("resourceNames"))
    if not wanted_names:
        return not held_names
    return not held_names or set(wanted_names) <= set(held_names)


def uncovered(held: Iterable[Any], granted: Iterable[Any]) -> list[Obj]:
    """The broken-down tuples of ``granted`` that no rule of ``held`` covers."""
    owner_rules = [r for r in held if isinstance(r, dict)]
    missing: list[Obj] = []
    for rule in granted:
        if not isinstance(rule, dict):
            continue
        for sub in breakdown(rule):
            if not any(rule_covers(o, sub) for o in owner_rules):
                missing.append(sub)
    return missing


def describe(rules: list[Obj]) -> list[str]:
    """Sorted one-line descriptions, verbs of the same target merged, in upstream's style:
    ``{APIGroups:["apps"], Resources:["deployments"], Verbs:["get" "list"]}``."""
    verbs_of: dict[tuple[tuple[str, ...], ...], list[str]] = {}
    for r in rules:
        target = tuple(
            tuple(_strings(r.get(f)))
            for f in ("apiGroups", "resources", "resourceNames", "nonResourceURLs")
        )
        verbs = verbs_of.setdefault(target, [])
        verbs.extend(v for v in _strings(r.get("verbs")) if v not in verbs)
    lines = set()
    for (groups, resources, names, urls), verbs in verbs_of.items():
        parts = [
            f"{label}:[{' '.join(json.dumps(v) for v in values)}]"
            for label, values in (
                ("APIGroups", groups),
                ("Resources", resources),
                ("ResourceNames", names),
                ("NonResourceURLs", urls),
                ("Verbs", tuple(verbs)),
            )
            if values
        ]
        lines.add("{" + ", ".join(parts) + "}")
    return sorted(lines)


# --- the check --------------------------------------------------------------------------------


def only_gc_fields_changed(old: Obj | None, new: Obj) -> bool:
    """True for an update that changes nothing but ownerReferences and finalizers."""
    if old is None:
        return False

    def view(obj: Obj) -> Obj:
        m = obj.get("metadata") or {}
        trimmed = {k: v for k, v in m.items() if k not in _GC_META + _VOLATILE_META}
        return {**obj, "metadata": trimmed}

    return view(old) == view(new)


class EscalationCheck:
    """Refuses RBAC writes that would grant the requester more than she holds.

    ``get_object`` reads the role a binding refers to from the store (a role created just
    before its binding must be found even if the watch cache lags; a missing one is a 404, as
    upstream); the requester's own permissions come from the authorizer's cache, the same view
    that authorizes her requests.
    """

    def __init__(
        self, authorizer: RbacAuthorizer, get_object: ObjectGetter, table: ResourceTable = TABLE
    ) -> None:
        self.authorizer = authorizer
        self.get_object = get_object
        self.table = table

    def applies_to(self, rd: ResourceDef) -> bool:
        return rd.group == RBAC_GROUP and (rd.kind in ROLE_KINDS or rd.kind in BINDING_KINDS)

    async def check(
        self,
        user: UserInfo,
        rd: ResourceDef,
        namespace: str,
        *,
        name: str,
        old: Obj | None,
        new: Obj,
    ) -> None:
        """Raise 403 Forbidden when the write escalates. ``old`` is None for a create."""
        if not self.applies_to(rd) or user.is_master or only_gc_fields_changed(old, new):
            return
        if rd.kind in ROLE_KINDS:
            self._check_role(user, rd, namespace, name=name, old=old, new=new)
        else:
            await self._check_binding(user, rd, namespace, name=name, new=new)

    def _allowed(self, user: UserInfo, verb: str, resource: str, namespace: str, name: str) -> bool:
        return self.authorizer.allowed(
            Attributes(
                user=user,
                verb=verb,
                resource_request=True,
                api_group=RBAC_GROUP,
                resource=resource,
                namespace=namespace,
                name=name,
            )
        )

    def _check_role(
        self,
        user: UserInfo,
        rd: ResourceDef,
        namespace: str,
        *,
        name: str,
        old: Obj | None,
        new: Obj,
    ) -> None:
        # As upstream, a create is authorized without a name (the URL has none), so an
        # ``escalate`` limited by resourceNames applies to updates only.
        target = name if old is not None else ""
        if self._allowed(user, "escalate", ROLE_KINDS[rd.kind], namespace, target):
            return
        held = self.authorizer.rules_for(user, namespace)
        rules = new.get("rules")
        missing = uncovered(held, rules if isinstance(rules, list) else [])
        if missing:
            raise self._forbidden(user, rd, name, missing)
        aggregating = any(
            isinstance(o, dict) and o.get("aggregationRule") is not None for o in (old, new)
        )
        if aggregating and uncovered(held, FULL_AUTHORITY):
            raise ApiError(
                403,
                "Forbidden",
                f'{rd.group_resource} "{name}" is forbidden: must have cluster-admin privileges'
                " to use the aggregationRule",
                details=_details(rd, name),
            )

    async def _check_binding(
        self, user: UserInfo, rd: ResourceDef, namespace: str, *, name: str, new: Obj
    ) -> None:
        ref = new.get("roleRef")
        if not isinstance(ref, dict):
            return  # validation refuses it before we are called
        kind = str(ref.get("kind") or "")
        role = str(ref.get("name") or "")
        if kind not in ROLE_KINDS:
            return
        if self._allowed(user, "bind", ROLE_KINDS[kind], namespace, role):
            return
        role_rd = self.table.by_kind(RBAC_GROUP, kind)
        assert role_rd is not None
        stored = await self.get_object(role_rd, namespace if kind == "Role" else "", role)
        missing = uncovered(self.authorizer.rules_for(user, namespace), _rules_of(stored))
        if missing:
            raise self._forbidden(user, rd, name, missing)

    @staticmethod
    def _forbidden(user: UserInfo, rd: ResourceDef, name: str, missing: list[Obj]) -> ApiError:
        groups = "[" + " ".join(json.dumps(g) for g in user.groups) + "]"
        lines = "\n".join(describe(missing))
        return ApiError(
            403,
            "Forbidden",
            f'{rd.group_resource} "{name}" is forbidden: user "{user.name}" (groups={groups})'
            f" is attempting to grant RBAC permissions not currently held:\n{lines}",
            details=_details(rd, name),
        )


def _details(rd: ResourceDef, name: str) -> dict[str, Any]:
    return {"name": name, "group": rd.group, "kind": rd.plural}


def _rules_of(role: Obj) -> list[Obj]:
    rules = role.get("rules")
    return [r for r in rules if isinstance(r, dict)] if isinstance(rules, list) else []
