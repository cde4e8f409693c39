"""Content digests (``sha256:<hex>``): parsing, hashing and verification."""

from __future__ import annotations

import hashlib
import re
from typing import BinaryIO, NewType

from berth.runtime.errors import DigestMismatch, ImageError

Digest = NewType("Digest", str)
"""An OCI content digest such as ``sha256:3b0c…``; only sha256 is accepted."""

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_CHUNK = 1 << 20


def parse_digest(value: str) -> Digest:
    """Validate ``value`` as a sha256 digest (the only algorithm registries use in practice)."""
    if not _DIGEST.match(value):
        raise ImageError(f"invalid digest {value!r}: expected 'sha256:' followed by 64 hex digits")
    return Digest(value)


def sha256_digest(data: bytes) -> Digest:
    """The digest of ``data``."""
    return Digest("sha256:" + hashlib.sha256(data).hexdigest())


def digest_hex(digest: Digest) -> str:
    """The hex part of a digest (used as a file name in content-addressed stores)."""
    return digest.split(":", 1)[1]


def verify_bytes(data: bytes, expected: Digest, *, what: str) -> None:
    """Raise :class:`DigestMismatch` unless ``data`` hashes to ``expected``."""
    actual = sha256_digest(data)
    if actual != expected:
        raise DigestMismatch(what=what, expected=expected, actual=actual)


def copy_and_hash(src: BinaryIO, dst: BinaryIO) -> tuple[Digest, int]:
    """Copy ``src`` to ``dst`` while hashing; returns the digest and the byte count."""
    h = hashlib.sha256()
    size = 0
    while chunk := src.read(_CHUNK):
        h.update(chunk)
        dst.write(chunk)
        size += len(chunk)
    return Digest("sha256:" + h.hexdigest()), size
