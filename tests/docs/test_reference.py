"""The generated reference pages (docs/reference/) must match the code they are made from."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from provisioner import docsgen
from provisioner.cli.main import app
from provisioner.spec import json_schema

ROOT = Path(__file__).resolve().parents[2]


def test_committed_reference_pages_are_current() -> None:
    stale = docsgen.stale_pages(ROOT)
    assert not stale, (
        f"stale generated docs: {', '.join(map(str, stale))}; "
        f"regenerate them with `{docsgen.REGENERATE}` and commit the result"
    )


def test_spec_reference_names_every_schema_field() -> None:
    text = (ROOT / docsgen.SPEC_PAGE).read_text()
    schema = json_schema()
    keys = set(schema["properties"])
    for definition in schema["$defs"].values():
        keys.update(definition.get("properties", {}))
    for key in sorted(keys):
        assert f".{key}`" in text or f"`{key}`" in text, key


def test_cli_reference_has_every_command() -> None:
    text = (ROOT / docsgen.CLI_PAGE).read_text()
    for words in docsgen.command_paths(app):
        name = " ".join(("berth", *words))
        assert f"\n## {name}\n" in text
        assert f"Usage: {name} " in text


def test_check_names_the_stale_page_and_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(ROOT / "inventories", tmp_path / "inventories")
    assert docsgen.main([str(tmp_path)]) == 0
    assert docsgen.main(["--check", str(tmp_path)]) == 0
    page = tmp_path / docsgen.SPEC_PAGE
    page.write_text(page.read_text().replace('"10.244.0.0/16"', '"10.0.0.0/8"'))
    capsys.readouterr()
    assert docsgen.main(["--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "docs/reference/spec.md is stale" in err
    assert "make docs" in err


def test_cli_reference_does_not_depend_on_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = (ROOT / docsgen.CLI_PAGE).read_text()
    for name, value in (("COLUMNS", "40"), ("FORCE_COLOR", "1"), ("TERM", "xterm-256color")):
        monkeypatch.setenv(name, value)
    assert docsgen.cli_reference(app) == expected
