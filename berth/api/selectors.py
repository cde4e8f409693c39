"""Label and field selectors: one parser and one matcher for the API server and its clients.

Label selectors follow apimachinery's ``labels.Parse``: a small lexer (identifiers, ``=``,
``==``, ``!=``, ``in``, ``notin``, ``(``, ``)``, ``,``, ``!``, ``>``, ``<``), requirements
sorted by key, keys checked as qualified names and values as label values, ``k in ()`` the set
holding ``""``. ``metav1.LabelSelector`` objects (``matchLabels`` + ``matchExpressions``) and
node selector requirements (which add ``Gt``/``Lt``) turn into the same :class:`Requirement`.

Field selectors follow ``fields.ParseSelector``: terms split on unescaped commas, each
``field=value``, ``field==value`` or ``field!=value`` with ``\\,``, ``\\=`` and ``\\\\``
escapes in the value. Which fields a kind supports is the API server's business: the caller
passes the getters (:func:`parse_field_selector`).

Errors are :class:`SelectorError` (a ``ValueError``); the API server answers them with 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

# selection.Operator values, as upstream spells them in Requirement.String()
EQUALS = "="
DOUBLE_EQUALS = "=="
NOT_EQUALS = "!="
IN = "in"
NOT_IN = "notin"
EXISTS = "exists"
DOES_NOT_EXIST = "!"
GREATER_THAN = "gt"
LESS_THAN = "lt"

# A selector string longer than this is refused before it is scanned: a query string that
# long is an attack, not a selector.
MAX_SELECTOR_LENGTH = 16 * 1024

# The operator names of matchExpressions (metav1.LabelSelector) and of node selector
# requirements (which also allow Gt and Lt).
_LABEL_SELECTOR_OPERATORS = {
    "In": IN,
    "NotIn": NOT_IN,
    "Exists": EXISTS,
    "DoesNotExist": DOES_NOT_EXIST,
}
_NODE_SELECTOR_OPERATORS = _LABEL_SELECTOR_OPERATORS | {"Gt": GREATER_THAN, "Lt": LESS_THAN}

_NAME_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_INT64 = re.compile(r"^[+-]?[0-9]{1,19}$")


class SelectorError(ValueError):
    """A selector that does not parse, or a requirement that is not valid."""


def _is_int64(text: str) -> bool:
    return bool(_INT64.match(text)) and -(2**63) <= int(text) < 2**63


def label_key_errors(key: str) -> list[str]:
    """Why ``key`` is not a label key (a qualified name: ``[prefix/]name``); empty when it is."""
    prefix, slash, name = key.rpartition("/")
    errs: list[str] = []
    if slash and not prefix:
        errs.append("prefix part must be non-empty")
    elif slash and (len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix)):
        errs.append("prefix part must be a lowercase RFC 1123 subdomain")
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    elif not _NAME_RE.match(name):
        errs.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character"
        )
    return errs


def label_value_errors(value: str) -> list[str]:
    """Why ``value`` is not a label value; empty when it is."""
    if len(value) > 63:
        return ["must be no more than 63 characters"]
    if value and not _NAME_RE.match(value):
        return [
            "a valid label must be an empty string or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character"
        ]
    return []


@dataclass(frozen=True, slots=True)
class Requirement:
    """One requirement on a label set: ``key`` ``op`` ``values`` (op is a selection operator,
    e.g. :data:`IN`; the values of set operators are sorted)."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.op
        if op in (EQUALS, DOUBLE_EQUALS, IN):
            return self.key in labels and labels[self.key] in self.values
        if op in (NOT_EQUALS, NOT_IN):
            return self.key not in labels or labels[self.key] not in self.values
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        if op in (GREATER_THAN, LESS_THAN):
            have = labels.get(self.key)
            if have is None or not _is_int64(have) or len(self.values) != 1:
                return False
            if not _is_int64(self.values[0]):
                return False
            a, b = int(have), int(self.values[0])
            return a > b if op == GREATER_THAN else a < b
        return False

    def __str__(self) -> str:
        op = self.op
        if op == EXISTS:
            return self.key
        if op == DOES_NOT_EXIST:
            return f"!{self.key}"
        if op in (IN, NOT_IN):
            return f"{self.key} {op} ({','.join(self.values)})"
        if op == GREATER_THAN:
            return f"{self.key}>{self.values[0]}"
        if op == LESS_THAN:
            return f"{self.key}<{self.values[0]}"
        return f"{self.key}{op}{self.values[0]}"


