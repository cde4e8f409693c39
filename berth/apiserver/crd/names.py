"""Which names a CRD may serve: upstream's naming controller and its conditions.

A CRD's requested names (``spec.names``) are accepted (``status.acceptedNames``) unless
another CRD of the same group already holds them, or a built-in resource of that group does.
A conflicting name keeps its previously accepted value (nothing, for a new CRD), so a CRD whose
plural conflicts from the start is not served. ``NamesAccepted`` says which name conflicts;
``Established`` turns true once the names are first accepted and stays true.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

from berth.api.meta import Obj, format_time, now
from berth.api.resources import ResourceDef

NAME_FIELDS = ("plural", "singular", "shortNames", "kind", "listKind", "categories")


@dataclass
class _Taken:
    resources: set[str]
    kinds: set[str]


def _taken(group: str, name: str, others: Iterable[Obj], builtins: Iterable[ResourceDef]) -> _Taken:
    t = _Taken(set(), set())
    for other in others:
        spec = other.get("spec") or {}
        if spec.get("group") != group or (other.get("metadata") or {}).get("name") == name:
            continue
        acc = (other.get("status") or {}).get("acceptedNames") or {}
        t.resources.update(x for x in (acc.get("plural"), acc.get("singular")) if x)
        t.resources.update(str(x) for x in acc.get("shortNames") or [])
        t.kinds.update(x for x in (acc.get("kind"), acc.get("listKind")) if x)
    for rd in builtins:
        if rd.group == group:
            t.resources.update((rd.plural, rd.singular, *rd.short_names))
            t.kinds.update((rd.kind, rd.list_kind_name))
    return t


def accept_names(
    crd: Obj, others: Iterable[Obj], builtins: Iterable[ResourceDef]
) -> tuple[Obj, str, str]:
    """(acceptedNames, reason, message): reason ``NoConflicts`` when all requested names are
    accepted, else a conflict (``PluralConflict`` ...) with its message. A name this CRD
    already holds (in its acceptedNames) is never a conflict."""
    spec = crd.get("spec") or {}
    requested = spec.get("names") or {}
    status = crd.get("status") or {}
    accepted: Obj = copy.deepcopy(status.get("acceptedNames") or {})
    accepted.setdefault("plural", "")
    accepted.setdefault("kind", "")
    taken = _taken(
        str(spec.get("group") or ""),
        str((crd.get("metadata") or {}).get("name") or ""),
        others,
        builtins,
    )
    reason, message = "NoConflicts", "no conflicts found"

    def conflict(r: str, m: str) -> None:
        # every name is checked, the last conflict is the one reported (as upstream)
        nonlocal reason, message
        reason, message = r, m

    def fresh(name: str, field: str, pool: set[str]) -> bool:
        return name == accepted.get(field) or name not in pool

    plural = requested.get("plural") or ""
    if not fresh(plural, "plural", taken.resources):
        conflict("PluralConflict", f'"{plural}" is already in use')
    else:
        accepted["plural"] = plural
    singular = requested.get("singular") or ""
    if singular and not fresh(singular, "singular", taken.resources):
        conflict("SingularConflict", f'"{singular}" is already in use')
    else:
        accepted["singular"] = singular
    shorts = [str(s) for s in requested.get("shortNames") or []]
    old_shorts = accepted.get("shortNames") or []
    clash = [] if shorts == old_shorts else [s for s in shorts if s in taken.resources]
    if clash:
        conflict("ShortNamesConflict", f'"{clash[0]}" is already in use')
    else:
        accepted["shortNames"] = shorts
    kind = requested.get("kind") or ""
    if not fresh(kind, "kind", taken.kinds):
        conflict("KindConflict", f'"{kind}" is already in use')
    else:
        accepted["kind"] = kind
    list_kind = requested.get("listKind") or ""
    if list_kind and not fresh(list_kind, "listKind", taken.kinds):
        conflict("ListKindConflict", f'"{list_kind}" is already in use')
    else:
        accepted["listKind"] = list_kind
    accepted["categories"] = [str(c) for c in requested.get("categories") or []]
    for f in ("shortNames", "categories", "singular", "listKind"):
        if not accepted.get(f):
            accepted.pop(f, None)
    return accepted, reason, message


def condition(crd: Obj, ctype: str) -> Obj | None:
    for c in (crd.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == ctype:
            return c
    return None


def is_true(crd: Obj, ctype: str) -> bool:
    c = condition(crd, ctype)
    return c is not None and c.get("status") == "True"


def set_condition(status: Obj, ctype: str, value: str, reason: str, message: str) -> None:
    """Set a condition; its lastTransitionTime moves only when its status changes."""
    conds = status.setdefault("conditions", [])
    for c in conds:
        if c.get("type") == ctype:
            if c.get("status") != value:
                c["lastTransitionTime"] = format_time(now())
            c.update(status=value, reason=reason, message=message)
            return
    conds.append(
        {
            "type": ctype,
            "status": value,
            "lastTransitionTime": format_time(now()),
            "reason": reason,
            "message": message,
        }
    )


def reconcile_status(crd: Obj, others: Iterable[Obj], builtins: Iterable[ResourceDef]) -> Obj:
    """The CRD's status after accepting names: acceptedNames, NamesAccepted, Established."""
    status: Obj = copy.deepcopy(crd.get("status") or {})
    accepted, reason, message = accept_names(crd, others, builtins)
    status["acceptedNames"] = accepted
    ok = reason == "NoConflicts"
    set_condition(status, "NamesAccepted", "True" if ok else "False", reason, message)
    if not is_true({"status": status}, "Established"):
        if ok:
            set_condition(
                status,
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            )
        else:
            set_condition(
                status, "Established", "False", "NotAccepted", "not all names are accepted"
            )
    return status
