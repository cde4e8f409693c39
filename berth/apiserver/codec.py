"""Object <-> stored bytes, with Secrets encrypted at rest.

Stored values are compact JSON without ``metadata.resourceVersion`` (the store's
``mod_revision`` *is* the resourceVersion and is filled in on read). When a cluster key is
configured, Secret values are sealed with AES-256-GCM before they reach the store, so a copy
of the database file never holds a Secret in clear; reads open them again.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from berth.api.meta import Obj
from berth.store.interface import KeyValue

ENVELOPE = b"k8s:enc:aesgcm:v1:"
_NONCE = 12
SECRETS_PREFIX = "/registry/core/secrets/"


_PLACEHOLDER = orjson.Fragment(b"@")
"""The resourceVersion an object is encoded with by :meth:`Codec.encode_created`: not JSON."""
_PLACEHOLDER_SEGMENT = b',"resourceVersion":@}'


def answer(data: bytes, at: int, resource_version: str) -> bytes:
    """The unsealed ``data`` and ``at`` of :meth:`Codec.encode_created` with
    ``metadata.resourceVersion`` set to ``resource_version`` (digits: their own JSON)."""
    return b"".join(
        (data[:at], b',"resourceVersion":"', resource_version.encode(), b'"', data[at:])
    )


class CodecError(Exception):
    """A stored value cannot be read (corrupt, or sealed with another key)."""


def load_key(path: Path) -> bytes:
    """Read a 32-byte AES key: raw bytes, or base64 text of them."""
    data = path.read_bytes()
    if len(data) == 32:
        return data
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except ValueError as exc:
        raise ValueError(f"{path}: not a 32-byte key nor base64 of one") from exc
    if len(raw) != 32:
        raise ValueError(f"{path}: key must be 32 bytes (AES-256), got {len(raw)}")
    return raw


class Codec:
    """Encodes objects for the store; ``key`` enables Secret encryption."""

    def __init__(self, key: bytes | None = None, key_name: str = "key1") -> None:
        self._aead = AESGCM(key) if key is not None else None
        self._prefix = ENVELOPE + key_name.encode() + b":"

    @property
    def encrypts(self) -> bool:
        return self._aead is not None

    def encode(self, key: str, obj: Obj) -> bytes:
        meta = obj.get("metadata")
        rv = None
        if isinstance(meta, dict):
            rv = meta.pop("resourceVersion", None)
        try:
            data = orjson.dumps(obj)
        finally:
            if rv is not None and isinstance(meta, dict):
                meta["resourceVersion"] = rv
        return self.seal(key, data)

    def encode_created(self, key: str, obj: Obj) -> tuple[bytes, bytes, int] | None:
        """:meth:`encode` of an object about to be created, those bytes before sealing, and
        where in them ``,"resourceVersion":"N"`` goes to give ``orjson.dumps(obj)`` once
        ``metadata.resourceVersion`` is set to ``"N"`` (see :func:`answer`): a created object
        is encoded once for the store and for the answer to its create.

        Setting a resourceVersion an object's metadata lacks puts it last, so the object is
        encoded once with :data:`_PLACEHOLDER` there, and those bytes without it are what
        :meth:`encode` gives. The placeholder's segment occurs once in those bytes: ``@`` is
        no JSON value, so no value decoded from a client's JSON encodes to it (and in a
        string, the segment's quotes would be escaped). ``None`` (encode it twice) when
        ``metadata`` is not a non-empty object or holds a resourceVersion already."""
        meta = obj.get("metadata")
        if not isinstance(meta, dict) or not meta or "resourceVersion" in meta:
            return None
        meta["resourceVersion"] = _PLACEHOLDER
        try:
            data = orjson.dumps(obj)
        finally:
            del meta["resourceVersion"]
        at = data.find(_PLACEHOLDER_SEGMENT)
        if at < 0:  # cannot be: metadata is not empty
            return None
        # The segment ends with the metadata's closing brace, which stays.
        data = data[:at] + data[at + len(_PLACEHOLDER_SEGMENT) - 1 :]
        return self.seal(key, data), data, at

    def seal(self, key: str, data: bytes) -> bytes:
        """The stored value of the JSON ``data`` under ``key`` (Secrets sealed when the
        server has a key)."""
        if self._aead is not None and key.startswith(SECRETS_PREFIX):
            nonce = os.urandom(_NONCE)
            return self._prefix + nonce + self._aead.encrypt(nonce, data, key.encode())
        return data

    def decode_value(self, key: str, value: bytes) -> Any:
        if value.startswith(ENVELOPE):
            if self._aead is None or not value.startswith(self._prefix):
                raise CodecError(f"{key}: sealed with a key this server does not have")
            body = value[len(self._prefix) :]
            try:
                value = self._aead.decrypt(body[:_NONCE], body[_NONCE:], key.encode())
            except Exception as exc:  # InvalidTag: wrong key or tampered value
                raise CodecError(f"{key}: cannot be decrypted") from exc
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise CodecError(f"{key}: stored value is not JSON") from exc

    def decode(self, kv: KeyValue) -> Obj:
        """The object stored in ``kv`` with ``metadata.resourceVersion`` set."""
        obj = self.decode_value(kv.key, kv.value)
        if not isinstance(obj, dict):
            raise CodecError(f"{kv.key}: stored value is not an object")
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = {}
            obj["metadata"] = meta
        meta["resourceVersion"] = str(kv.mod_revision)
        return obj
