"""Turn pydantic's validation errors into berth problems: plain words, the value, a hint.

Unknown keys get a "did you mean" from the fields the model at that place really has; enum-like
values get one from the allowed choices.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from provisioner.spec.problems import NO_VALUE, Path, Problem

_QUOTE_HINT_BOOL = "quote it: YAML reads unquoted yes/no/on/off/true/false as booleans, e.g. 'yes'"
_QUOTE_HINT_NUMBER = "quote it: YAML reads unquoted digits as a number, e.g. '0.1.0'"


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str | None:
    """The closest choice to ``word`` (case-insensitive), or ``None``."""
    options = list(choices)
    by_lower = {c.lower(): c for c in options}
    if word.lower() in by_lower:
        return by_lower[word.lower()]
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def model_at(root: type[BaseModel], path: Path) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``path`` (walking lists, dicts, unions)."""
    current: Any = root
    for part in path:
        current = _unwrap_to_container(current, part)
        if current is None:
            return None
    return _unwrap_to_model(current)


def _aliases(model: type[BaseModel]) -> dict[str, Any]:
    return {(info.alias or name): info.annotation for name, info in model.model_fields.items()}


def _unwrap_to_model(tp: Any) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in _union_members(tp):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _union_members(tp: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(tp)
    if origin is typing.Annotated:
        return (typing.get_args(tp)[0],)
    return ()


def _unwrap_to_container(tp: Any, part: str | int) -> Any:
    model = _unwrap_to_model(tp)
    if model is not None and isinstance(part, str):
        return _aliases(model).get(part)
    for candidate in (tp, *_union_members(tp)):
        origin = typing.get_origin(candidate)
        args = typing.get_args(candidate)
        if origin is list and isinstance(part, int):
            return args[0]
        if origin is dict and isinstance(part, str):
            return args[1]
    return None


def _path_of(error: ErrorDetails) -> tuple[Path, bool]:
    loc = tuple(error["loc"])
    if loc and loc[-1] == "[key]":
        return loc[:-1], True
    return loc, False


def problems_from_validation(error: ValidationError, root: type[BaseModel]) -> list[Problem]:
    """One :class:`Problem` per pydantic error, in plain words."""
    return [_translate(details, root) for details in error.errors()]


def _translate(details: ErrorDetails, root: type[BaseModel]) -> Problem:
    path, at_key = _path_of(details)
    kind = details["type"]
    value = details.get("input", NO_VALUE)
    ctx = details.get("ctx") or {}
    if kind == "extra_forbidden":
        return _unknown_field(path, root)
    if kind == "missing":
        return Problem(path, "required field is missing", hint=f"add '{path[-1]}:' here")
    if kind == "berth":
        return Problem(path, details["msg"], value, hint=ctx.get("hint"), at_key=at_key)
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        listed = ", ".join(f"'{c}'" for c in choices)
        suggestion = did_you_mean(str(value), choices) if isinstance(value, str) else None
        hint = f"did you mean '{suggestion}'?" if suggestion else None
        wording = f"must be {listed}" if len(choices) == 1 else f"must be one of {listed}"
        return Problem(path, wording, value, hint=hint, at_key=at_key)
    if kind == "string_type":
        hint = None
        if isinstance(value, bool):
            hint = _QUOTE_HINT_BOOL
        elif isinstance(value, int | float):
            hint = _QUOTE_HINT_NUMBER
        return Problem(path, "must be a string", value, hint=hint, at_key=at_key)
    if kind in {"int_parsing", "int_type", "int_from_float"}:
        return Problem(path, "must be a whole number", value)
    if kind in {"float_parsing", "float_type"}:
        return Problem(path, "must be a number", value)
    if kind in {"bool_parsing", "bool_type"}:
        return Problem(path, "must be true or false", value)
    if kind == "list_type":
        return Problem(
            path, "must be a list", value, hint="write '[a, b]' or one '- item' per line"
        )
    if kind in {"dict_type", "model_type", "model_attributes_type"}:
        return Problem(path, "must be a mapping of 'key: value' lines", value)
    if kind == "too_short":
        return Problem(path, "must not be empty")
    bounds = {
        "greater_than_equal": ("ge", "at least"),
        "greater_than": ("gt", "greater than"),
        "less_than_equal": ("le", "at most"),
        "less_than": ("lt", "less than"),
    }
    if kind in bounds:
        key, words = bounds[kind]
        return Problem(path, f"must be {words} {ctx.get(key)}", value)
    message = details["msg"]
    return Problem(path, message[:1].lower() + message[1:], value, at_key=at_key)


def _unknown_field(path: Path, root: type[BaseModel]) -> Problem:
    key = str(path[-1])
    model = model_at(root, path[:-1])
    known = sorted(_aliases(model)) if model is not None else []
    suggestion = did_you_mean(key, known)
    if suggestion:
        hint = f"did you mean '{suggestion}'?"
    elif known:
        hint = "known fields here: " + ", ".join(known)
    else:
        hint = None
    return Problem(path, f"unknown field {key!r}", hint=hint, at_key=True)
