"""YAML with positions: parse a document and remember where every key and value starts.

PyYAML's composer gives each node a start mark. We walk the composed node tree once and index
the marks by *path* (``("spec", "hosts", 2, "address")``), the same shape as pydantic's error
locations, so any problem found later can be pointed at ``FILE:LINE:COL``. Duplicate keys, which
PyYAML silently resolves to the last one, are reported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from provisioner.spec.problems import Path, Problem


@dataclass(frozen=True)
class Position:
    """A 1-based line and column in the spec file."""

    line: int
    column: int


@dataclass
class SourceMap:
    """Where each path's key and value start in one YAML file."""

    filename: str
    values: dict[Path, Position] = field(default_factory=dict)
    keys: dict[Path, Position] = field(default_factory=dict)

    def locate(self, path: Path, *, at_key: bool = False) -> Position:
        """The position of ``path``; for a path that is absent (a missing field), the position of
        its nearest present ancestor."""
        if at_key and path in self.keys:
            return self.keys[path]
        for end in range(len(path), -1, -1):
            found = self.values.get(path[:end])
            if found is not None:
                return found
        return Position(1, 1)


class YamlSyntaxError(Exception):
    """The text is not YAML; carries a located problem line."""

    def __init__(self, problem: Problem, position: Position) -> None:
        super().__init__(problem.message)
        self.problem = problem
        self.position = position


_SYNTAX_HINTS = (
    ("found character '\\t'", "indent with spaces; YAML does not allow tabs"),
    (
        "mapping values are not allowed here",
        "quote a value that contains ': ', or fix the indentation",
    ),
    ("expected a single document", "put one Cluster document in the file (remove the extra '---')"),
    (
        "could not find expected ':'",
        "a key needs ': ' after it, or a multi-line value needs quotes",
    ),
)


def _mark_position(mark: Any) -> Position:
    return Position(int(mark.line) + 1, int(mark.column) + 1)


class _Loader(yaml.SafeLoader):
    """SafeLoader without implicit timestamps: a spec has no dates, and a value such as
    ``2024-13-01`` must reach validation as text instead of failing inside the YAML library."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


def _syntax_error(message: str, position: Position, hint: str | None = None) -> YamlSyntaxError:
    return YamlSyntaxError(Problem((), f"YAML syntax: {message}", hint=hint), position)


def _position_in(text: str, offset: int) -> Position:
    before = text[:offset]
    return Position(before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1)


def parse_yaml(text: str, filename: str) -> tuple[Any, SourceMap, list[Problem]]:
    """Parse ``text`` into plain Python data, its source map and any duplicate-key problems.

    Raises :class:`YamlSyntaxError` when the text is not valid YAML.
    """
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # the reader rejects forbidden characters right here
        node = loader.get_single_node()
        if node is not None:
            _reject_cycles(node, [])
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        position = _mark_position(mark) if mark is not None else Position(1, 1)
        message = " ".join(x for x in (error.context, error.problem) if x) or "invalid YAML"
        hint = next((h for needle, h in _SYNTAX_HINTS if needle in str(error)), None)
        raise _syntax_error(message, position, hint) from None
    except yaml.reader.ReaderError as error:
        code = error.character if isinstance(error.character, int) else ord(error.character)
        raise _syntax_error(
            f"character U+{code:04X} is not allowed in YAML",
            _position_in(text, error.position),
            "remove it (binary data does not belong in a spec)",
        ) from None
    except (yaml.YAMLError, ValueError, TypeError) as error:
        raise _syntax_error(f"cannot read the document: {error}", Position(1, 1)) from None
    finally:
        if loader is not None:
            loader.dispose()
    source = SourceMap(filename)
    problems: list[Problem] = []
    if node is not None:
        _index(node, (), source, problems)
    return data, source, problems


def _reject_cycles(node: yaml.Node, ancestors: list[yaml.Node]) -> None:
    """An alias to a mapping or list that contains it makes an endless structure."""
    if any(node is a for a in ancestors):
        raise _syntax_error(
            "an alias refers to a mapping or list that contains it",
            _mark_position(node.start_mark),
            "an anchor (&name) cannot be used (*name) inside itself",
        )
    if isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    else:
        return
    ancestors.append(node)
    for child in children:
        _reject_cycles(child, ancestors)
    ancestors.pop()


def _index(node: yaml.Node, path: Path, source: SourceMap, problems: list[Problem]) -> None:
    source.values[path] = _mark_position(node.start_mark)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, Position] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            child = (*path, key)
            key_position = _mark_position(key_node.start_mark)
            if key in seen:
                first = seen[key]
                problems.append(
                    Problem(
                        child,
                        f"duplicate key (first at line {first.line}); YAML keeps only the last one",
                        hint="remove one of them",
                        position=(key_position.line, key_position.column),
                    )
                )
                continue
            seen[key] = key_position
            source.keys[child] = key_position
            _index(value_node, child, source, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index(item, (*path, index), source, problems)
