"""berth.api.values.value_class: a frozen dataclass to the type checker, plain at run time."""

from __future__ import annotations

from mypy import api as mypy_api

from berth.api.values import value_class
from berth.apiserver.handlers import Call, Route
from berth.apiserver.rbac import Attributes
from berth.apiserver.satokens import Entry
from berth.store.interface import Event, KeyValue


@value_class
class Pair:
    left: int
    right: str = ""


def test_equal_and_hashed_by_fields_as_a_frozen_dataclass() -> None:
    assert Pair(1, "a") == Pair(1, "a")
    assert Pair(1) != Pair(2)
    assert hash(Pair(1, "a")) == hash(Pair(1, "a"))
    assert {Pair(1), Pair(1), Pair(2)} == {Pair(1), Pair(2)}
    assert repr(Pair(1)) == "Pair(left=1, right='')"


def test_slotted() -> None:
    assert Pair.__slots__ == ("left", "right")  # type: ignore[attr-defined]
    assert not hasattr(Pair(1), "__dict__")


def test_the_hot_path_classes_are_value_classes() -> None:
    classes: tuple[type, ...] = (Route, Call, Attributes, KeyValue, Event, Entry)
    for cls in classes:
        params = getattr(cls, "__dataclass_params__")  # noqa: B009 - not typed
        assert params.unsafe_hash, cls
        assert params.eq, cls
        assert not params.frozen, cls  # the type checker's, not __setattr__'s
        assert "__dict__" not in dir(cls), cls


def test_the_type_checker_refuses_an_assignment_to_a_field() -> None:
    """Immutability is the type checker's (mypy --strict runs over berth and its tests):
    an assignment to a field of any value class is an error where it is written."""
    source = (
        "from berth.api.values import value_class\n"
        "from berth.store.interface import KeyValue\n"
        "@value_class\n"
        "class R:\n"
        "    a: int\n"
        "R(1).a = 2\n"
        "KeyValue('k', b'', 1, 1).mod_revision = 3\n"
    )
    out, _err, status = mypy_api.run(
        ["--strict", "--no-incremental", "--follow-imports=silent", "-c", source]
    )
    assert status == 1, out
    assert '<string>:6: error: Property "a" defined in "R" is read-only' in out
    assert '<string>:7: error: Property "mod_revision" defined in "KeyValue" is read-only' in out