def requirement(key: str, op: str, values: tuple[str, ...] | list[str] = ()) -> Requirement:
    """A validated :class:`Requirement` (upstream's ``labels.NewRequirement``)."""
    errs = [f"key: Invalid value: {key!r}: {e}" for e in label_key_errors(key)]
    vals = tuple(values)
    if op in (IN, NOT_IN):
        if not vals:
            errs.append("values: for 'in', 'notin' operators, values set can't be empty")
        vals = tuple(sorted(set(vals)))
    elif op in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(vals) != 1:
            errs.append("values: exact-match compatibility requires one single value")
    elif op in (EXISTS, DOES_NOT_EXIST):
        if vals:
            errs.append("values: values set must be empty for exists and does not exist")
    elif op in (GREATER_THAN, LESS_THAN):
        if len(vals) != 1:
            errs.append("values: for 'Gt', 'Lt' operators, exactly one value is required")
        errs.extend(
            f"values[{i}]: for 'Gt', 'Lt' operators, the value must be an integer"
            for i, v in enumerate(vals)
            if not _is_int64(v)
        )
    else:
        errs.append(f"operator: Unsupported value: {op!r}")
    for i, v in enumerate(vals):
        errs.extend(f"values[{i}][{key}]: Invalid value: {v!r}: {e}" for e in label_value_errors(v))
    if errs:
        raise SelectorError("; ".join(errs))
    return Requirement(key, op, vals)


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A conjunction of requirements, sorted by key; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if not self.requirements:
            return True
        have = labels or {}
        return all(r.matches(have) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


EVERYTHING = LabelSelector(())


def _sorted(reqs: list[Requirement]) -> LabelSelector:
    # stable, by key only: upstream sorts with sort.Sort(ByKey), requirements on one key keep
    # their order of appearance as far as a stable sort allows
    return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))


# --- the label selector lexer and parser ------------------------------------------------------

_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")
_SYMBOLS = {")", ",", "!", "==", "=", ">", "<", "!=", "("}
_KEYWORDS = {"in", "notin"}
_ID = "identifier"
_END = "end of string"


def _lex(text: str) -> list[tuple[str, str]]:
    """``(token, literal)`` pairs; token is the symbol, a keyword, :data:`_ID` or :data:`_END`."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n:
            out.append((_END, ""))
            return out
        if text[i] in _SPECIAL:
            # the longest run of special characters that is still a symbol
            j, best = i, ""
            while j < n and text[j] in _SPECIAL:
                if text[i : j + 1] in _SYMBOLS:
                    best = text[i : j + 1]
                elif best:
                    break
                j += 1
            if not best:
                raise SelectorError(f"error expected: keyword found '{text[i:j]}'")
            out.append((best, best))
            i += len(best)
            continue
        j = i
        while j < n and text[j] not in _SPECIAL and text[j] not in _WHITESPACE:
            j += 1
        word = text[i:j]
        out.append((word if word in _KEYWORDS else _ID, word))
        i = j


class _Parser:
    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.pos = 0

    def peek(self, *, values: bool = True) -> tuple[str, str]:
        tok, lit = self.items[self.pos]
        # in value context the keywords are plain identifiers ("a in (in)")
        return (_ID if values and tok in _KEYWORDS else tok), lit

    def take(self, *, values: bool = True) -> tuple[str, str]:
        item = self.peek(values=values)
        self.pos += 1
        return item

    def parse(self) -> LabelSelector:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self.peek()
            if tok == _END:
                return _sorted(reqs)
            if tok not in (_ID, "!"):
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                reqs.append(self.requirement())
            except SelectorError as exc:
                raise SelectorError(f"unable to parse requirement: {exc}") from None
            tok, lit = self.take()
            if tok == _END:
                return _sorted(reqs)
            if tok != ",":
                raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            tok, lit = self.peek()
            if tok not in (_ID, "!"):
                raise SelectorError(f"found '{lit}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        tok, lit = self.take()
        negated = tok == "!"
        if negated:
            tok, lit = self.take()
        if tok != _ID:
            raise SelectorError(f"found '{lit}', expected: identifier")
        key = lit
        errs = label_key_errors(key)
        if errs:
            raise SelectorError(f"Invalid value: {key!r}: {'; '.join(errs)}")
        if negated:
            return requirement(key, DOES_NOT_EXIST)
        if self.peek()[0] in (_END, ","):
            return requirement(key, EXISTS)
        tok, lit = self.take(values=False)
        ops = {
            "in": IN,
            "notin": NOT_IN,
            "=": EQUALS,
            "==": DOUBLE_EQUALS,
            "!=": NOT_EQUALS,
            ">": GREATER_THAN,
            "<": LESS_THAN,
        }
        op = ops.get(tok)
        if op is None:
            raise SelectorError(f"found '{lit}', expected: {', '.join(ops)}")
        values = self.set_values() if op in (IN, NOT_IN) else [self.exact_value()]
        return requirement(key, op, values)

    def set_values(self) -> list[str]:
        tok, lit = self.take()
        if tok != "(":
            raise SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self.peek()
        if tok == ")":
            self.take()
            return [""]
        if tok not in (_ID, ","):
            raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")
        values: list[str] = []
        while True:
            tok, lit = self.take()
            if tok == _ID:
                values.append(lit)
                nxt, nlit = self.peek()
                if nxt == ")":
                    self.take()
                    return values
                if nxt != ",":
                    raise SelectorError(f"found '{nlit}', expected: ',' or ')'")
            elif tok == ",":
                # "(,a", "a,,b" and "a,)" each hold an empty value
                if not values:
                    values.append("")
                nxt, _ = self.peek()
                if nxt == ")":
                    self.take()
                    values.append("")
                    return values
                if nxt == ",":
                    values.append("")
            else:
                raise SelectorError(f"found '{lit}', expected: ',', or identifier")

    def exact_value(self) -> str:
        tok, lit = self.peek()
        if tok in (_END, ","):
            return ""
        self.take()
        if tok != _ID:
            raise SelectorError(f"found '{lit}', expected: identifier")
        return lit


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse the string form (``labelSelector=``, ``kubectl -l``); raises
    :class:`SelectorError`."""
    if text is None or not text.strip():
        return EVERYTHING
    if len(text) > MAX_SELECTOR_LENGTH:
        raise SelectorError(f"selector longer than {MAX_SELECTOR_LENGTH} characters")
    return _Parser(text).parse()


