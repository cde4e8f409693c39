"""The identity of a client certificate, remembered per connection (auth.CertificateUsers):
the certificate the transport decoded at the handshake, which the server's TLS context keeps
for the connection's life (no renegotiation)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest

from berth.apiserver import auth
from berth.apiserver.app import server_ssl_context
from berth.apiserver.auth import AUTHENTICATED, CertificateUsers, UserInfo
from tests.harness.apiserver import prepare


def _cert(cn: str, *orgs: str) -> dict[str, Any]:
    """A ``getpeercert()`` dict (a new one for each connection, as the transport makes)."""
    return {"subject": ((("commonName", cn),), *((("organizationName", o),) for o in orgs))}


def test_each_connection_gives_its_certificate_user_and_is_walked_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    walked: list[str] = []
    real = auth.user_from_peercert

    def counting(cert: Any) -> UserInfo | None:
        walked.append(cert["subject"][0][0][1])
        return real(cert)

    monkeypatch.setattr(auth, "user_from_peercert", counting)
    users = CertificateUsers()
    alice, bob = _cert("alice", "dev"), _cert("bob")
    for _ in range(3):
        assert users.user(alice) == UserInfo("alice", ("dev", AUTHENTICATED))
        assert users.user(bob) == UserInfo("bob", (AUTHENTICATED,))
    assert walked == ["alice", "bob"]
    # another connection's certificate (another dict, even if equal): its own subject
    assert users.user(_cert("mallory")) == UserInfo("mallory", (AUTHENTICATED,))
    assert users.user(_cert("alice", "dev")) == UserInfo("alice", ("dev", AUTHENTICATED))
    assert walked == ["alice", "bob", "mallory", "alice"]


def test_a_forgotten_connections_id_is_never_taken_for_another() -> None:
    users = CertificateUsers()
    for i in range(50):
        # each dict is dropped at once: ids are reused, the remembered one is kept alive
        assert users.user(_cert(f"u{i}")) == UserInfo(f"u{i}", (AUTHENTICATED,))


def test_no_certificate_or_no_common_name_is_no_user_and_not_remembered() -> None:
    users = CertificateUsers()
    assert users.user(None) is None
    assert users.user({}) is None  # an unverified certificate decodes to {}
    nameless = {"subject": ((("organizationName", "x"),),)}
    assert users.user(nameless) is None
    assert users.user(nameless) is None
    assert users._by_cert == {}


def test_the_memory_is_bounded() -> None:
    users = CertificateUsers()
    kept = [_cert(f"u{i}") for i in range(CertificateUsers.LIMIT + 10)]
    for i, cert in enumerate(kept):
        assert users.user(cert) == UserInfo(f"u{i}", (AUTHENTICATED,))
    assert len(users._by_cert) <= CertificateUsers.LIMIT
    assert users.user(kept[0]) == UserInfo("u0", (AUTHENTICATED,))


def test_the_server_refuses_renegotiation(tmp_path: Path) -> None:
    """A connection's certificate is fixed at the handshake: remembering it per
    connection needs the server to refuse a TLS 1.2 renegotiation bringing another."""
    ctx = server_ssl_context(prepare(tmp_path).config)
    assert ctx.options & ssl.OP_NO_RENEGOTIATION
