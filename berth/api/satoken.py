"""Service-account tokens: ES256-signed JWTs and their claims (upstream's pkg/serviceaccount).

Two shapes, as kube-apiserver issues them:

* **bound tokens** (TokenRequest, projected volumes): ``iss`` the configured issuer, ``sub``
  ``system:serviceaccount:<ns>:<name>``, ``aud``, ``exp``/``iat``/``nbf``, and the private claim
  ``kubernetes.io`` = ``{namespace, serviceaccount {name, uid}, pod|secret {name, uid}, node}``;
* **legacy tokens** (``kubernetes.io/service-account-token`` Secrets, filled by the token
  controller): ``iss`` ``kubernetes/serviceaccount``, no expiry, and the flat
  ``kubernetes.io/serviceaccount/*`` claims naming the account, its UID and the Secret.

This module only signs and checks signatures; whether the named objects still exist is the API
server's business (:mod:`berth.apiserver.satokens`). Shared by the API server and the
controller manager's token controller, so it lives beside the API types.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

# cryptography is imported where a key is first used, not with this module: it costs ~7 MiB
# resident (its Rust extension, measured in the controller manager), and the controller
# manager, which imports this module for its names, signs only legacy token Secrets.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

LEGACY_ISSUER = "kubernetes/serviceaccount"
USER_PREFIX = "system:serviceaccount:"
ALL_GROUP = "system:serviceaccounts"
PRIVATE = "kubernetes.io"
LEGACY_NS = "kubernetes.io/serviceaccount/namespace"
LEGACY_SECRET = "kubernetes.io/serviceaccount/secret.name"  # noqa: S105 (a claim name)
LEGACY_SA_NAME = "kubernetes.io/serviceaccount/service-account.name"
LEGACY_SA_UID = "kubernetes.io/serviceaccount/service-account.uid"
TOKEN_SECRET_TYPE = "kubernetes.io/service-account-token"  # noqa: S105 (a type name)
"""The type of a Secret holding a legacy token (filled by the token controller)."""
NAME_ANNOTATION = "kubernetes.io/service-account.name"
UID_ANNOTATION = "kubernetes.io/service-account.uid"
DEFAULT_ACCOUNT = "default"
"""The account every namespace gets, and a pod without ``serviceAccountName`` runs as."""
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
"""The ConfigMap in every namespace holding the cluster CA (``ca.crt``)."""
MAX_TOKEN_BYTES = 16 * 1024
"""A bearer token longer than this is refused unparsed (no JWT we issue comes near it)."""


class TokenError(Exception):
    """The token is not a JWT we signed (bad shape, algorithm, key or signature)."""


def username(namespace: str, name: str) -> str:
    return f"{USER_PREFIX}{namespace}:{name}"


def groups(namespace: str) -> tuple[str, str]:
    return ALL_GROUP, f"{ALL_GROUP}:{namespace}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenError("malformed base64url segment") from exc


def key_id(public: ec.EllipticCurvePublicKey) -> str:
    """Upstream's ``kid``: the unpadded base64url SHA-256 of the DER public key."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - see the top

    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _b64(hashlib.sha256(der).digest())


class Signer:
    """Signs claims with a P-256 key (ES256): a parsed key, or (:meth:`from_file`) a PEM file
    read at once and parsed at the first signature."""

    __slots__ = ("_key", "_pem", "_source")

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key: ec.EllipticCurvePrivateKey | None = key
        self._pem = b""
        self._source = Path()

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        """A signer for the PEM P-256 private key in ``path``. The file is read now (a missing
        or unreadable file fails at once); a malformed key fails at the first :meth:`sign`,
        with the same ``ValueError`` as :func:`load_private_key`."""
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the service-account signing key: {exc}") from exc
        signer = cls.__new__(cls)
        signer._key, signer._pem, signer._source = None, pem, path
        return signer

    @property
    def key(self) -> ec.EllipticCurvePrivateKey:
        if self._key is None:
            self._key = _parse_private_key(self._pem, self._source)
        return self._key

    @property
    def kid(self) -> str:
        return key_id(self.key.public_key())

    def sign(self, claims: Mapping[str, Any]) -> str:
        from cryptography.hazmat.primitives import hashes  # noqa: PLC0415 - see the top
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric.utils import (  # noqa: PLC0415
            decode_dss_signature,
        )

        header = {"alg": "ES256", "kid": self.kid}
        signing_input = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(dict(claims)))}"
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


