"""SSH key files for tests whose spec names an identity file (the commands that connect check
it is a readable private key before anything else)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


def write_identity(path: Path) -> Path:
    """A fresh unencrypted ed25519 private key at ``path`` (OpenSSH format, 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path
