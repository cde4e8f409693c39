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
    """The identity of a connection's client certificate, remembered by the certificate's
    DER bytes.

    ``getpeercert()`` decodes the whole certificate into nested tuples on every call (about
    5k instructions, plus walking the subject in Python): every request of a keep-alive
    connection paid it again. The DER bytes cost one ``i2d`` copy, and the identity is a
    function of them. Only identities are remembered: a connection whose certificate gives
    none (no CN) is decoded each time, and the server's TLS context (``CERT_OPTIONAL``)
    verifies every certificate a client presents or ends the handshake, so bytes remembered
    were verified bytes."""

    LIMIT = 4096
    """Certificates remembered at most (then forgotten all at once: re-decoded on use)."""

    def __init__(self) -> None:
        self._by_der: dict[bytes, UserInfo] = {}

    def user(self, ssl_object: Any) -> UserInfo | None:
        """The user of a connection's ``ssl.SSLObject`` (``None``: no usable certificate)."""
        if ssl_object is None:
            return None
        der = ssl_object.getpeercert(True)
        if not der:
            return None
        user = self._by_der.get(der)
        if user is None:
            user = user_from_peercert(ssl_object.getpeercert())
            if user is None:
                return None
            if len(self._by_der) >= self.LIMIT:
                self._by_der.clear()
            self._by_der[der] = user
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
