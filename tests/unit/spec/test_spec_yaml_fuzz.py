"""Hostile YAML (issue 19, point 3): alias bombs, deep nesting, random YAML and random edits of
the example specs end in a spec or in located problems (exit 3), never in a traceback or a hang.

Every example runs under a wall-clock alarm: a hang fails the example instead of stalling the
suite (hypothesis' own deadline only judges an example after it has finished).
"""

from __future__ import annotations

import contextlib
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.errors import SpecError
from provisioner.spec import parse_spec
from provisioner.spec.source import MAX_ALIAS_NODES, MAX_DEPTH
from tests.unit.spec.conftest import ONE_HOST, doc

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "inventories").glob("*.yaml"))
TEXTS = [path.read_text() for path in EXAMPLES]
LINE = re.compile(r"^f\.yaml:\d+:\d+: \S.*$")
SECONDS_PER_EXAMPLE = 10.0


class Hung(Exception):
    """The loader did not finish within its time bound."""


@contextlib.contextmanager
def bounded(seconds: float = SECONDS_PER_EXAMPLE) -> Iterator[None]:
    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise Hung(f"loading took more than {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def load_or_locate(text: str) -> list[str]:
    """The problems of ``text`` (empty if it loads); anything but a SpecError fails the test."""
    with bounded():
        try:
            parse_spec(text, filename="f.yaml")
        except SpecError as error:
            problems = error.problems
            assert problems
            for line in problems:
                assert LINE.match(line), line
                assert "\n" not in line
            return problems
    return []


def alias_bomb(levels: int, width: int) -> str:
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


# -- the cases from the issue ------------------------------------------------------------------


def position(problem: str) -> tuple[int, int]:
    found = re.match(r"^f\.yaml:(\d+):(\d+): ", problem)
    assert found, problem
    return int(found[1]), int(found[2])


def test_an_alias_bomb_is_refused_at_once_at_the_alias_that_crosses_the_bound() -> None:
    text = alias_bomb(9, 9)
    problems = load_or_locate(text)
    assert len(problems) == 1
    # Refused where the count crosses the bound: a1..a3 hold 1,737 aliased nodes, each *a3
    # weighs 1,549, so a4's sixth alias crosses 10,000, long before a9 would expand 9**9 of
    # them. A position, not a wall-clock bound: the loader read no further.
    line, column = position(problems[0])
    row = text.splitlines()[line - 1]
    assert row.startswith("a4: &a4 [")
    assert column - 1 == row.index("*a3") + 5 * len("*a3, ")
    assert re.match(r"^f\.yaml:\d+:\d+: YAML: aliases expand to more than 10000 nodes", problems[0])
    assert "hint:" in problems[0]


def test_a_merge_key_bomb_is_refused_too() -> None:
    lines = ["m0: &m0 {x: 1}"]
    for level in range(1, 10):
        refs = ", ".join([f"*m{level - 1}"] * 9)
        lines.append(f"m{level}: &m{level} {{<<: [{refs}], y{level}: 1}}")
    (problem,) = load_or_locate("\n".join(lines) + "\n")
    assert "aliases expand to more than" in problem


@pytest.mark.parametrize("opening", ["[", "{a: ", "- "])
def test_thousands_of_nested_brackets_are_one_located_problem(opening: str) -> None:
    if opening == "- ":
        text = "a:\n" + "".join("  " * i + "-\n" for i in range(5000))
    else:
        text = "a: " + opening * 5000 + "1" + ("]" if opening == "[" else "}") * 5000 + "\n"
    (problem,) = load_or_locate(text)
    assert f"YAML: nested more than {MAX_DEPTH} levels deep" in problem
    assert problem.startswith("f.yaml:")


def test_a_spec_within_the_bounds_still_loads() -> None:
    # aliases are fine in moderation: one label map shared by two hosts
    text = doc(
        """
        hosts:
          - {name: n1, address: 10.0.0.1, roles: [control-plane, worker], labels: &l {a: b}}
          - {name: n2, address: 10.0.0.2, roles: [worker], labels: *l}
        """
    )
    assert load_or_locate(text) == []
    nested = "x: " + "[" * (MAX_DEPTH - 2) + "1" + "]" * (MAX_DEPTH - 2) + "\n"
    (problem,) = load_or_locate(doc(ONE_HOST) + nested)
    assert "unknown field 'x'" in problem  # validated: the nesting itself was accepted


def test_aliases_just_within_the_bound_load() -> None:
    width = 9
    refs = ", ".join(["*a"] * width)
    rows = MAX_ALIAS_NODES // (width * 2) - 1
    text = "a: &a [1]\n" + "".join(f"r{i}: [{refs}]\n" for i in range(rows))
    problems = load_or_locate(text)
    assert not any("alias" in p for p in problems)
    assert any("apiVersion: required field is missing" in p for p in problems)  # validated


def test_validate_of_an_alias_bomb_exits_3_with_one_located_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from tests.unit.spec.test_spec_cli import run  # noqa: PLC0415 - the CLI test's runner

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb(9, 9))
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    for path in (bomb, deep):
        with bounded():
            code, out, err = run(monkeypatch, capsys, "validate", "-i", str(path))
        assert code == 3
        assert out == ""
        assert "Traceback" not in err
        assert err.startswith(f"{path}:")
        assert len(err.splitlines()) == 3  # the located line, the count, the hint


