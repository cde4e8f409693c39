"""Decoding of Kubernetes protobuf request bodies for the kinds kubectl sends that way.

kubectl 1.32's typed clients (``create configmap|secret|namespace|serviceaccount``, ``auth
can-i``, ``drain``'s evictions) send ``application/vnd.kubernetes.protobuf`` bodies. Those are
the ``k8s\\x00`` magic followed by a ``runtime.Unknown`` envelope whose ``raw`` field holds the
object. This module decodes the protobuf wire format against small field tables (numbers from
``k8s.io/api`` ``generated.proto``) into the same JSON-shaped dicts the rest of the server uses.
Kinds without a table are refused with 415, naming the kind.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from .errors import ApiError, bad_request

MAGIC = b"k8s\x00"

# field number -> (json name, kind, nested schema for messages)
Schema = dict[int, tuple[str, str, Any]]

TIME: Schema = {1: ("seconds", "int", None), 2: ("nanos", "int", None)}
OWNER_REF: Schema = {
    1: ("kind", "string", None),
    3: ("name", "string", None),
    4: ("uid", "string", None),
    5: ("apiVersion", "string", None),
    6: ("controller", "bool", None),
    7: ("blockOwnerDeletion", "bool", None),
}
OBJECT_META: Schema = {
    1: ("name", "string", None),
    2: ("generateName", "string", None),
    3: ("namespace", "string", None),
    5: ("uid", "string", None),
    6: ("resourceVersion", "string", None),
    7: ("generation", "int", None),
    8: ("creationTimestamp", "time", None),
    9: ("deletionTimestamp", "time", None),
    10: ("deletionGracePeriodSeconds", "int", None),
    11: ("labels", "map_ss", None),
    12: ("annotations", "map_ss", None),
    13: ("ownerReferences", "rmsg", OWNER_REF),
    14: ("finalizers", "rstring", None),
}
OBJECT_REF: Schema = {
    1: ("kind", "string", None),
    2: ("namespace", "string", None),
    3: ("name", "string", None),
    4: ("uid", "string", None),
    5: ("apiVersion", "string", None),
}
LOCAL_REF: Schema = {1: ("name", "string", None)}
PRECONDITIONS: Schema = {1: ("uid", "string", None), 2: ("resourceVersion", "string", None)}
DELETE_OPTIONS: Schema = {
    1: ("gracePeriodSeconds", "int", None),
    2: ("preconditions", "msg", PRECONDITIONS),
    3: ("orphanDependents", "bool", None),
    4: ("propagationPolicy", "string", None),
    5: ("dryRun", "rstring", None),
}
RESOURCE_ATTRS: Schema = {
    1: ("namespace", "string", None),
    2: ("verb", "string", None),
    3: ("group", "string", None),
    4: ("version", "string", None),
    5: ("resource", "string", None),
    6: ("subresource", "string", None),
    7: ("name", "string", None),
}
NON_RESOURCE_ATTRS: Schema = {1: ("path", "string", None), 2: ("verb", "string", None)}

KINDS: dict[str, Schema] = {
    "ConfigMap": {
        1: ("metadata", "msg", OBJECT_META),
        2: ("data", "map_ss", None),
        3: ("binaryData", "map_sb", None),
        4: ("immutable", "bool", None),
    },
    "Secret": {
        1: ("metadata", "msg", OBJECT_META),
        2: ("data", "map_sb", None),
        3: ("type", "string", None),
        4: ("stringData", "map_ss", None),
        5: ("immutable", "bool", None),
    },
    "Namespace": {
        1: ("metadata", "msg", OBJECT_META),
        2: ("spec", "msg", {1: ("finalizers", "rstring", None)}),
    },
    "ServiceAccount": {
        1: ("metadata", "msg", OBJECT_META),
        2: ("secrets", "rmsg", OBJECT_REF),
        3: ("imagePullSecrets", "rmsg", LOCAL_REF),
        4: ("automountServiceAccountToken", "bool", None),
    },
    "Eviction": {1: ("metadata", "msg", OBJECT_META), 2: ("deleteOptions", "msg", DELETE_OPTIONS)},
    "DeleteOptions": DELETE_OPTIONS,
    "SelfSubjectAccessReview": {
        1: ("metadata", "msg", OBJECT_META),
        2: (
            "spec",
            "msg",
            {
                1: ("resourceAttributes", "msg", RESOURCE_ATTRS),
                2: ("nonResourceAttributes", "msg", NON_RESOURCE_ATTRS),
            },
        ),
    },
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise bad_request("truncated or invalid protobuf varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def fields(data: bytes) -> list[tuple[int, int, Any]]:
    """Raw (field number, wire type, value) triples; bytes for length-delimited fields."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        num, wire = tag >> 3, tag & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise bad_request("truncated protobuf field")
            value = data[pos : pos + length]
            pos += length
        elif wire == 1:
            value = int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
        elif wire == 5:
            value = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        else:
            raise bad_request(f"unsupported protobuf wire type {wire}")
        if num == 0:
            raise bad_request("invalid protobuf field number 0")
        out.append((num, wire, value))
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _text(v: Any) -> str:
    if not isinstance(v, bytes):
        raise bad_request("protobuf string field has the wrong wire type")
    try:
        return v.decode()
    except UnicodeDecodeError as exc:
        raise bad_request("protobuf string field is not UTF-8") from exc


