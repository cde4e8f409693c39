"""Every ``sh runnable`` block of docs/ that needs no hosts runs as documented (see blocks.py);
the lab ones run in tests/lab/test_docs.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs.blocks import DOCS, ROOT, Block, berth_shim, parse, run_block, runnable_blocks

PURE = runnable_blocks(lab=False)


@pytest.mark.parametrize("block", PURE, ids=[b.id for b in PURE])
def test_doc_block_runs_as_documented(block: Block, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    for name in ("inventories", "docs"):
        (work / name).symlink_to(ROOT / name)
    run_block(
        block,
        work,
        berth_shim(tmp_path),
        env={"BERTH_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path / "home")},
        timeout=120,
    )


def test_docs_have_runnable_blocks_of_both_kinds() -> None:
    assert len(PURE) >= 5
    assert len(runnable_blocks(lab=True)) >= 5


def test_parser_attaches_output_and_reads_exit_codes() -> None:
    text = "x\n```sh runnable exit=3\nfalse\n```\n\n```text output\nline one\n\nline two\n```\n"
    text += "```sh runnable lab\ntrue\n```\n```yaml\na: 1\n```\n"
    blocks = parse("p.md", text)
    assert [(b.line, b.exit_code, b.needs_lab, b.runnable) for b in blocks] == [
        (2, 3, False, True),
        (11, 0, True, True),
        (14, 0, False, False),
    ]
    assert blocks[0].expected == ("line one", "line two")


def test_a_drifted_block_fails_naming_its_page_and_line(tmp_path: Path) -> None:
    (block,) = parse("x.md", "```sh runnable\nberth validate --no-such-flag\n```\n")
    with pytest.raises(AssertionError, match=r"docs/x\.md:1: exit 2, documented 0"):
        run_block(block, tmp_path, berth_shim(tmp_path), env={}, timeout=60)
    (block,) = parse("x.md", "```sh runnable\necho hello\n```\n```text output\nbye\n```\n")
    with pytest.raises(AssertionError, match="documented output not printed"):
        run_block(block, tmp_path, berth_shim(tmp_path), env={}, timeout=60)


def test_every_page_is_linked_from_the_docs_index() -> None:
    index = (DOCS / "README.md").read_text()
    for page in sorted(DOCS.rglob("*.md")):
        if page.name != "README.md":
            assert str(page.relative_to(DOCS)) in index, page


_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub makes for a page's headings, plus explicit ``<a id>`` ones."""
    text = page.read_text()
    out = set(re.findall(r'<a id="([^"]+)"></a>', text))
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            heading = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^a-z0-9 _-]", "", heading).replace(" ", "-"))
    return out


@pytest.mark.parametrize(
    "page",
    [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    broken = []
    for target in _LINK.findall(page.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(target)
            continue
        if anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_readme_starts_with_the_two_commands_then_links_the_docs() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[:3] == ["# berth", "", "```sh"]
    assert lines[3].startswith("make demo ")
    assert lines[4].startswith("make test ")
    assert lines[5] == "```"
    first_paragraph = "\n".join(lines[6:12])
    assert "(docs/README.md)" in first_paragraph
