"""The host side (``berth``) must never import the operator side (``provisioner``).

import-linter enforces the same contract in ``make lint``; this test also catches an import
hidden inside a function, which static analysis of the import graph can miss at run time.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_berth_modules_import_without_provisioner() -> None:
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / "berth").rglob("*.py")
    )
    assert modules, "no berth modules found"
    code = (
        "import sys, importlib\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'provisioner' or name.startswith('provisioner.'):\n"
        "            raise ImportError('berth imported ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


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