def _expression_requirement(expr: Any, operators: Mapping[str, str]) -> Requirement:
    if not isinstance(expr, Mapping):
        raise SelectorError("a selector expression must be an object")
    op = operators.get(str(expr.get("operator")))
    if op is None:
        raise SelectorError(f"{expr.get('operator')!r} is not a valid label selector operator")
    values = expr.get("values") or ()
    if not isinstance(values, list | tuple):
        raise SelectorError("values must be a list")
    return requirement(str(expr.get("key", "")), op, [str(v) for v in values])


def label_selector_from_object(sel: Any) -> LabelSelector:
    """A ``metav1.LabelSelector`` (``matchLabels`` + ``matchExpressions``) as a selector
    (upstream's ``LabelSelectorAsSelector``). A missing or empty object is the empty
    selector; what a missing selector means (nothing, or everything) is the caller's call.
    Raises :class:`SelectorError` on an invalid key, value or operator."""
    if not isinstance(sel, Mapping) or not sel:
        return EVERYTHING
    reqs = [
        requirement(str(k), EQUALS, [str(v)]) for k, v in (sel.get("matchLabels") or {}).items()
    ]
    reqs.extend(
        _expression_requirement(e, _LABEL_SELECTOR_OPERATORS)
        for e in sel.get("matchExpressions") or ()
    )
    return _sorted(reqs)


def selector_from_set(labels: Mapping[str, str]) -> LabelSelector:
    """Equality on every label of ``labels`` (a Service's ``spec.selector``), unvalidated as
    upstream's ``SelectorFromValidatedSet``: the API server validated the labels."""
    return _sorted([Requirement(str(k), EQUALS, (str(v),)) for k, v in labels.items()])


UNSATISFIABLE = Requirement("", "unsatisfiable")
"""A requirement no label set meets: stands in for a node selector term that does not parse
(upstream's scheduler lets such a term match no node)."""


def node_selector_requirements(exprs: Any) -> tuple[Requirement, ...]:
    """The ``matchExpressions`` (or ``matchFields``) of a node selector term, where ``Gt``
    and ``Lt`` are allowed too. Raises :class:`SelectorError`."""
    return tuple(_expression_requirement(e, _NODE_SELECTOR_OPERATORS) for e in exprs or ())


def selector_to_string(sel: Any) -> str:
    """A ``metav1.LabelSelector`` in the string form (``app=web,tier in (a,b)``), as a Scale's
    ``status.selector`` and printer columns show it; ``""`` for none or an invalid one."""
    try:
        return str(label_selector_from_object(sel))
    except SelectorError:
        return ""


# --- field selectors --------------------------------------------------------------------------

FieldGetter = Callable[[Obj], str]


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    field: str
    negate: bool
    value: str


