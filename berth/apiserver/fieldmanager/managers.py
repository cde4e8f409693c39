"""managedFields bookkeeping: who owns which fields, updated on every write.

An entry is identified by (manager, operation, apiVersion for Update, subresource): an
Apply entry holds exactly what its manager's last applied configuration set; an Update entry
accumulates what its manager's writes changed. A write takes the fields it changes away
from every other entry, and an apply that would change another manager's field is a
conflict unless forced (upstream's structured-merge ``Updater``).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

from .fieldpath import (
    FieldSet,
    difference,
    from_paths,
    intersection,
    members,
    recursive_difference,
    union,
    valid_fields,
)
from .schema import Node
from .typed import compare, ensure_named_fields_are_members, merge, remove_items, to_fieldset

APPLY = "Apply"
UPDATE = "Update"
MAX_UPDATE_MANAGERS = 10
"""Update entries beyond this many are merged, oldest first, into ``ancient-changes``."""
ANCIENT = "ancient-changes"
MAX_MANAGER_LENGTH = 128

# Fields nobody owns: identity and server-set metadata (upstream's stripMeta). Only these
# exact paths are dropped, not what lies below them.
_STRIPPED = from_paths(
    [
        ("f:apiVersion",),
        ("f:kind",),
        ("f:metadata",),
        ("f:metadata", "f:name"),
        ("f:metadata", "f:namespace"),
        ("f:metadata", "f:creationTimestamp"),
        ("f:metadata", "f:selfLink"),
        ("f:metadata", "f:uid"),
        ("f:metadata", "f:clusterName"),
        ("f:metadata", "f:generation"),
        ("f:metadata", "f:managedFields"),
        ("f:metadata", "f:resourceVersion"),
    ]
)
STATUS = from_paths([("f:status",)])


@dataclass
class Entry:
    manager: str
    operation: str
    api_version: str
    fields: FieldSet
    time: str | None = None
    subresource: str = ""

    @property
    def ident(self) -> tuple[str, str, str, str]:
        version = "" if self.operation == APPLY else self.api_version
        return (self.manager, self.operation, version, self.subresource)

    def encode(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
        }
        if self.time is not None:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = self.fields
        if self.subresource:
            out["subresource"] = self.subresource
        return out


Managed = dict[tuple[str, str, str, str], Entry]


def valid_manager(name: str) -> bool:
    return len(name) <= MAX_MANAGER_LENGTH and all(_printable(c) for c in name)


def _printable(c: str) -> bool:
    # Go's unicode.IsPrint: letters, marks, numbers, punctuation, symbols and ASCII space.
    return c == " " or unicodedata.category(c)[0] in "LMNPS"


def decode(raw: Any) -> Managed | None:
    """Entries from an object's ``metadata.managedFields``; ``None`` when malformed."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        return None
    out: Managed = {}
    for item in raw:
        if not isinstance(item, dict):
            return None
        operation = item.get("operation")
        api_version = item.get("apiVersion")
        manager = item.get("manager", "")
        subresource = item.get("subresource", "")
        fields = item.get("fieldsV1", {})
        when = item.get("time")
        if (
            operation not in (APPLY, UPDATE)
            or not isinstance(api_version, str)
            or not api_version
            or item.get("fieldsType") != "FieldsV1"
            or not isinstance(manager, str)
            or not isinstance(subresource, str)
            or not (when is None or isinstance(when, str))
            or not valid_fields(fields)
        ):
            return None
        entry = Entry(manager, operation, api_version, fields, when, subresource)
        out[entry.ident] = entry
    return out


def is_reset(raw: Any) -> bool:
    """An explicitly empty managedFields (``[]`` or ``[{}]``) asks to start over."""
    return isinstance(raw, list) and raw in ([], [{}])


def encode(managed: Managed) -> list[dict[str, Any]]:
    """Entries as upstream orders them: Apply before Update, then time, manager, version."""
    entries = sorted(
        managed.values(),
        key=lambda e: (e.operation, e.time or "", e.manager, e.api_version, e.subresource),
    )
    return [e.encode() for e in entries]


class Conflict:
    __slots__ = ("entry", "path")

    def __init__(self, entry: Entry, path: tuple[str, ...]) -> None:
        self.entry = entry
        self.path = path


class Conflicts(Exception):
    def __init__(self, conflicts: list[Conflict]) -> None:
        super().__init__(f"{len(conflicts)} conflicts")
        self.conflicts = conflicts


@dataclass
class Ignored:
    """What a write may not own: identity metadata always, ``status`` on a kind's main
    resource when it has a status subresource, and all but ``status`` through that
    subresource (upstream's reset fields)."""

    status: bool = False
    extra: FieldSet = field(default_factory=dict)
    only: str = ""
    """A subresource's writes own only this top-level field (``f:status`` for status)."""

    def strip(self, s: FieldSet) -> FieldSet:
        """``s`` without what no manager may own."""
        return self.filter(difference(s, _STRIPPED))

    def filter(self, s: FieldSet) -> FieldSet:
        """``s`` without the fields the write resets (a change to them neither conflicts
        nor takes them from their owners: the strategy throws it away)."""
        if self.only:
            return {k: v for k, v in s.items() if k == self.only}
        if self.status:
            s = recursive_difference(s, STATUS)
        if self.extra:
            s = recursive_difference(s, self.extra)
        return s


