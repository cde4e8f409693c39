"""One operation's context on a fake host ``h`` whose facts a test gives: for unit tests that
evaluate an operation (what it would run) with no host behind it."""

from __future__ import annotations

from typing import Any

from provisioner.connectors.base import HostName
from provisioner.facts.base import FactSet
from provisioner.operations.base import HostRun, OpContext


def op_context(values: dict[Any, Any]) -> OpContext:
    """The context of host ``h`` whose facts are ``values`` (fact -> its value)."""
    facts = FactSet("h")
    for fact, value in values.items():
        facts.put(fact, value)
    return OpContext(HostName("h"), facts, HostRun())
