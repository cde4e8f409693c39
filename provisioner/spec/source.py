"""YAML with positions: parse a document and remember where every key and value starts.

PyYAML's composer gives each node a start mark. We walk the composed node tree once and index
the marks by *path* (``("spec", "hosts", 2, "address")``), the same shape as pydantic's error
locations, so any problem found later can be pointed at ``FILE:LINE:COL``. Duplicate keys, which
PyYAML silently resolves to the last one, are reported here.

Two limits keep a hostile or broken file from hanging or crashing the loader, each reported at
the node that crossed it: nesting deeper than :data:`MAX_DEPTH` (the composer recurses once per
level: thousands of ``[`` would end in a RecursionError), and aliases that would expand to more
than :data:`MAX_ALIAS_NODES` nodes (the "billion laughs": a few lines of ``&a``/``*a`` that every
later walk, validation included, would expand to billions of nodes; a long scalar counts as one
node per :data:`SCALAR_BYTES_PER_NODE` characters).
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


MAX_DEPTH = 64
"""Deepest nesting of mappings and lists a spec may have (a real one needs about 6)."""
MAX_ALIAS_NODES = 10_000
"""Most nodes that aliases (``*name``, ``<<: *name``) may add to a spec once expanded."""
SCALAR_BYTES_PER_NODE = 64
"""A scalar counts as one node per this many characters (aliases of long strings add up)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader without implicit timestamps (a spec has no dates, and a value such as
    ``2024-13-01`` must reach validation as text instead of failing inside the YAML library),
    with the nesting and alias limits of the module docstring."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._alias_nodes = 0
        self._sizes: dict[int, int] = {}  # id(node) -> its node count, aliases expanded
        self._composed = 0

    def _next_mark(self) -> Any:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in the stubs
        return event.start_mark

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        # PyYAML's composer calls this once per node and per alias, recursively; counting here
        # bounds the work before anything expands the aliases.
        if self.check_event(yaml.AliasEvent):
            mark = self._next_mark()
            node = super().compose_node(parent, index)
            size = self._sizes.get(id(node), 1)  # 1: an alias to an unfinished anchor (a cycle)
            self._alias_nodes += size
            self._composed += size
            if self._alias_nodes > MAX_ALIAS_NODES:
                raise _limit_error(
                    f"aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?)",
                    mark,
                    "write the values out, or use fewer nested aliases",
                )
            return node
        if self._depth >= MAX_DEPTH:
            raise _limit_error(
                f"nested more than {MAX_DEPTH} levels deep",
                self._next_mark(),
                "a cluster spec nests only a few levels; check the brackets and indentation",
            )
        self._depth += 1
        before = self._composed
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._composed += 1
        if isinstance(node, yaml.ScalarNode):
            # a long scalar weighs more: 10,000 aliases of a 1 MB string are 10 GB to validate
            self._composed += len(node.value) // SCALAR_BYTES_PER_NODE
        self._sizes[id(node)] = self._composed - before
        return node


def _syntax_error(message: str, position: Position, hint: str | None = None) -> YamlSyntaxError:
    return YamlSyntaxError(Problem((), f"YAML syntax: {message}", hint=hint), position)


def _limit_error(message: str, mark: Any, hint: str) -> YamlSyntaxError:
    return YamlSyntaxError(Problem((), f"YAML: {message}", hint=hint), _mark_position(mark))


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
