"""Runnable shell blocks of the Markdown pages under ``docs/``, and how to run one.

A fenced block whose info string is ``sh runnable`` is executed by ``tests/docs/test_doc_blocks.py``
as written, in a scratch directory that sees the repository's ``inventories/`` and ``docs/``;
``sh runnable lab`` needs a cluster and is executed by ``tests/lab/test_docs.py`` against one lab
cluster, in a directory holding that cluster's spec as ``cluster.yaml``. ``exit=N`` says the
block must exit N (default 0). A ``text output`` block right after a runnable block lists lines
its output (stdout and stderr) must contain, each within one output line; ``…`` in an expected
line stands for any text (paths, addresses, fingerprints that differ from run to run).

Blocks run under ``bash -euo pipefail`` with a ``berth`` on ``PATH`` that runs this checkout's
code, so a documented command that drifts from the code fails the suite.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
_FENCE = re.compile(r"^(`{3,})\s*(.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced block of a page."""

    page: str  # relative to docs/, e.g. "getting-started.md"
    line: int  # of the opening fence, 1-based
    info: tuple[str, ...]
    text: str
    expected: tuple[str, ...] = ()  # lines of the ``text output`` block that follows

    @property
    def runnable(self) -> bool:
        return len(self.info) >= 2 and self.info[0] == "sh" and self.info[1] == "runnable"

    @property
    def needs_lab(self) -> bool:
        return self.runnable and "lab" in self.info[2:]

    @property
    def exit_code(self) -> int:
        for word in self.info[2:]:
            if word.startswith("exit="):
                return int(word.removeprefix("exit="))
        return 0

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def parse(page: str, text: str) -> list[Block]:
    """Every fenced block of a Markdown text, ``text output`` blocks attached to the block
    before them."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        fence, info = match.group(1), tuple(match.group(2).split())
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and not lines[index].startswith(fence):
            body.append(lines[index])
            index += 1
        if index >= len(lines):
            raise ValueError(f"docs/{page}:{start + 1}: unclosed code block")
        index += 1
        if info[:2] == ("text", "output"):
            if not blocks or not blocks[-1].runnable:
                raise ValueError(f"docs/{page}:{start + 1}: output block after no runnable block")
            last = blocks.pop()
            expected = tuple(line for line in body if line)
            blocks.append(Block(last.page, last.line, last.info, last.text, expected))
            continue
        blocks.append(Block(page, start + 1, info, "\n".join(body) + "\n"))
    return blocks


def shows(expected: str, line: str) -> bool:
    """Whether ``line`` contains ``expected``, each ``…`` in it matching any text."""
    position = 0
    for part in expected.split("…"):
        found = line.find(part, position)
        if found < 0:
            return False
        position = found + len(part)
    return True


def runnable_blocks(*, lab: bool) -> list[Block]:
    """The runnable blocks of every page under docs/ (lab ones or pure ones), in page order."""
    out = []
    for path in sorted(DOCS.rglob("*.md")):
        page = str(path.relative_to(DOCS))
        out += [b for b in parse(page, path.read_text()) if b.runnable and b.needs_lab == lab]
    return out


def berth_shim(directory: Path) -> Path:
    """A ``bin/`` holding a ``berth`` that runs this checkout's CLI with this interpreter."""
    bin_dir = directory / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "berth"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m provisioner.cli.main "$@"\n')
    shim.chmod(0o755)
    return bin_dir


def run_block(
    block: Block, cwd: Path, bin_dir: Path, *, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run one block; assert its exit code and expected output lines, naming the block."""
    full_env = {
        **os.environ,
        **env,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": str(ROOT),
        "NO_COLOR": "1",
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.text],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    where = f"docs/{block.id}"
    output = result.stdout + result.stderr
    assert result.returncode == block.exit_code, (
        f"{where}: exit {result.returncode}, documented {block.exit_code}\n"
        f"--- block\n{block.text}--- stdout\n{result.stdout[-4000:]}--- stderr\n"
        f"{result.stderr[-4000:]}"
    )
    printed = output.splitlines()
    missing = [line for line in block.expected if not any(shows(line, got) for got in printed)]
    assert not missing, f"{where}: documented output not printed: {missing}\n--- output\n{output}"
    return result