@dataclass(frozen=True, slots=True)
class FieldSelector:
    """Field requirements with the getter that reads each field from an object."""

    requirements: tuple[FieldRequirement, ...]
    getters: tuple[FieldGetter, ...]

    def matches(self, obj: Obj) -> bool:
        for req, getter in zip(self.requirements, self.getters, strict=True):
            if (getter(obj) == req.value) == req.negate:
                return False
        return True

    @property
    def empty(self) -> bool:
        return not self.requirements

    def exact_name(self) -> str | None:
        """The name when the selector pins ``metadata.name=X`` (lets a list read one key)."""
        for r in self.requirements:
            if r.field == "metadata.name" and not r.negate:
                return r.value
        return None


NO_FIELDS = FieldSelector((), ())


def _split_terms(text: str) -> list[str]:
    """Split on commas not escaped by a backslash."""
    terms: list[str] = []
    start, escaped = 0, False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def unescape_field_value(value: str) -> str:
    """Undo ``\\,``, ``\\=`` and ``\\\\``; other escapes and bare ``,``/``=`` are errors."""
    if not any(c in value for c in "\\,="):
        return value
    out: list[str] = []
    escaped = False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            raise SelectorError(f"invalid field selector: unescaped character in value: {ch}")
        else:
            out.append(ch)
    if escaped:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def escape_field_value(value: str) -> str:
    """The inverse of :func:`unescape_field_value`, for building a selector string."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def field_terms(text: str) -> Iterator[tuple[str, str, str]]:
    """``(field, operator, raw value)`` of each non-empty term; operator ``""`` for a term
    without one. The first of ``!=``, ``==``, ``=`` found scanning left to right splits."""
    for term in _split_terms(text):
        if not term:
            continue
        for i in range(len(term)):
            op = next((o for o in ("!=", "==", "=") if term.startswith(o, i)), "")
            if op:
                yield term[:i], op, term[i + len(op) :]
                break
        else:
            yield term, "", ""


def parse_field_requirements(text: str | None) -> tuple[FieldRequirement, ...]:
    """The terms of a field selector, unescaped, in upstream's (sorted) order; raises
    :class:`SelectorError` on a term without an operator or a bad escape."""
    if text is None or not text:
        return ()
    if len(text) > MAX_SELECTOR_LENGTH:
        raise SelectorError(f"selector longer than {MAX_SELECTOR_LENGTH} characters")
    reqs: list[FieldRequirement] = []
    for term in sorted(_split_terms(text)):
        if not term:
            continue
        parsed = next(field_terms(term))
        field, op, raw = parsed
        if not op:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        reqs.append(FieldRequirement(field, op == "!=", unescape_field_value(raw)))
    return tuple(reqs)


def pinned_field_value(text: str, field: str) -> str | None:
    """The value field selector ``text`` requires ``field`` to equal (``field=v`` or
    ``field==v``), read as :func:`parse_field_requirements` reads it; ``None`` when it does
    not pin the field, or does not parse."""
    try:
        reqs = parse_field_requirements(text)
    except SelectorError:
        return None
    for r in reqs:
        if r.field == field and not r.negate:
            return r.value
    return None


def parse_field_selector(text: str | None, supported: Mapping[str, FieldGetter]) -> FieldSelector:
    """Parse ``fieldSelector`` against the fields a kind supports (field -> getter); an
    unknown field is a :class:`SelectorError` naming the supported ones."""
    reqs = parse_field_requirements(text)
    if not reqs:
        return NO_FIELDS
    getters: list[FieldGetter] = []
    for r in reqs:
        getter = supported.get(r.field)
        if getter is None:
            raise UnknownFieldError(r.field, sorted(supported))
        getters.append(getter)
    return FieldSelector(reqs, tuple(getters))


class UnknownFieldError(SelectorError):
    def __init__(self, field: str, supported: list[str]) -> None:
        super().__init__(
            f'"{field}" is not a known field selector: only "' + '", "'.join(supported) + '"'
        )
        self.field = field
        self.supported = supported


def field_value(value: Any) -> str:
    """How a field selector compares a field: ``""`` for missing, ``true``/``false`` for
    booleans, the decimal text for numbers."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def path_getter(*path: str) -> FieldGetter:
    """A getter reading ``obj[path[0]][path[1]]...`` as :func:`field_value` renders it."""

    def get(obj: Obj) -> str:
        cur: Any = obj
        for p in path:
            if not isinstance(cur, dict):
                return ""
            cur = cur.get(p)
        return field_value(cur)

    return get