# -- property-based: random YAML and random edits of the example specs -----------------------

TOKENS = st.sampled_from(
    [
        "[", "]", "{", "}", ",", ":", ": ", " ", "  ", "\n", "\n  ", "- ", "? ", "&a ", "&b ",
        "*a", "*b", "<<: ", "!!str ", "!!binary ", "!!python/object ", "!x ", "'", '"', "# c",
        "|", ">", "---\n", "...\n", "%YAML 1.1\n", "key", "1", "1.5", "null", "~", "true",
        "10.0.0.1", "\t", "\\", "@", "`", "é", "\x00", "\ufeff", "\r",
    ]
)  # fmt: skip
yaml_texts = st.lists(TOKENS | st.text(max_size=3), max_size=60).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=yaml_texts)
def test_random_yaml_never_crashes_or_hangs(text: str) -> None:
    load_or_locate(text)


@st.composite
def edited_examples(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(TEXTS))
    for _ in range(draw(st.integers(1, 4))):
        lines = text.splitlines(keepends=True)
        kind = draw(
            st.sampled_from(["insert", "delete", "duplicate", "swap", "nest", "alias", "bomb"])
        )
        at = draw(st.integers(0, len(text)))
        if kind == "insert":
            text = text[:at] + draw(TOKENS | st.text(max_size=4)) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 20)) :]
        elif kind in ("duplicate", "swap") and lines:
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if kind == "duplicate":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
        elif kind == "nest":
            depth = draw(st.integers(1, 3 * MAX_DEPTH))
            text = text[:at] + "[" * depth + "]" * draw(st.integers(0, depth)) + text[at:]
        elif kind == "bomb":  # nested aliases at a line start (top level or inside a block)
            i = draw(st.integers(0, len(lines)))
            bomb = alias_bomb(draw(st.integers(1, 10)), draw(st.integers(1, 10)))
            text = "".join([*lines[:i], bomb, *lines[i:]])
        else:  # an anchor somewhere, aliases of it elsewhere, maybe many
            refs = ", ".join(["*z"] * draw(st.integers(1, 50)))
            text = text[:at] + "&z " + text[at:]
            end = draw(st.integers(0, len(text)))
            text = text[:end] + f"[{refs}]" + text[end:]
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=edited_examples())
def test_random_edits_of_the_example_specs_never_crash_or_hang(text: str) -> None:
    load_or_locate(text)


@settings(max_examples=60, deadline=None)
@given(levels=st.integers(1, 12), width=st.integers(1, 12))
def test_any_alias_tree_loads_or_is_refused_quickly(levels: int, width: int) -> None:
    text = doc(ONE_HOST) + alias_bomb(levels, width)
    problems = load_or_locate(text)  # a hang is caught by load_or_locate's alarm
    expanded = sum(width**level for level in range(1, levels + 1))
    if expanded > 2 * MAX_ALIAS_NODES:
        assert any("aliases expand to more than" in p for p in problems)


def test_many_aliases_of_a_long_string_are_refused_too() -> None:
    labels = ", ".join(f"k{i}: *x" for i in range(2000))
    host = "{name: n1, address: 10.0.0.1, roles: [worker], labels: {" + labels + "}}"
    text = doc(f"hosts:\n  - {host}")
    text = text.replace("spec:\n", f'x: &x "{"a" * 1_000_000}"\nspec:\n', 1)
    (problem,) = load_or_locate(text)
    assert "aliases expand to more than" in problem
    # refused at the first alias: one alias of a 1 MB string already weighs 15,625 nodes
    line, column = position(problem)
    host_line = text.splitlines()[line - 1]
    assert column == host_line.index("k0: *x") + len("k0: ") + 1
