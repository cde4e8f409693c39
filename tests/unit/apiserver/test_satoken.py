"""ES256 service-account JWTs: signing, verification, key files and rotation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from berth.api import satoken


def _pem_public(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_round_trip_and_tampering() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    token = satoken.Signer(key).sign({"sub": "system:serviceaccount:a:b", "n": 1})
    verifier = satoken.Verifier([key.public_key()])
    assert verifier.claims(token) == {"sub": "system:serviceaccount:a:b", "n": 1}
    head, body, sig = token.split(".")
    with pytest.raises(satoken.TokenError):
        verifier.claims(f"{head}.{body}x.{sig}")
    with pytest.raises(satoken.TokenError):
        verifier.claims(f"{head}.{body}.")
    with pytest.raises(satoken.TokenError):
        verifier.claims("x" * (satoken.MAX_TOKEN_BYTES + 1))


def test_rotation_keeps_old_tokens_valid(tmp_path: Path) -> None:
    old, new = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    keys = tmp_path / "sa.pub"
    keys.write_bytes(_pem_public(new) + _pem_public(old))
    verifier = satoken.Verifier(satoken.load_public_keys(keys))
    for key in (old, new):
        assert verifier.claims(satoken.Signer(key).sign({"k": 1})) == {"k": 1}
    stranger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(satoken.TokenError):
        verifier.claims(satoken.Signer(stranger).sign({"k": 1}))


def test_key_files_must_hold_p256_keys(tmp_path: Path) -> None:
    other = ec.generate_private_key(ec.SECP384R1())
    path = tmp_path / "sa.key"
    path.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ValueError, match="P-256"):
        satoken.load_private_key(path)
    with pytest.raises(ValueError, match="P-256"):
        satoken.load_public_keys(path)
    empty = tmp_path / "empty.pub"
    empty.write_text("nothing here\n")
    with pytest.raises(ValueError, match="no PEM key"):
        satoken.load_public_keys(empty)


def test_a_signer_from_a_key_file_parses_the_key_at_its_first_signature(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "sa.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    token = satoken.Signer.from_file(path).sign({"k": 1})
    assert satoken.Verifier([key.public_key()]).claims(token) == {"k": 1}
    with pytest.raises(ValueError, match="cannot read"):
        satoken.Signer.from_file(tmp_path / "missing.key")  # at once, not at the first use
    (tmp_path / "bad.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\nnope\n")
    bad = satoken.Signer.from_file(tmp_path / "bad.key")
    with pytest.raises(ValueError, match=r"bad\.key: cannot read"):
        bad.sign({"k": 1})


def test_the_controller_manager_does_not_load_cryptography() -> None:
    """cryptography costs ~7 MiB resident; the controller manager parses its signing key only
    when it first signs a legacy token Secret."""
    code = (
        "import sys, berth.controllers.__main__, berth.controllers.manager;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'cryptography'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )
    assert out.stdout.strip() == "[]"
