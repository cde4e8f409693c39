"""Value classes of the hot request path: frozen to the type checker, plain at run time.

A frozen dataclass sets each field in ``__init__`` through ``object.__setattr__`` (its own
``__setattr__`` refuses): about 560 instructions a field, against a plain attribute store's
few dozen. A pod create builds a route, a call, the authorizer's attributes, the store's
key-value and event and a token-cache entry, ~30 fields: making them value classes took
29-37k instructions off the ~780k of a create (callgrind, bench/api_callgrind.py's count).

:func:`value_class` makes a slotted dataclass, hashed and compared by its fields as a frozen
one is, which ``mypy --strict`` (run over berth and its tests in CI) treats as frozen
(``dataclass_transform(frozen_default=True)``): an assignment to a field is a type error
where it is written, not a ``FrozenInstanceError`` when it runs.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def value_class(cls: type[T]) -> type[T]:
    """A slotted dataclass, equal and hashed by its fields, frozen to the type checker."""
    return dataclasses.dataclass(slots=True, unsafe_hash=True)(cls)
