"""The identity of a client certificate, remembered by its DER bytes (auth.CertificateUsers)."""

from __future__ import annotations

from typing import Any

from berth.apiserver.auth import AUTHENTICATED, CertificateUsers, UserInfo


class FakeSslObject:
    """An ``ssl.SSLObject``'s ``getpeercert``: DER bytes, or the decoded subject."""

    def __init__(self, der: bytes | None, subject: tuple[Any, ...] = ()) -> None:
        self.der = der
        self.subject = subject
        self.decoded = 0

    def getpeercert(self, binary_form: bool = False) -> Any:
        if binary_form:
            return self.der
        self.decoded += 1
        return {"subject": self.subject} if self.der else {}


def _subject(cn: str, *orgs: str) -> tuple[Any, ...]:
    return ((("commonName", cn),), *((("organizationName", o),) for o in orgs))


def test_each_certificate_gives_its_own_user_and_is_decoded_once() -> None:
    users = CertificateUsers()
    alice = FakeSslObject(b"alice-der", _subject("alice", "dev"))
    bob = FakeSslObject(b"bob-der", _subject("bob"))
    for _ in range(3):
        assert users.user(alice) == UserInfo("alice", ("dev", AUTHENTICATED))
        assert users.user(bob) == UserInfo("bob", (AUTHENTICATED,))
    assert (alice.decoded, bob.decoded) == (1, 1)
    # another connection with the same certificate: same user, nothing decoded
    again = FakeSslObject(b"alice-der", _subject("mallory"))
    assert users.user(again) == UserInfo("alice", ("dev", AUTHENTICATED))
    assert again.decoded == 0


def test_no_certificate_or_no_common_name_is_no_user_and_not_remembered() -> None:
    users = CertificateUsers()
    assert users.user(None) is None
    assert users.user(FakeSslObject(None)) is None
    nameless = FakeSslObject(b"nameless-der", ((("organizationName", "x"),),))
    assert users.user(nameless) is None
    assert users.user(nameless) is None
    assert nameless.decoded == 2


def test_the_memory_is_bounded() -> None:
    users = CertificateUsers()
    for i in range(CertificateUsers.LIMIT + 10):
        der = f"der-{i}".encode()
        assert users.user(FakeSslObject(der, _subject(f"u{i}"))) == UserInfo(
            f"u{i}", (AUTHENTICATED,)
        )
    assert len(users._by_der) <= CertificateUsers.LIMIT
