"""Service-account token authentication (upstream's serviceaccount JWT authenticator).

A bearer token authenticates as ``system:serviceaccount:<ns>:<name>`` only if

* it is an ES256 JWT signed by one of the configured service-account keys;
* it is a **bound** token — ``iss`` is this cluster's issuer, ``aud`` names one of the API
  audiences, ``nbf <= now < exp`` (one minute of clock skew allowed, as upstream) — or a
  **legacy** token (``iss`` ``kubernetes/serviceaccount``) that is still the ``token`` of its
  ``kubernetes.io/service-account-token`` Secret;
* the service account it names exists with the UID in the token, and so does the pod or
  Secret the token is bound to. An object deleted (``deletionTimestamp``) more than a minute
  ago no longer backs a token either.

The existence checks read :class:`ObjectCache`, which the server keeps current from its watch
hub: authentication never reads the store.
"""

from __future__ import annotations

import base64
import hmac
import time
from collections.abc import Callable, Iterable
from typing import Any

from berth.api import satoken
from berth.api.meta import Obj, parse_time
from berth.api.values import value_class

from .auth import AUTHENTICATED, UserInfo

DELETION_LEEWAY = 60
"""Seconds an object marked for deletion still backs its tokens (upstream's grace)."""
CLOCK_LEEWAY = 60
"""Seconds of clock skew tolerated on ``exp`` and ``nbf`` (upstream's jwt.DefaultLeeway)."""

_PREFIXES = {
    "/registry/core/serviceaccounts/": "serviceaccounts",
    "/registry/core/pods/": "pods",
    "/registry/core/secrets/": "secrets",
}


@value_class
class Entry:
    """What token validation needs of one object."""

    uid: str
    deleted_at: float | None = None  # metadata.deletionTimestamp, epoch seconds
    sa_name: str = ""  # service-account-token secrets: the account annotation
    token: bytes | None = None  # service-account-token secrets: data.token, decoded
    automount: bool | None = None  # service accounts: automountServiceAccountToken

    def live(self, now: float) -> bool:
        return self.deleted_at is None or self.deleted_at > now - DELETION_LEEWAY


def _entry(kind: str, obj: Obj) -> Entry:
    m = obj.get("metadata") or {}
    ts = m.get("deletionTimestamp")
    parsed = parse_time(ts) if isinstance(ts, str) and ts else None
    deleted_at = parsed.timestamp() if parsed is not None else None
    uid = str(m.get("uid") or "")
    if kind == "pods":
        return Entry(uid, deleted_at)
    if kind == "secrets":
        if obj.get("type") != satoken.TOKEN_SECRET_TYPE:
            return Entry(uid, deleted_at)  # may back a TokenRequest bound to it
        encoded = (obj.get("data") or {}).get("token")
        token = None
        if isinstance(encoded, str):
            try:
                token = base64.b64decode(encoded)
            except ValueError:
                token = None
        sa = str((m.get("annotations") or {}).get(satoken.NAME_ANNOTATION) or "")
        return Entry(uid, deleted_at, sa_name=sa, token=token)
    automount = obj.get("automountServiceAccountToken")
    return Entry(uid, deleted_at, automount=automount if isinstance(automount, bool) else None)


class ObjectCache:
    """Service accounts, pods and Secrets by key (UIDs, deletion, and token Secrets' tokens;
    never other Secrets' data), fed by the watch hub."""

    def __init__(self) -> None:
        self._maps: dict[str, dict[str, Entry]] = {kind: {} for kind in _PREFIXES.values()}

    @staticmethod
    def watched(key: str) -> str | None:
        for prefix, kind in _PREFIXES.items():
            if key.startswith(prefix):
                return kind
        return None

    def apply(self, key: str, obj: Obj, *, deleted: bool) -> None:
        kind = self.watched(key)
        if kind is None:
            return
        name = key[len("/registry/core/") + len(kind) + 1 :]  # "ns/name" or "name"
        if deleted:
            self._maps[kind].pop(name, None)
        else:
            self._maps[kind][name] = _entry(kind, obj)

    def get(self, kind: str, namespace: str, name: str) -> Entry | None:
        return self._maps[kind].get(f"{namespace}/{name}" if namespace else name)


