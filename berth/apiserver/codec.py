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
