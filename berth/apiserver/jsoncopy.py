"""A deep copy of JSON data at the speed of its serialisation.

Status patches and patches in general copy the stored object before changing it: with
``copy.deepcopy`` that was ~31 % of the API server's CPU in a 30-pod burst (bench/pods.py
``--profile``: ~2 ms per pod status patch, the stored pod's ``managedFields`` included), where
orjson writes and reads the same object back in a fraction of it. Only for JSON data (what
the store decodes and bodies parse to); what orjson refuses falls back to ``copy.deepcopy``.
A tuple comes back a list, as from JSON: not for objects built with tuples. A created pod's
shared, frozen field set (:class:`FrozenFields` in its managedFields) is JSON data too: it is
written as the dict it is and comes back a plain, mutable dict, as ``copy.deepcopy`` gives it;
without that every patch of a created pod took the slow copy.
"""

from __future__ import annotations

import copy
from typing import TypeVar

import orjson

from berth.apiserver.fieldmanager.fieldpath import FrozenFields

T = TypeVar("T")

# Types orjson would write as something else (datetimes as strings, dataclasses as objects,
# str/int/dict/list subclasses as their base): let them raise, and copy those slowly instead.
_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_STRICT |= orjson.OPT_PASSTHROUGH_SUBCLASS


def _frozen_as_dict(obj: object) -> dict[str, object]:
    # orjson asks about every subclass it passes through; only the frozen field set is plain
    if type(obj) is FrozenFields:
        return dict(obj)
    raise TypeError


def json_copy(obj: T) -> T:
    """A deep copy of ``obj``: equal to ``copy.deepcopy(obj)``, sharing nothing with it."""
    try:
        encoded = orjson.dumps(obj, default=_frozen_as_dict, option=_STRICT)
    except orjson.JSONEncodeError:  # not plain JSON (a 65-bit int, a tuple key, ...)
        return copy.deepcopy(obj)
    copied: T = orjson.loads(encoded)
    return copied