def _map_entry(v: Any) -> tuple[str, bytes]:
    if not isinstance(v, bytes):
        raise bad_request("protobuf map entry has the wrong wire type")
    key, value = "", b""
    for n, _w, x in fields(v):
        if n == 1:
            key = _text(x)
        elif n == 2 and isinstance(x, bytes):
            value = x
    return key, value


def decode_message(data: bytes, schema: Schema) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for num, _wire, value in fields(data):
        spec = schema.get(num)
        if spec is None:
            continue  # a field this server does not read
        name, kind, sub = spec
        if kind == "string":
            text = _text(value)
            if text:  # Go writes empty strings; JSON omits them
                obj[name] = text
        elif kind == "int":
            if not isinstance(value, int):
                raise bad_request(f"protobuf field {name} has the wrong wire type")
            obj[name] = _signed(value)
        elif kind == "bool":
            obj[name] = bool(value)
        elif kind == "msg":
            obj[name] = decode_message(value if isinstance(value, bytes) else b"", sub)
        elif kind == "rmsg":
            obj.setdefault(name, []).append(
                decode_message(value if isinstance(value, bytes) else b"", sub)
            )
        elif kind == "rstring":
            obj.setdefault(name, []).append(_text(value))
        elif kind == "map_ss":
            k, v = _map_entry(value)
            obj.setdefault(name, {})[k] = _text(v)
        elif kind == "map_sb":
            k, v = _map_entry(value)
            obj.setdefault(name, {})[k] = base64.b64encode(v).decode()
        elif kind == "time":
            t = decode_message(value if isinstance(value, bytes) else b"", TIME)
            seconds = t.get("seconds", 0)
            obj[name] = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return obj


def decode_body(data: bytes) -> dict[str, Any]:
    """A ``k8s\\x00``-framed protobuf body as a JSON-shaped object."""
    if not data.startswith(MAGIC):
        raise bad_request("protobuf body lacks the k8s envelope")
    envelope = decode_message(
        data[len(MAGIC) :],
        {
            1: (
                "typeMeta",
                "msg",
                {1: ("apiVersion", "string", None), 2: ("kind", "string", None)},
            ),
            4: ("contentType", "string", None),
        },
    )
    raw = b""
    for num, _w, value in fields(data[len(MAGIC) :]):
        if num == 2 and isinstance(value, bytes):
            raw = value
    type_meta = envelope.get("typeMeta") or {}
    kind = str(type_meta.get("kind", ""))
    schema = KINDS.get(kind)
    if schema is None:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"protobuf bodies of kind {kind or '(unknown)'} are not supported by this server;"
            " send application/json",
        )
    obj = decode_message(raw, schema)
    obj["kind"] = kind
    if type_meta.get("apiVersion"):
        obj["apiVersion"] = type_meta["apiVersion"]
    return obj
