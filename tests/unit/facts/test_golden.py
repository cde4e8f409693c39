"""Golden tables for fact parsers: recorded command output -> typed value.

Each ``golden/<Fact>/<case>.yaml`` gives the fact's ``args``, the ``output`` and ``exit_code`` its
command produced on a real host, and the expected ``value`` (as :func:`to_data` renders it);
optionally the exact ``command``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.facts import files, network, packages, reach, system, systemd, users
from provisioner.facts.base import Fact, to_data

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(GOLDEN.glob("*/*.yaml"))
FACTS: dict[str, type[Fact[Any]]] = {
    cls.__name__: cls
    for module in (files, network, packages, reach, system, systemd, users)
    for cls in vars(module).values()
    if isinstance(cls, type) and issubclass(cls, Fact) and cls is not Fact
}


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def test_every_fact_has_golden_cases() -> None:
    covered = {case.parent.name for case in CASES}
    assert set(FACTS) <= covered, f"facts without golden cases: {sorted(set(FACTS) - covered)}"


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.stem}" for c in CASES])
def test_golden(case: Path) -> None:
    data = yaml.safe_load(case.read_text())
    args = {k: _tuples(v) for k, v in (data.get("args") or {}).items()}
    fact = FACTS[case.parent.name](**args)
    if "command" in data:
        assert fact.command() == data["command"]
    value = fact.parse(data.get("output", ""), data.get("exit_code", 0))
    assert to_data(value) == data["value"]


@pytest.mark.parametrize(
    ("cls", "args"),
    [
        (files.PathInfo, {"paths": ("relative/path",)}),
        (files.PathInfo, {"paths": ("/a\nb",)}),
        (systemd.UnitStates, {"units": ("x; rm -rf /",)}),
        (packages.Packages, {"names": ("Bad Name",)}),
        (users.Users, {"names": ("root:x",)}),
    ],
)
def test_arguments_that_parsers_could_not_represent_are_refused(
    cls: type[Fact[Any]], args: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match=r"not a|must be absolute"):
        cls(**args)
