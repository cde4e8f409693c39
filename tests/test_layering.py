"""The host side (``berth``) must never import the operator side (``provisioner``), and
berth's client side (client, machinery, control loops, agents) never imports its server side
(apiserver, store): the two meet only in ``berth.api``.

import-linter enforces the same contracts (and the layers within each side) in ``make lint``;
these tests also catch an import hidden inside a function, which static analysis of the import
graph can miss at run time.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


CLIENT_SIDE = ("client", "machinery", "controllers", "scheduler", "agent", "vip")


def _modules(*packages: str) -> list[str]:
    return sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for package in packages
        for p in (ROOT / package).rglob("*.py")
    )


def _import_all_blocking(modules: list[str], blocked: tuple[str, ...]) -> str:
    """Import every module in a fresh interpreter that refuses ``blocked`` packages; the
    error output (empty when none was imported)."""
    code = (
        "import sys, importlib\n"
        f"blocked = {blocked!r}\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if any(name == b or name.startswith(b + '.') for b in blocked):\n"
        "            raise ImportError('imported ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return result.stderr if result.returncode else ""


def test_berth_modules_import_without_provisioner() -> None:
    modules = _modules("berth")
    assert modules, "no berth modules found"
    assert _import_all_blocking(modules, ("provisioner",)) == ""


def test_the_client_side_imports_without_the_server_side() -> None:
    modules = _modules(*(f"berth/{p}" for p in CLIENT_SIDE))
    assert "berth.controllers.daemonset" in modules
    assert _import_all_blocking(modules, ("berth.apiserver", "berth.store")) == ""


def test_provisioner_is_not_a_dependency_of_berth_by_grep() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "berth").rglob("*.py")
        if any(
            line.lstrip().startswith(("import provisioner", "from provisioner"))
            for line in p.read_text().splitlines()
        )
    ]
    assert offenders == []
