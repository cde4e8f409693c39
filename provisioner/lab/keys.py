"""SSH keys of a lab: the operator key pair and the per-host host keys, made in-process."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass(frozen=True)
class KeyPair:
    """An ed25519 key pair in OpenSSH formats."""

    private_openssh: bytes
    public_line: str  # "ssh-ed25519 AAAA... comment"


def generate_ed25519(comment: str) -> KeyPair:
    """A fresh ed25519 key pair, the private half in OpenSSH's own format (as ssh-keygen writes)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return KeyPair(private, f"{public.decode()} {comment}")


def write_key_pair(pair: KeyPair, private_path: Path) -> None:
    """Write ``private_path`` (0600 from the first byte) and its ``.pub`` next to it."""
    private_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = private_path.with_name(f".{private_path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pair.private_openssh)
    os.chmod(tmp, 0o600)
    tmp.replace(private_path)
    private_path.with_name(private_path.name + ".pub").write_text(pair.public_line + "\n")


def known_hosts_line(address: str, public_line: str) -> str:
    """One OpenSSH known_hosts line pinning ``public_line`` (type + key) for ``address``."""
    key_type, key_b64 = public_line.split()[:2]
    return f"{address} {key_type} {key_b64}"
