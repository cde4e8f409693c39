"""The exit-code tables of docs/troubleshooting.md and docs/ci.md follow the error taxonomy:
every code is listed, and each error class a row names exits with that row's code."""

from __future__ import annotations

import re

import pytest

import provisioner.cli.main  # noqa: F401 - imports every command area, so every error class exists
from provisioner.errors import ExitCode, ProvisionerError
from tests.docs.blocks import DOCS


def _error_classes() -> dict[str, type[ProvisionerError]]:
    found: dict[str, type[ProvisionerError]] = {}
    pending: list[type[ProvisionerError]] = [ProvisionerError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


def _table(page: str, heading: str) -> dict[int, str]:
    """Exit code -> the rest of its row, from the first table under ``heading``."""
    text = (DOCS / page).read_text()
    section = text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    return {
        int(match.group(1)): match.group(2)
        for match in re.finditer(r"^\| (\d+) \|(.*)$", section, re.MULTILINE)
    }


@pytest.mark.parametrize(
    ("page", "heading"),
    [("troubleshooting.md", "## Exit codes"), ("ci.md", "## Exit codes for scripts")],
)
def test_every_exit_code_is_documented(page: str, heading: str) -> None:
    assert sorted(_table(page, heading)) == sorted(int(code) for code in ExitCode)


def test_each_error_class_named_exits_with_its_rows_code() -> None:
    classes = _error_classes()
    named = 0
    for code, row in _table("troubleshooting.md", "## Exit codes").items():
        kinds = row.split("|")[0]
        for name in re.findall(r"`([A-Z][A-Za-z]+)`", kinds):
            assert name in classes, f"exit {code}: no error class {name}"
            assert int(classes[name].exit_code) == code, f"{name} exits {classes[name].exit_code}"
            named += 1
    assert named >= 10
