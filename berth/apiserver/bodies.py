"""Request bodies: JSON, YAML and protobuf decoded with bounded work.

A body comes from a client the server does not trust, so decoding it must cost at most a
small, known amount of CPU and memory whatever its bytes, and any failure is a ``400
BadRequest``, never a 500 or a dead process. The app reads a body only after the request
is authorized (see ``ApiServer._resource``), so an identity without rights never gets this
far.

The bounds, and why:

- Nesting: kube-apiserver decodes JSON with Go's ``encoding/json`` (via sigs.k8s.io/json)
  and YAML with go-yaml, both of which stop at 10000 levels. Go recurses cheaply; Python
  does not: the stdlib's ``copy.deepcopy``, our patch code and validation recurse about
  two frames per level (limit ~1000 frames), and orjson refuses to encode past 255 levels
  (a stored object must still be encodable). No Kubernetes object we serve comes near 20
  levels (a Deployment's pod affinity terms are about 12), so :data:`MAX_DEPTH` = 100 keeps
  every real object and stays far below both Python limits.
- YAML aliases: an anchor may be referenced many times, and references nest, so a few
  hundred bytes can stand for billions of nodes (the "billion laughs"). go-yaml refuses
  documents whose alias expansion dominates their decoding; we count the nodes a document
  expands to (each alias counts the size of what it names) and refuse more than
  :data:`MAX_YAML_NODES` before constructing anything. The same bound limits plain YAML,
  whose Python construction is slow (~6 µs a node): 50000 nodes is a few tenths of a
  second, while a 3 MiB body of short lines would be over a million nodes and seconds of
  work. Real manifests have a few thousand nodes at most.
- Event loop: YAML bodies larger than :data:`YAML_INLINE_BYTES` are decoded in a worker
  thread, so that while one is being decoded the loop keeps answering (``/healthz`` and
  every other client).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import yaml
from aiohttp import web

from .errors import ApiError, bad_request
from .protobuf import decode_body as decode_protobuf

MAX_DEPTH = 100
"""Deepest nesting of objects/arrays accepted in a body or produced by a patch."""
MAX_YAML_NODES = 50_000
"""Most nodes a YAML body may expand to, aliases counted by the size of their target."""
YAML_INLINE_BYTES = 16 * 1024
"""YAML bodies up to this size are decoded on the event loop; bigger ones in a thread."""

PROTOBUF = "application/vnd.kubernetes.protobuf"
_CONTAINERS = (dict, list)
# What a malformed body can make the decoders raise (beyond their own error types):
# huge integers (ValueError past Python's digit limit), non-string keys or sets (TypeError),
# and, as a last resort, recursion the bounds above should already prevent.
_DECODE_ERRORS = (ValueError, TypeError, OverflowError, RecursionError, IndexError, KeyError)


def too_deep(what: str = "the request body") -> ApiError:
    return bad_request(
        f"{what} is nested too deeply: at most {MAX_DEPTH} levels of objects and arrays"
        " are accepted"
    )


def check_depth(value: Any, what: str = "the request body") -> None:
    """Raise 400 when ``value`` nests objects/arrays deeper than :data:`MAX_DEPTH`.

    Iterative (a recursive walk would itself overflow on the values it must refuse)."""
    if not isinstance(value, _CONTAINERS):
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise too_deep(what)
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, _CONTAINERS):
                stack.append((child, depth + 1))


def _shallow_json(raw: bytes) -> bool:
    """True when the JSON text ``raw`` cannot nest deeper than :data:`MAX_DEPTH`: every
    level opens with a ``{`` or ``[``, so fewer of them (those inside strings counted too,
    which only overcounts) bound the depth, and a byte count runs in C, where the walk of
    :func:`check_depth` costs a Python step per container (most bodies pass this test)."""
    return raw.count(b"{") + raw.count(b"[") <= MAX_DEPTH


def _bounded_json(raw: bytes) -> Any:
    """``orjson.loads`` within :data:`MAX_DEPTH` (400 past it); other syntax errors are left
    to the caller as :class:`orjson.JSONDecodeError`."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc) or "recursion" in str(exc).lower():
            raise too_deep() from exc
        raise
    if not _shallow_json(raw):
        check_depth(value)
    return value


def decode_json(raw: bytes) -> Any:
    try:
        return _bounded_json(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"invalid JSON body: {exc}") from exc


class _Frame:
    """An open YAML collection during the pre-scan."""

    __slots__ = ("anchor", "height", "nodes")

    def __init__(self, anchor: str | None) -> None:
        self.anchor = anchor
        self.nodes = 1  # itself; children add theirs
        self.height = 1  # levels of collections from here down


def scan_yaml(raw: bytes) -> None:
    """Walk the YAML event stream (no objects built, no recursion) and raise 400 when the
    document, with every alias expanded, exceeds :data:`MAX_YAML_NODES` nodes or
    :data:`MAX_DEPTH` levels."""
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, height) of its node
    stack: list[_Frame] = []
    total = 0

    def add_child(nodes: int, height: int) -> None:
        nonlocal total
        total += nodes
        if total > MAX_YAML_NODES:
            raise bad_request(
                f"the YAML body expands to more than {MAX_YAML_NODES} nodes (aliases count"
                " as the nodes they repeat); send a smaller document"
            )
        if len(stack) + height > MAX_DEPTH:
            raise too_deep()
        if stack:
            parent = stack[-1]
            parent.nodes += nodes
            parent.height = max(parent.height, height + 1)

    for event in yaml.parse(raw, Loader=yaml.CSafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) >= MAX_DEPTH:
                raise too_deep()
            stack.append(_Frame(event.anchor))
        elif isinstance(event, yaml.CollectionEndEvent):
            frame = stack.pop()
            if frame.anchor is not None:
                anchors[frame.anchor] = (frame.nodes, frame.height)
            # The frame's own node was not counted yet: count the whole subtree now.
            add_child(frame.nodes, frame.height)
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                anchors[event.anchor] = (1, 0)
            add_child(1, 0)
        elif isinstance(event, yaml.AliasEvent):
            # An alias to a collection still open (a recursive one) is not in ``anchors``.
            target = anchors.get(str(event.anchor))
            if target is None:
                raise bad_request(f"invalid YAML body: undefined or recursive alias {event.anchor}")
            add_child(*target)


def decode_yaml(raw: bytes) -> Any:
    """YAML to a JSON-shaped value, bounded as described in the module docstring."""
    if raw.lstrip()[:1] in (b"{", b"["):
        # Most YAML bodies are JSON (kubectl's server-side apply sends JSON as
        # application/apply-patch+yaml): JSON is YAML, and orjson reads it safely and fast.
        try:
            return _bounded_json(raw)
        except orjson.JSONDecodeError:
            pass  # flow-style YAML that is not JSON: the YAML path below
    try:
        scan_yaml(raw)
        parsed = yaml.load(raw, Loader=yaml.CSafeLoader)
        # Round-trip through JSON: YAML can hold what JSON cannot (dates, sets, binary,
        # non-string keys), and everything downstream is JSON. Non-string keys become
        # strings as sigs.k8s.io/yaml does.
        return orjson.loads(orjson.dumps(parsed, option=orjson.OPT_NON_STR_KEYS))
    except yaml.YAMLError as exc:
        raise bad_request(f"invalid YAML body: {exc}") from exc
    except (orjson.JSONEncodeError, *_DECODE_ERRORS) as exc:
        raise bad_request(f"the YAML body cannot be represented as JSON: {exc}") from exc


def decode(raw: bytes, content_type: str) -> Any:
    """Decode ``raw`` by its content type (YAML if it says so, protobuf, else JSON)."""
    ctype = content_type.lower()
    if "yaml" in ctype:
        return decode_yaml(raw)
    if ctype == PROTOBUF:
        try:
            value = decode_protobuf(raw)
        except ApiError:
            raise
        except _DECODE_ERRORS as exc:
            raise bad_request(f"invalid protobuf body: {exc}") from exc
        check_depth(value)
        return value
    return decode_json(raw)


async def read_body(request: web.Request) -> Any:
    """The decoded body of ``request`` (``None`` when it has none).

    Call only once the request is authorized: reading and decoding are the expensive part."""
    raw = await request.read()
    if not raw:
        return None
    ctype = (request.content_type or "").lower()
    if "yaml" in ctype and len(raw) > YAML_INLINE_BYTES:
        return await asyncio.to_thread(decode_yaml, raw)
    return decode(raw, ctype)