class Verifier:
    """Checks ES256 signatures against a set of public keys (old ones kept during a
    rotation) and returns the claims. Expiry, issuer and audience are the caller's."""

    def __init__(self, keys: Iterable[ec.EllipticCurvePublicKey]) -> None:
        self._keys = {key_id(k): k for k in keys}

    def claims(self, token: str) -> dict[str, Any]:
        from cryptography.exceptions import InvalidSignature  # noqa: PLC0415 - see the top
        from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric.utils import (  # noqa: PLC0415
            encode_dss_signature,
        )

        if len(token) > MAX_TOKEN_BYTES:
            raise TokenError("token too long")
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("not a JWS compact serialization")
        try:
            header = orjson.loads(_unb64(parts[0]))
        except orjson.JSONDecodeError as exc:
            raise TokenError("malformed header") from exc
        if not isinstance(header, dict) or header.get("alg") != "ES256":
            raise TokenError("only ES256 tokens are accepted")
        sig = _unb64(parts[2])
        if len(sig) != 64:
            raise TokenError("malformed ES256 signature")
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        kid = header.get("kid")
        candidates = (
            [self._keys[kid]] if isinstance(kid, str) and kid in self._keys else self._keys.values()
        )
        signing_input = f"{parts[0]}.{parts[1]}".encode()
        for key in candidates:
            try:
                key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
            except InvalidSignature:
                continue
            try:
                claims = orjson.loads(_unb64(parts[1]))
            except orjson.JSONDecodeError as exc:
                raise TokenError("malformed claims") from exc
            if not isinstance(claims, dict):
                raise TokenError("claims are not an object")
            return claims
        raise TokenError("signature does not verify with any service-account key")


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """A PEM P-256 private key (``sa.key`` of the PKI)."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the service-account signing key: {exc}") from exc
    return _parse_private_key(pem, path)


def _parse_private_key(pem: bytes, path: Path) -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - see the top
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: cannot read the service-account signing key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError(f"{path}: the service-account signing key must be ECDSA P-256 (ES256)")
    return key


def load_public_keys(path: Path) -> list[ec.EllipticCurvePublicKey]:
    """Every P-256 public key in a PEM file (public keys, or private keys whose public half is
    used), so that a file with the old and the new key verifies both during a rotation."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - see the top
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read service-account verification keys: {exc}") from exc
    keys: list[ec.EllipticCurvePublicKey] = []
    for block in text.split(b"-----END ")[:-1]:
        begin = block.find(b"-----BEGIN ")
        if begin < 0:
            continue
        label_end = block.find(b"-----", begin + 11)
        label = block[begin + 11 : label_end]
        pem = block[begin:] + b"-----END " + label + b"-----\n"
        try:
            if b"PRIVATE" in label:
                priv = serialization.load_pem_private_key(pem, password=None)
                pub: Any = priv.public_key()
            else:
                pub = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: unreadable PEM block {label.decode()!r}: {exc}") from exc
        if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.curve.name != "secp256r1":
            raise ValueError(f"{path}: service-account keys must be ECDSA P-256 (ES256)")
        keys.append(pub)
    if not keys:
        raise ValueError(f"{path}: no PEM key found")
    return keys


@dataclass(frozen=True, slots=True)
class Ref:
    name: str
    uid: str

    def claim(self) -> dict[str, str]:
        return {"name": self.name, "uid": self.uid}


def bound_claims(
    *,
    issuer: str,
    audiences: Iterable[str],
    namespace: str,
    account: Ref,
    issued_at: int,
    expires_at: int,
    pod: Ref | None = None,
    secret: Ref | None = None,
    node: Ref | None = None,
) -> dict[str, Any]:
    private: dict[str, Any] = {"namespace": namespace, "serviceaccount": account.claim()}
    if pod is not None:
        private["pod"] = pod.claim()
    if secret is not None:
        private["secret"] = secret.claim()
    if node is not None:
        private["node"] = node.claim()
    return {
        "iss": issuer,
        "sub": username(namespace, account.name),
        "aud": list(audiences),
        "exp": expires_at,
        "iat": issued_at,
        "nbf": issued_at,
        PRIVATE: private,
    }


def legacy_claims(*, namespace: str, account: Ref, secret_name: str) -> dict[str, Any]:
    return {
        "iss": LEGACY_ISSUER,
        LEGACY_NS: namespace,
        LEGACY_SECRET: secret_name,
        LEGACY_SA_NAME: account.name,
        LEGACY_SA_UID: account.uid,
        "sub": username(namespace, account.name),
    }
