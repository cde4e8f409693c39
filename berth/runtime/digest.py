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


class TooLarge(ImageError):
    """More bytes arrived than the content may have (its descriptor's size, or a bound)."""


def copy_and_hash(
    src: BinaryIO, dst: BinaryIO, *, limit: int | None = None, what: str = "content"
) -> tuple[Digest, int]:
    """Copy ``src`` to ``dst`` while hashing; returns the digest and the byte count.

    With ``limit``, raises :class:`TooLarge` as soon as a byte beyond it arrives (never more
    than ``limit`` + 1 bytes are read), so a source that sends more than it declared cannot
    fill the disk before the size check."""
    h = hashlib.sha256()
    size = 0
    while True:
        want = _CHUNK if limit is None else min(_CHUNK, limit + 1 - size)
        chunk = src.read(want)
        if not chunk:
            break
        size += len(chunk)
        if limit is not None and size > limit:
            raise TooLarge(f"{what}: more than the {limit} bytes it may have arrived; aborted")
        h.update(chunk)
        dst.write(chunk)
    return Digest("sha256:" + h.hexdigest()), size
