"""Authentication: who is calling.

* Client certificates verified against the cluster CA: the subject CN is the user name, each
  O is a group (the kube-apiserver convention; ``O=system:masters`` is the superuser group).
* Bearer tokens from a static token file (kube's CSV format ``token,user,uid,"g1,g2"``).
* Service-account JWTs: see :mod:`berth.apiserver.satokens`.
* No credentials: anonymous, which may only reach the health and version endpoints.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AUTHENTICATED = "system:authenticated"
MASTERS = "system:masters"
NODES = "system:nodes"
NODE_PREFIX = "system:node:"


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""

    @property
    def is_master(self) -> bool:
        return MASTERS in self.groups

    @property
    def node_name(self) -> str | None:
        """The node name for ``system:node:<name>`` users in ``system:nodes``."""
        if NODES in self.groups and self.name.startswith(NODE_PREFIX):
            return self.name[len(NODE_PREFIX) :]
        return None


ANONYMOUS = UserInfo("system:anonymous", ("system:unauthenticated",))


def user_from_peercert(cert: Any) -> UserInfo | None:
    """Identity from ``ssl.SSLSocket.getpeercert()`` output (only present when verified)."""
    if not isinstance(cert, dict) or not cert.get("subject"):
        return None
    cn = ""
    groups: list[str] = []
    for rdn in cert["subject"]:
        for attr, value in rdn:
            if attr == "commonName":
                cn = value
            elif attr == "organizationName":
                groups.append(value)
    if not cn:
        return None
    return UserInfo(cn, (*groups, AUTHENTICATED))


class CertificateUsers:
    """The identity of a connection's client certificate, remembered per connection.

    ``cert`` is what the event loop's TLS transport decoded with ``getpeercert()`` when the
    handshake completed (its ``peercert`` extra info): one dict per connection, for the
    connection's life (the server's TLS context refuses renegotiation, so no other
    certificate can follow it on the connection: ``app.server_ssl_context``).
    Its identity is remembered by that very dict, held in the entry so that its ``id`` is
    not reused while remembered: a request on a kept-alive connection neither copies the
    certificate (``getpeercert(True)``, an ``i2d``: ~6k instructions, plus hashing the
    bytes) nor walks its subject again. The server's context
    (``CERT_OPTIONAL``) verifies every certificate a client presents or ends the handshake;
    an unverified one decodes to ``{}``, which is no user. Only identities are remembered."""

    LIMIT = 256
    """Connections remembered at most (then forgotten all at once: walked again on use)."""

    def __init__(self) -> None:
        self._by_cert: dict[int, tuple[Any, UserInfo]] = {}

    def user(self, cert: Any) -> UserInfo | None:
        """The user of a connection's decoded peer certificate (``None``: no usable one)."""
        if not cert:
            return None
        hit = self._by_cert.get(id(cert))
        if hit is not None and hit[0] is cert:
            return hit[1]
        user = user_from_peercert(cert)
        if user is None:
            return None
        if len(self._by_cert) >= self.LIMIT:
            self._by_cert.clear()
        self._by_cert[id(cert)] = (cert, user)
        return user


class TokenAuthenticator:
    """Static bearer tokens."""

    def __init__(self) -> None:
        self._tokens: dict[str, UserInfo] = {}

    @classmethod
    def from_file(cls, path: Path) -> TokenAuthenticator:
        auth = cls()
        with path.open(newline="") as f:
            for lineno, row in enumerate(csv.reader(f), 1):
                if not row or row[0].startswith("#"):
                    continue
                if len(row) < 3:
                    raise ValueError(f"{path}:{lineno}: want token,user,uid[,groups]")
                groups = tuple(g for g in (row[3].split(",") if len(row) > 3 else []) if g)
                auth.add(row[0], UserInfo(row[1], (*groups, AUTHENTICATED), row[2]))
        return auth

    def add(self, token: str, user: UserInfo) -> None:
        self._tokens[token] = user

    def remove(self, token: str) -> None:
        self._tokens.pop(token, None)

    def authenticate(self, header: str | None) -> UserInfo | None:
        if not header or not header.startswith("Bearer "):
            return None
        token = header[len("Bearer ") :].strip()
        return self._tokens.get(token)
