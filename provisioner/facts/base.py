"""A fact is one remote command plus a pure parser into a typed value.

Facts are frozen dataclasses whose fields are the fact's arguments (``PathInfo(paths=(...))``),
so a fact value is its own cache key. :meth:`Fact.command` returns a POSIX ``sh`` snippet;
:meth:`Fact.parse` turns that snippet's stdout and exit code into a value and never touches the
network, which is why facts are tested only with recorded output (``tests/unit/facts/``).
Gathering batches many facts into one script and one round-trip (:mod:`provisioner.facts.gather`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from provisioner.errors import FactError

T = TypeVar("T")


_CLASSES: dict[str, type[Fact[Any]]] = {}
_KEYS: dict[Fact[Any], str] = {}
"""Each fact's key, by the fact (frozen dataclasses compare and hash by class and fields)."""


def fact_class(name: str) -> type[Fact[Any]] | None:
    """The fact class called ``name`` (among those imported), for rebuilding a fact from its
    :meth:`Fact.key`."""
    return _CLASSES.get(name)


class Fact(ABC, Generic[T]):
    """Base of every fact (subclasses are ``@dataclass(frozen=True)``)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _CLASSES[cls.__name__] = cls

    volatile: ClassVar[bool] = False
    """True for facts that change by themselves (time, free space): left out of fingerprints."""

    solo: ClassVar[bool] = False
    """True for facts whose value depends on *when* they are read (the clock): gathered in their
    own short round-trip, best of three, so ``FactSet.times`` bounds the reading tightly."""

    combinable: ClassVar[bool] = False
    """True for facts whose class can read many instances with one command (:meth:`combine`)
    and cut each one's own output from it (:meth:`portion`): gathering then runs that one
    command per batch instead of one per fact (files: one ``find`` for all paths)."""

    @classmethod
    def combine(cls, facts: Sequence[Fact[Any]]) -> Fact[Any]:
        """One fact of this class that reads everything ``facts`` (all of this class) read."""
        raise NotImplementedError(f"{cls.__name__} facts are not combinable")

    def portion(self, output: str) -> str:
        """This fact's own output, cut from the output of a :meth:`combine` d fact that covers
        it; always the same text for the same host state however facts were combined."""
        return output

    @property
    def name(self) -> str:
        return type(self).__name__

    def key(self) -> str:
        """A stable text key: the fact's name and arguments (used in plans and golden tests)."""
        # computed once per fact: a fact is frozen and its arguments immutable, and a plan asks
        # for the key of each of its facts many times (parsing, fingerprints, the fact memo),
        # and every host's operations make equal facts anew (equal: same class, same fields)
        cached: str | None = self.__dict__.get("_key")
        if cached is None:
            cached = _KEYS.get(self)
            if cached is None:
                args = json.dumps(to_data(self), sort_keys=True, separators=(",", ":"))
                cached = _KEYS[self] = f"{self.name}{args}"
            self.__dict__["_key"] = cached
        return cached

    @abstractmethod
    def command(self) -> str:
        """The ``sh`` snippet whose stdout :meth:`parse` reads."""

    @abstractmethod
    def parse(self, output: str, exit_code: int) -> T:
        """Turn the snippet's stdout and exit code into the fact's value (pure)."""


def to_data(value: Any) -> Any:
    """A JSON-able rendering of a fact value (dataclasses, tuples, sets, dicts, scalars)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_data(v) for k, v in value.items()}
    if isinstance(value, frozenset | set):
        return sorted((to_data(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, tuple | list):
        return [to_data(v) for v in value]
    return value


class FactSet:
    """The gathered facts of one host: typed lookup plus the raw outputs for fingerprints."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._values: dict[Fact[Any], Any] = {}
        self._raw: dict[str, tuple[str, int]] = {}
        self.round_trip: tuple[float, float] | None = None
        self.times: dict[str, tuple[float, float]] = {}
        """Per fact key: local times its gathering command was sent and answered."""
        """Local wall-clock times the gathering command was sent and answered (clock skew)."""

    def add(self, fact: Fact[T], output: str, exit_code: int) -> T:
        try:
            value = fact.parse(output, exit_code)
        except (ValueError, IndexError, KeyError) as error:
            raise FactError(
                f"{self.host}: cannot parse fact {fact.key()}: {error}; output began "
                f"{output[:200]!r}"
            ) from None
        self._values[fact] = value
        if not fact.volatile:
            self._raw[fact.key()] = (output, exit_code)
        return value

    def put(self, fact: Fact[T], value: T) -> None:
        """Record an already-known value (simulated hosts in tests; not fingerprinted)."""
        self._values[fact] = value

    def get(self, fact: Fact[T]) -> T:
        """The value of ``fact``; a fact nobody asked to gather is a programming error."""
        try:
            value: T = self._values[fact]
        except KeyError:
            raise KeyError(f"fact {fact.key()} was not gathered on {self.host}") from None
        return value

    def __contains__(self, fact: object) -> bool:
        return fact in self._values

    def update(self, other: FactSet) -> None:
        self._values.update(other._values)
        self._raw.update(other._raw)
        self.times.update(other.times)

    def fingerprint(self, facts: list[Fact[Any]] | None = None) -> str:
        """SHA-256 over the raw outputs of non-volatile facts (all, or the ``facts`` given)."""
        keys = sorted(self._raw) if facts is None else sorted({f.key() for f in facts})
        digest = hashlib.sha256()
        for key in keys:
            if key not in self._raw:
                continue
            output, code = self._raw[key]
            digest.update(f"{key}\0{code}\0{output}\0".encode())
        return digest.hexdigest()

    def digests(self, facts: list[Fact[Any]]) -> dict[str, str]:
        """Per-fact SHA-256 of the raw output (non-volatile facts only), keyed by fact key."""
        out: dict[str, str] = {}
        for key in sorted({f.key() for f in facts}):
            if key in self._raw:
                output, code = self._raw[key]
                out[key] = hashlib.sha256(f"{code}\0{output}".encode()).hexdigest()
        return out

    def data(self) -> dict[str, Any]:
        """Every gathered value as JSON-able data, keyed by :meth:`Fact.key`."""
        return {fact.key(): to_data(value) for fact, value in self._values.items()}
