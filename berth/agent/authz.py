"""Who may call the agent's HTTPS API, decided per request (the kubelet's webhook mode).

Every client presents a certificate from the cluster CA, and that alone proves only that it is
*some* cluster identity: another node, the service proxy, a user. The subject names it (CN =
user, each O = a group, as the API server reads certificates), and a request is allowed only
when the cluster's authorization says that user may act on this node's subresource:

* ``system:masters`` (the API server's agent-client identity, and cluster admins) is allowed
  by every authorizer, so it is allowed here without asking;
* anyone else is asked about with a SubjectAccessReview (verb from the HTTP method, resource
  ``nodes``, subresource from the path as the kubelet maps it, name = the node) when the agent
  has an API client to ask with; the answers are cached briefly. Without one, or when the
  review fails, the answer is no.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from berth.api.resources import SUBJECT_ACCESS_REVIEWS
from berth.client import errors
from berth.client.interface import ApiClient
from berth.machinery.clock import Clock

log = logging.getLogger(__name__)

MASTERS = "system:masters"
ALLOWED_TTL = 300.0  # the kubelet's defaults for cached webhook answers
DENIED_TTL = 30.0

_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch"}
# Path prefixes the kubelet authorizes as their own subresource; the rest is nodes/proxy.
_SUBRESOURCES = (
    ("/stats", "stats"),
    ("/metrics", "metrics"),
    ("/logs", "log"),
    ("/spec", "spec"),
    ("/pods", "pods"),
    ("/healthz", "healthz"),
    ("/configz", "configz"),
    ("/checkpoint", "checkpoint"),
)


@dataclass(frozen=True)
class Identity:
    """A client certificate's subject as the API server reads it."""

    user: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class Request:
    """What an agent request asks for, in the API server's authorization terms."""

    verb: str
    subresource: str
    node: str

    def describe(self, who: Identity) -> str:
        return (
            f"Forbidden (user={who.user}, verb={self.verb}, resource=nodes,"
            f" subresource(s)=[{self.subresource}])"
        )


# Endpoints that run something in a container or open a connection into a pod. Their
# WebSocket form is a GET, which the method mapping would make a ``get``: anyone allowed to
# read nodes/proxy could then exec into every pod of the node. They are ``create`` whatever
# the method (the hardening kube-apiserver applies to pods/exec behind
# AuthorizePodWebsocketUpgradeCreatePermission, and proposed for the kubelet).
_CREATE_ALWAYS = ("/exec/", "/attach/", "/run/", "/portForward/")


def node_request(method: str, path: str, node: str) -> Request:
    """The attributes of ``method path`` on ``node`` (the kubelet's path mapping)."""
    verb = _VERBS.get(method.upper(), "delete" if method.upper() == "DELETE" else "proxy")
    if path.startswith(_CREATE_ALWAYS):
        verb = "create"
    for prefix, sub in _SUBRESOURCES:
        if path == prefix or path.startswith(prefix + "/"):
            return Request(verb, sub, node)
    return Request(verb, "proxy", node)


def identity_from_peercert(peercert: Mapping[str, Any] | None) -> Identity | None:
    """The (CN, O...) of a verified peer certificate as :func:`ssl.SSLSocket.getpeercert`
    gives it; ``None`` when there is no certificate or no CN."""
    if not peercert:
        return None
    cn = ""
    groups: list[str] = []
    for rdn in peercert.get("subject") or ():
        for key, value in rdn:
            if key == "commonName":
                cn = str(value)
            elif key == "organizationName":
                groups.append(str(value))
    return Identity(cn, tuple(groups)) if cn else None


class Reviewer(Protocol):
    async def __call__(self, who: Identity, request: Request) -> bool: ...


def subject_access_reviewer(client: ApiClient) -> Reviewer:
    """Asks the API server (as the agent's own identity) whether ``who`` may ``request``."""

    async def review(who: Identity, request: Request) -> bool:
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": who.user,
                "groups": list(who.groups),
                "resourceAttributes": {
                    "verb": request.verb,
                    "group": "",
                    "resource": "nodes",
                    "subresource": request.subresource,
                    "name": request.node,
                },
            },
        }
        answer = await client.create(SUBJECT_ACCESS_REVIEWS, body)
        return bool((answer.get("status") or {}).get("allowed"))

    return review


class AgentAuthorizer:
    """Decides agent requests; see the module docstring."""

    def __init__(self, clock: Clock, reviewer: Reviewer | None = None) -> None:
        self.clock = clock
        self.reviewer = reviewer
        self._cache: dict[tuple[Identity, Request], tuple[bool, float]] = {}

    async def allowed(self, who: Identity, request: Request) -> bool:
        if MASTERS in who.groups:
            return True
        if self.reviewer is None:
            return False
        key = (who, request)
        cached = self._cache.get(key)
        now = self.clock.monotonic()
        if cached is not None and now < cached[1]:
            return cached[0]
        try:
            verdict = await self.reviewer(who, request)
        except (errors.ApiError, OSError) as exc:
            # fail closed, and do not cache: the next request asks again
            log.warning("subject access review for %s failed (denying): %s", who.user, exc)
            return False
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = (verdict, now + (ALLOWED_TTL if verdict else DENIED_TTL))
        return verdict
