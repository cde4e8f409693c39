"""The Swagger 2.0 document as the protobuf kubectl 1.20 asks for.

kubectl 1.20 (and client-go's ``OpenAPISchema``) requests ``/openapi/v2`` with ``Accept:
application/com.github.proto-openapi.spec.v2@v1.0+protobuf`` and parses the answer as the
``openapi.v2.Document`` message of gnostic's ``openapiv2/OpenAPIv2.proto``; it reads the
definitions (``explain``, client-side validation, strategic-merge patch metadata) and each
PATCH operation's group-version-kind and query parameters (``diff`` checks ``dryRun``).

This encodes the JSON document (:func:`.documents.build_v2`) field by field. The field
numbers are gnostic's. Values gnostic keeps as YAML text (vendor extensions ``x-*``,
``default``, ``enum``, ``example``) are written as JSON, which YAML readers accept.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

import orjson

_VARINT = 0
_I64 = 1
_LEN = 2


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _varint((number << 3) | wire)


def _len(number: int, payload: bytes) -> bytes:
    return _tag(number, _LEN) + _varint(len(payload)) + payload


def _string(number: int, value: str) -> bytes:
    return _len(number, value.encode()) if value else b""


def _bool(number: int, value: bool, *, always: bool = False) -> bytes:
    return _tag(number, _VARINT) + _varint(int(value)) if (value or always) else b""


def _int64(number: int, value: int) -> bytes:
    return _tag(number, _VARINT) + _varint(value) if value else b""


def _double(number: int, value: float) -> bytes:
    return _tag(number, _I64) + struct.pack("<d", value) if value else b""


def _any(value: Any) -> bytes:
    """``openapi.v2.Any``: field 2 holds the value as YAML (here JSON, a YAML subset)."""
    return _string(2, orjson.dumps(value).decode())


def _named_any(name: str, value: Any) -> bytes:
    return _string(1, name) + _len(2, _any(value))


def _extensions(number: int, node: Mapping[str, Any]) -> bytes:
    return b"".join(_len(number, _named_any(k, v)) for k, v in node.items() if k.startswith("x-"))


def _strings(number: int, values: Any) -> bytes:
    return b"".join(_string(number, str(v)) for v in values or ())


# -- schemas ----------------------------------------------------------------------------------


def _schema(node: Mapping[str, Any]) -> bytes:
    out = [_string(1, node.get("$ref", ""))]
    out.append(_string(2, node.get("format", "")))
    out.append(_string(3, node.get("title", "")))
    out.append(_string(4, node.get("description", "")))
    if "default" in node:
        out.append(_len(5, _any(node["default"])))
    for number, key in ((6, "multipleOf"), (7, "maximum")):
        out.append(_double(number, float(node.get(key, 0))))
    out.append(_bool(8, bool(node.get("exclusiveMaximum"))))
    out.append(_double(9, float(node.get("minimum", 0))))
    out.append(_bool(10, bool(node.get("exclusiveMinimum"))))
    for number, key in ((11, "maxLength"), (12, "minLength")):
        out.append(_int64(number, int(node.get(key, 0))))
    out.append(_string(13, node.get("pattern", "")))
    for number, key in ((14, "maxItems"), (15, "minItems")):
        out.append(_int64(number, int(node.get(key, 0))))
    out.append(_bool(16, bool(node.get("uniqueItems"))))
    for number, key in ((17, "maxProperties"), (18, "minProperties")):
        out.append(_int64(number, int(node.get(key, 0))))
    out.append(_strings(19, node.get("required")))
    out.extend(_len(20, _any(v)) for v in node.get("enum") or ())
    extra = node.get("additionalProperties")
    if isinstance(extra, bool):
        out.append(_len(21, _bool(2, extra, always=True)))
    elif isinstance(extra, dict):
        out.append(_len(21, _len(1, _schema(extra))))
    kind = node.get("type")
    if kind:
        out.append(_len(22, _strings(1, [kind] if isinstance(kind, str) else kind)))
    items = node.get("items")
    if isinstance(items, dict):
        out.append(_len(23, _len(1, _schema(items))))
    elif isinstance(items, list):
        out.append(_len(23, b"".join(_len(1, _schema(i)) for i in items)))
    out.extend(_len(24, _schema(s)) for s in node.get("allOf") or ())
    props = node.get("properties")
    if isinstance(props, dict):
        named = (_len(1, _string(1, k) + _len(2, _schema(v))) for k, v in props.items())
        out.append(_len(25, b"".join(named)))
    out.append(_string(26, node.get("discriminator", "")))
    out.append(_bool(27, bool(node.get("readOnly"))))
    if "example" in node:
        out.append(_len(30, _any(node["example"])))
    out.append(_extensions(31, node))
    return b"".join(out)


# -- operations -------------------------------------------------------------------------------

# QueryParameterSubSchema / PathParameterSubSchema field numbers
_QUERY = {"required": 1, "in": 2, "description": 3, "name": 4, "type": 6, "format": 7,
          "uniqueItems": 20}  # fmt: skip
_PATH = {"required": 1, "in": 2, "description": 3, "name": 4, "type": 5, "format": 6,
         "uniqueItems": 19}  # fmt: skip
_HEADER = _PATH


def _sub_schema(param: Mapping[str, Any], numbers: Mapping[str, int]) -> bytes:
    out = [_bool(numbers["required"], bool(param.get("required")))]
    for key in ("in", "description", "name", "type", "format"):
        out.append(_string(numbers[key], str(param.get(key, ""))))
    out.append(_bool(numbers["uniqueItems"], bool(param.get("uniqueItems"))))
    return b"".join(out)


def _parameter(param: Mapping[str, Any]) -> bytes:
    """``ParametersItem`` (a ``Parameter``, or a ``JsonReference`` for a ``$ref``)."""
    if "$ref" in param:
        return _len(2, _string(1, str(param["$ref"])))
    where = param.get("in")
    if where == "body":
        body = b"".join(
            [
                _string(1, str(param.get("description", ""))),
                _string(2, str(param.get("name", ""))),
                _string(3, "body"),
                _bool(4, bool(param.get("required"))),
                _len(5, _schema(param.get("schema") or {})),
            ]
        )
        return _len(1, _len(1, body))
    if where == "path":
        non_body = _len(4, _sub_schema(param, _PATH))
    elif where == "header":
        non_body = _len(1, _sub_schema(param, _HEADER))
    else:
        non_body = _len(3, _sub_schema(param, _QUERY))
    return _len(1, _len(2, non_body))


def _response(response: Mapping[str, Any]) -> bytes:
    out = _string(1, str(response.get("description", "")))
    schema = response.get("schema")
    if isinstance(schema, dict):
        out += _len(2, _len(1, _schema(schema)))
    return out


def _operation(op: Mapping[str, Any]) -> bytes:
    out = [_strings(1, op.get("tags"))]
    out.append(_string(2, str(op.get("summary", ""))))
    out.append(_string(3, str(op.get("description", ""))))
    out.append(_string(5, str(op.get("operationId", ""))))
    out.append(_strings(6, op.get("produces")))
    out.append(_strings(7, op.get("consumes")))
    out.extend(_len(8, _parameter(p)) for p in op.get("parameters") or ())
    codes = op.get("responses") or {}
    named = (_len(1, _string(1, c) + _len(2, _len(1, _response(r)))) for c, r in codes.items())
    out.append(_len(9, b"".join(named)))
    out.append(_strings(10, op.get("schemes")))
    out.append(_bool(11, bool(op.get("deprecated"))))
    out.append(_extensions(13, op))
    return b"".join(out)


_METHODS = {"get": 2, "put": 3, "post": 4, "delete": 5, "options": 6, "head": 7, "patch": 8}


def _path_item(item: Mapping[str, Any]) -> bytes:
    out = [_string(1, str(item.get("$ref", "")))]
    for method, number in _METHODS.items():
        op = item.get(method)
        if isinstance(op, dict):
            out.append(_len(number, _operation(op)))
    out.extend(_len(9, _parameter(p)) for p in item.get("parameters") or ())
    out.append(_extensions(10, item))
    return b"".join(out)


def _named(number: int, name: str, value: bytes) -> bytes:
    return _len(number, _string(1, name) + _len(2, value))


def _mapping(number: int, values: Any, encode: Callable[[Any], bytes]) -> bytes:
    return b"".join(_named(number, k, encode(v)) for k, v in (values or {}).items())


def encode_document(doc: Mapping[str, Any]) -> bytes:
    """``openapi.v2.Document`` of the Swagger 2.0 ``doc``."""
    info = doc.get("info") or {}
    out = [_string(1, str(doc.get("swagger", "2.0")))]
    out.append(
        _len(
            2,
            _string(1, str(info.get("title", "")))
            + _string(2, str(info.get("version", "")))
            + _string(3, str(info.get("description", ""))),
        )
    )
    out.append(_string(3, str(doc.get("host", ""))))
    out.append(_string(4, str(doc.get("basePath", ""))))
    out.append(_strings(5, doc.get("schemes")))
    out.append(_strings(6, doc.get("consumes")))
    out.append(_strings(7, doc.get("produces")))
    out.append(_len(8, _mapping(2, doc.get("paths"), _path_item)))
    out.append(_len(9, _mapping(1, doc.get("definitions"), _schema)))
    out.append(_extensions(16, doc))
    return b"".join(out)
