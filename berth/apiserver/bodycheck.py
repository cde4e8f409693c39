"""The type and unknown-field checks of a write's body, remembered for pod templates.

Every body is checked for its fields' JSON types (:mod:`shapes`) and stripped of the fields
its schema does not declare (:func:`fieldvalidation.drop_unknown`). The pods of one
ReplicaSet, Job or DaemonSet arrive with equal bodies but for their names, so a pod body
found clean -- no type error, no unknown field, and left unchanged by both checks (the
type check drops declared fields that are null) -- is remembered, and an equal body later
skips both walks.

The key is the body as JSON with ``metadata.name`` blanked to ``""`` when it is a string:
both checks read only the name's type, so bodies with one key give one verdict. Anything
else, a non-string name included, stays in the key (``0`` and ``"0"`` differ: a JSON text
spells out each value's type). Only built-in pods are remembered (their schema never
changes at run time), and only bodies up to :data:`MAX_KEY` bytes.

The key is handed back to the caller (:meth:`BodyChecks.check_keyed`) when it describes the
body as it leaves the checks (a remembered body, or one both checks left unchanged): the
registry keys the created pod's field set by it too (see
``FieldManager._pod_create_fields``), so that one encoding of the body serves both memos.
"""

from __future__ import annotations

import enum
from typing import Any

import orjson

from berth.api.resources import ResourceDef

from . import shapes
from .openapi import duplicates, fieldvalidation
from .openapi.fieldvalidation import Findings
from .podtemplate import Remembered

MAX_KEY = 16 * 1024


class Unkeyed(enum.Enum):
    """No body key given (a key may be ``None``: not to be remembered)."""

    UNKEYED = enum.auto()


UNKEYED = Unkeyed.UNKEYED


def clean_key(rd: ResourceDef, obj: dict[str, Any]) -> bytes | None:
    """The memo key of a pod body (``None``: not to be remembered)."""
    if rd.group != "" or rd.kind != "Pod":
        return None
    m = obj.get("metadata")
    if isinstance(m, dict) and m.get("name").__class__ is str:
        obj = {**obj, "metadata": {**m, "name": ""}}
    try:
        data = orjson.dumps(obj)
    except TypeError:  # not JSON (an integer past 64 bits): checked in full
        return None
    return data if len(data) <= MAX_KEY else None


def key_ends(key: bytes, obj: dict[str, Any]) -> int:
    """The number of ``":`` (a key's end: :data:`duplicates.KEY_END`) in ``orjson.dumps(obj)``,
    from ``key = clean_key(rd, obj)``, for the duplicate-key check of the request body
    (:func:`duplicates.json_duplicates`), which would otherwise encode the body once more.

    The key is that encoding with a string ``metadata.name`` written ``""``: they differ only
    inside that string, whose own encoding holds a ``":`` only where the name has a ``"``
    (escaped ``\\"``) before a ``:``. Nothing around it can make one: the string follows a
    ``:`` and is followed by ``,`` or ``}``."""
    count = key.count(duplicates.KEY_END)
    name = obj["metadata"].get("name")
    if name.__class__ is str and '"' in name:
        count += orjson.dumps(name).count(duplicates.KEY_END)
    return count


class BodyChecks:
    """Runs the checks, remembering the pod bodies found clean (a small LRU)."""

    def __init__(self) -> None:
        self._clean: Remembered[tuple[str, bytes], bool] = Remembered()

    def check(self, rd: ResourceDef, obj: dict[str, Any]) -> Findings:
        """Raise 400 on a type error; drop unknown fields from ``obj`` and return them."""
        return self.check_keyed(rd, obj)[0]

    def check_keyed(
        self, rd: ResourceDef, obj: dict[str, Any], *, key: bytes | Unkeyed | None = UNKEYED
    ) -> tuple[Findings, bytes | None]:
        """:meth:`check`, and the memo key of ``obj`` as the checks leave it (``None``: not
        remembered, or the checks changed it). ``key``: ``clean_key(rd, obj)`` if the caller
        computed it already (for :func:`key_ends`), on ``obj`` as it is now."""
        if key is UNKEYED:
            key = clean_key(rd, obj)
        if key is not None and self._clean.get((rd.api_version, key)):
            return Findings(), key
        shapes.check(rd, obj)
        unknown = fieldvalidation.drop_unknown(rd, obj)
        if key is not None and not unknown.errors and clean_key(rd, obj) == key:
            self._clean.put((rd.api_version, key), True)
            return unknown, key
        return unknown, None