def _take_from_others(
    managed: Managed,
    me: tuple[str, str, str, str],
    changed: FieldSet,
    removed: FieldSet,
    *,
    force: bool,
) -> Managed:
    """Every other entry loses what this write changed and removed; without ``force``,
    changing another's field is a :class:`Conflicts`."""
    found: list[Conflict] = []
    out: Managed = {}
    for ident, entry in managed.items():
        if ident == me:
            out[ident] = entry
            continue
        taken = intersection(entry.fields, changed) if changed else {}
        if taken and not force:
            found.extend(Conflict(entry, p) for p in members(taken))
            continue
        fields = entry.fields
        if taken:
            fields = difference(fields, taken)
        if removed:
            fields = difference(fields, removed)
        if fields:
            out[ident] = (
                entry
                if fields is entry.fields
                else Entry(
                    entry.manager,
                    entry.operation,
                    entry.api_version,
                    fields,
                    entry.time,
                    entry.subresource,
                )
            )
    if found:
        raise Conflicts(found)
    return out


def update(
    managed: Managed,
    old: Any,
    new: Any,
    node: Node,
    *,
    manager: str,
    api_version: str,
    subresource: str,
    time: str,
    ignored: Ignored,
) -> Managed:
    """Ownership after a create, update or non-apply patch by ``manager``."""
    c = compare(old, new, node)
    if not c.changed():
        return managed
    changed = ignored.filter(union(c.modified, c.added))
    me = (manager, UPDATE, api_version, subresource)
    out = _take_from_others(managed, me, changed, ignored.filter(c.removed), force=True)
    previous = out.get(me)
    mine = changed if previous is None else union(difference(previous.fields, c.removed), changed)
    mine = ignored.strip(mine)
    if mine:
        out[me] = Entry(manager, UPDATE, api_version, mine, time, subresource)
    else:
        out.pop(me, None)
    return cap_updates(out)


def created_fields(new: Any, node: Node, *, ignored: Ignored) -> FieldSet:
    """The fields of the Update entry a create writes: what :func:`update` gives its writer
    over no entries and no old object (empty: no entry)."""
    c = compare(None, new, node)
    if not c.changed():
        return {}
    return ignored.strip(ignored.filter(union(c.modified, c.added)))


def cap_updates(managed: Managed) -> Managed:
    updaters = [e for e in managed.values() if e.operation == UPDATE]
    if len(updaters) <= MAX_UPDATE_MANAGERS:
        return managed
    updaters.sort(key=lambda e: (e.time or "", e.manager))
    out = dict(managed)
    excess = len(updaters) - MAX_UPDATE_MANAGERS
    # Each apiVersion's oldest entries fold into that version's ancient-changes entry.
    for entry in updaters:
        if excess <= 0:
            break
        bucket_ident = (ANCIENT, UPDATE, entry.api_version, "")
        if entry.ident == bucket_ident:
            continue
        bucket = out.get(bucket_ident)
        del out[entry.ident]
        if bucket is None:
            out[bucket_ident] = Entry(
                ANCIENT, UPDATE, entry.api_version, entry.fields, entry.time, ""
            )
        else:
            out[bucket_ident] = Entry(
                ANCIENT,
                UPDATE,
                entry.api_version,
                union(bucket.fields, entry.fields),
                entry.time,
                "",
            )
            excess -= 1
    return out


@dataclass
class ApplyResult:
    obj: Any
    managed: Managed
    changed: bool


def apply(
    managed: Managed,
    live: Any,
    config: Any,
    node: Node,
    *,
    manager: str,
    api_version: str,
    subresource: str,
    time: str,
    force: bool,
    ignored: Ignored,
) -> ApplyResult:
    """Merge ``config`` into ``live`` for ``manager``: it now owns exactly what it applied,
    what it applied before and no longer applies goes unless someone else owns it, and a
    change to another manager's field raises :class:`Conflicts` unless ``force``."""
    me = (manager, APPLY, "", subresource)
    merged = merge(live, config, node)
    last = managed.get(me)
    mine = ignored.strip(to_fieldset(config, node))
    out = dict(managed)
    out[me] = Entry(manager, APPLY, api_version, mine, time, subresource)
    if last is not None and last.fields:
        merged = _prune(merged, out, last.fields, node)
    c = compare(live, merged, node)
    out = _take_from_others(
        out,
        me,
        ignored.filter(union(c.modified, c.added)),
        ignored.filter(c.removed),
        force=force,
    )
    if not mine:
        out.pop(me, None)
    elif not c.changed() and last is not None:
        # A no-op apply keeps the entry's time (only its field set may have changed).
        out[me] = Entry(manager, APPLY, api_version, mine, last.time, subresource)
    return ApplyResult(merged, out, c.changed())


def _prune(merged: Any, managed: Managed, last: FieldSet, node: Node) -> Any:
    """Remove what the applier owned last time, no longer applies, and nobody else owns."""
    owned: FieldSet = {}
    for entry in managed.values():
        owned = union(owned, entry.fields)
    gone = difference(
        ensure_named_fields_are_members(last, node),
        ensure_named_fields_are_members(owned, node),
    )
    return remove_items(merged, gone, node) if gone else merged
