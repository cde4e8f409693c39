"""Projected service-account tokens, as the kubelet's token manager keeps them.

A pod's ``serviceAccountToken`` projection is a TokenRequest made with the node's identity,
bound to the pod (the API server refuses a node tokens for pods not bound to it, and the
token dies with the pod). Tokens are cached per pod, audience and lifetime and renewed once
80% of their lifetime has passed (or after 24 hours), so the pod's file always holds a valid
token; :meth:`ProjectedTokens.refresh_due` tells the pod manager when to rewrite the volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from berth.api.meta import parse_time
from berth.api.resources import SERVICEACCOUNTS
from berth.client.interface import ApiClient
from berth.machinery.clock import Clock
from berth.machinery.objects import Frozen, meta

DEFAULT_EXPIRATION = 3600
REFRESH_FRACTION = 0.8
MAX_AGE = 24 * 3600.0


class TokenRequestError(Exception):
    """The API server refused the token (the agent reports FailedMount and retries)."""


@dataclass(frozen=True, slots=True)
class _Issued:
    token: bytes
    refresh_at: float  # clock.monotonic() when it must be renewed


class ProjectedTokens:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._tokens: dict[tuple[str, str, int], _Issued] = {}
        self.requests = 0

    async def get(self, client: ApiClient, pod: Frozen, *, audience: str, expiration: int) -> bytes:
        pod_uid = str(meta(pod).get("uid") or "")
        key = (pod_uid, audience, expiration)
        current = self._tokens.get(key)
        if current is not None and self.clock.monotonic() < current.refresh_at:
            return current.token
        issued = await self._request(client, pod, audience=audience, expiration=expiration)
        self._tokens[key] = issued
        return issued.token

    async def _request(
        self, client: ApiClient, pod: Frozen, *, audience: str, expiration: int
    ) -> _Issued:
        m = meta(pod)
        account = str((pod.get("spec") or {}).get("serviceAccountName") or "default")
        spec: dict[str, Any] = {
            "expirationSeconds": expiration,
            "boundObjectRef": {
                "kind": "Pod",
                "apiVersion": "v1",
                "name": str(m.get("name")),
                "uid": str(m.get("uid")),
            },
        }
        if audience:
            spec["audiences"] = [audience]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        self.requests += 1
        started_wall = self.clock.now()
        started = self.clock.monotonic()
        out = await client.create_subresource(
            SERVICEACCOUNTS, account, "token", body=body, namespace=str(m.get("namespace"))
        )
        status = out.get("status") or {}
        token = status.get("token")
        if not isinstance(token, str) or not token:
            raise TokenRequestError(f"no token in the TokenRequest answer for {account}")
        expires = parse_time(status.get("expirationTimestamp"))
        lifetime = (
            (expires - started_wall).total_seconds() if expires is not None else float(expiration)
        )
        refresh_in = min(max(lifetime, 0.0) * REFRESH_FRACTION, MAX_AGE)
        return _Issued(token.encode(), started + refresh_in)

    def refresh_due(self, pod_uid: str) -> float | None:
        """``clock.monotonic()`` at which one of the pod's tokens must be renewed."""
        due = [t.refresh_at for (uid, _a, _e), t in self._tokens.items() if uid == pod_uid]
        return min(due) if due else None

    def forget(self, pod_uid: str) -> None:
        for key in [k for k in self._tokens if k[0] == pod_uid]:
            del self._tokens[key]


def has_projected_token(pod: Frozen) -> bool:
    return any(
        "serviceAccountToken" in src
        for vol in (pod.get("spec") or {}).get("volumes") or ()
        for src in (vol.get("projected") or {}).get("sources") or ()
    )