def _audiences(claim: Any) -> list[str]:
    if isinstance(claim, str):
        return [claim]
    if isinstance(claim, list):
        return [a for a in claim if isinstance(a, str)]
    return []


def _ref(value: Any) -> satoken.Ref | None:
    if not isinstance(value, dict):
        return None
    name, uid = value.get("name"), value.get("uid")
    if not isinstance(name, str) or not name or not isinstance(uid, str) or not uid:
        return None
    return satoken.Ref(name, uid)


class ServiceAccountAuthenticator:
    def __init__(
        self,
        verifier: satoken.Verifier,
        cache: ObjectCache,
        *,
        issuer: str,
        audiences: Iterable[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.verifier = verifier
        self.cache = cache
        self.issuer = issuer
        self.audiences = frozenset(audiences)
        self.clock = clock

    def authenticate(self, header: str | None) -> UserInfo | None:
        if not header or not header.startswith("Bearer "):
            return None
        token = header[len("Bearer ") :].strip()
        if token.count(".") != 2:
            return None  # not a JWT: some other authenticator's token (or nobody's)
        try:
            claims = self.verifier.claims(token)
        except satoken.TokenError:
            return None
        if claims.get("iss") == satoken.LEGACY_ISSUER:
            return self._legacy(token, claims)
        if claims.get("iss") != self.issuer:
            return None
        return self._bound(claims)

    def _user(self, namespace: str, account: satoken.Ref) -> UserInfo:
        return UserInfo(
            satoken.username(namespace, account.name),
            (*satoken.groups(namespace), AUTHENTICATED),
            account.uid,
        )

    def _account_live(self, namespace: str, account: satoken.Ref, now: float) -> bool:
        sa = self.cache.get("serviceaccounts", namespace, account.name)
        return sa is not None and sa.uid == account.uid and sa.live(now)

    def _bound(self, claims: dict[str, Any]) -> UserInfo | None:
        now = self.clock()
        exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
        if not isinstance(exp, int) or now >= exp + CLOCK_LEEWAY:
            return None  # no expiry at all is refused too: bound tokens always have one
        if isinstance(nbf, int) and nbf > now + CLOCK_LEEWAY:
            return None
        if not self.audiences.intersection(_audiences(claims.get("aud"))):
            return None
        private = claims.get(satoken.PRIVATE)
        if not isinstance(private, dict):
            return None
        namespace = private.get("namespace")
        account = _ref(private.get("serviceaccount"))
        if not isinstance(namespace, str) or not namespace or account is None:
            return None
        if claims.get("sub") != satoken.username(namespace, account.name):
            return None
        if not self._account_live(namespace, account, now):
            return None
        for kind, field in (("pods", "pod"), ("secrets", "secret")):
            if field not in private:
                continue
            ref = _ref(private[field])
            if ref is None:
                return None
            obj = self.cache.get(kind, namespace, ref.name)
            if obj is None or obj.uid != ref.uid or not obj.live(now):
                return None
        return self._user(namespace, account)

    def _legacy(self, token: str, claims: dict[str, Any]) -> UserInfo | None:
        values = [
            claims.get(k)
            for k in (
                satoken.LEGACY_NS,
                satoken.LEGACY_SECRET,
                satoken.LEGACY_SA_NAME,
                satoken.LEGACY_SA_UID,
            )
        ]
        if not all(isinstance(v, str) and v for v in values):
            return None
        namespace, secret_name, sa_name, sa_uid = (str(v) for v in values)
        now = self.clock()
        secret = self.cache.get("secrets", namespace, secret_name)
        # The token must still be the one its Secret holds: deleting the Secret (or the
        # controller replacing the token) revokes it.
        if secret is None or secret.token is None or not secret.live(now):
            return None
        if not hmac.compare_digest(secret.token, token.encode()) or secret.sa_name != sa_name:
            return None
        account = satoken.Ref(sa_name, sa_uid)
        if not self._account_live(namespace, account, now):
            return None
        return self._user(namespace, account)
