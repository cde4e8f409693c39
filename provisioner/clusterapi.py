"""The operator's way into a running cluster: the admin kubeconfig of the cluster state, a client
made from it, an API server's ``/readyz`` and a Node's Ready condition.

``berth apply`` (the nodes and verify phases), ``berth verify``, ``berth upgrade`` (its health
gate) and ``berth certs renew`` (its rollout) all ask these questions; they ask them here, so a
change to how the admin credentials are found or how readiness is judged is made once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from berth.api.resources import NODES
from berth.client import errors as api_errors
from berth.client.http import HttpClient
from berth.client.kubeconfig import load_kubeconfig
from provisioner.kubeconfig import ADMIN_KUBECONFIG
from provisioner.state import ClusterState

Obj = dict[str, Any]
READYZ_BODY_LIMIT = 2000
"""Bytes of a ``/readyz`` answer kept (its body lists the failed checks; a hostile or broken
server must not make us read more)."""


def admin_kubeconfig_path(state: ClusterState) -> Path:
    """Where the cluster state keeps the admin kubeconfig (0600); the one place that names it."""
    return state.kubeconfig_dir / ADMIN_KUBECONFIG


def admin_client(
    path: Path, *, timeout: float = 5.0, user_agent: str = "berth-provisioner"
) -> HttpClient:
    """A client with the admin kubeconfig at ``path``; short timeouts by default, since an API
    server that was just restarted must not stall the caller."""
    creds = load_kubeconfig(path)
    return HttpClient(
        creds.server, creds.ssl_context(), request_timeout=timeout, user_agent=user_agent
    )


def get_node(path: Path, name: str, *, timeout: float = 5.0, user_agent: str) -> Obj | None:
    """The Node ``name`` read with the admin kubeconfig (blocking); None when it cannot be read
    (no answer, no such Node, any API error)."""

    async def get() -> Obj:
        client = admin_client(path, timeout=timeout, user_agent=user_agent)
        try:
            return await client.get(NODES, name)
        finally:
            await client.close()

    try:
        return asyncio.run(get())
    except (OSError, TimeoutError, api_errors.ApiError):
        return None


@dataclass(frozen=True)
class Readyz:
    """What one API server answered on ``/readyz``: its HTTP status and (the start of) its
    body, or ``status=None`` and the error when it did not answer."""

    status: int | None
    body: str

    @property
    def ok(self) -> bool:
        return self.status == 200


def readyz(path: Path, address: str, port: int, *, timeout: float = 5.0) -> Readyz:
    """``GET /readyz`` of the API server at ``address:port`` (dialled directly, not through a
    balancer), trusting the cluster CA and presenting the admin certificate of ``path``."""
    context: ssl.SSLContext = load_kubeconfig(path).ssl_context()
    conn = http.client.HTTPSConnection(address, port, context=context, timeout=timeout)
    try:
        conn.request("GET", "/readyz")
        response = conn.getresponse()
        return Readyz(response.status, response.read(READYZ_BODY_LIMIT).decode(errors="replace"))
    except (OSError, ssl.SSLError, http.client.HTTPException) as error:
        return Readyz(None, f"{type(error).__name__}: {error}")
    finally:
        conn.close()


def condition(obj: Obj, kind: str) -> Obj | None:
    """The status condition of type ``kind`` of a Node or Pod (None when it has none)."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == kind:
            return cond
    return None


def is_ready(obj: Obj) -> bool:
    """Whether a Node or Pod has ``Ready=True`` (however old)."""
    cond = condition(obj, "Ready")
    return cond is not None and cond.get("status") == "True"


def parse_time(value: object) -> dt.datetime | None:
    """An API timestamp (RFC 3339, ``Z`` or offset) as an aware datetime (UTC when it names no
    zone); None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


NotReadyReason = Literal["missing", "no-condition", "not-ready", "stale"]


@dataclass(frozen=True)
class NotReady:
    """Why a Node does not count as Ready since some moment."""

    reason: NotReadyReason
    ready: Obj | None = None
    """its Ready condition (for the caller's message), when it has one"""


def node_not_ready(node: Obj | None, *, since: dt.datetime) -> NotReady | None:
    """Why ``node`` is not Ready with a heartbeat at or after ``since`` (None: it is).

    A Ready left over from before a restart does not count: the heartbeat must be fresh. The
    caller picks ``since`` with the slack its clocks need (host or operator time)."""
    if node is None:
        return NotReady("missing")
    ready = condition(node, "Ready")
    if ready is None:
        return NotReady("no-condition")
    if ready.get("status") != "True":
        return NotReady("not-ready", ready)
    beat = parse_time(ready.get("lastHeartbeatTime"))
    if beat is None or beat < since:
        return NotReady("stale", ready)
    return None


T = TypeVar("T")


@dataclass(frozen=True)
class Retry:
    """How long, and how often, an idempotent step is tried again while the API server
    cannot be reached."""

    within: float
    pause: float = 1.0


async def until_reachable(step: Callable[[], Awaitable[T]], retry: Retry) -> T:
    """Run the idempotent ``step`` again while the API server cannot be reached (refused, or
    no answer within the request's timeout), for up to ``retry.within`` seconds. Answers the
    server gives, errors included, are not retried.

    Used by the nodes phase (every step after the Nodes registered) and by verify's smoke
    workload: an HA control plane under load drops or refuses a request now and then (an HA
    apply failed on an unanswered PATCH /api/v1/nodes/n4, another on a refused POST of the
    smoke namespace through the VIP while it moved)."""
    deadline = time.monotonic() + retry.within
    while True:
        try:
            return await step()
        except api_errors.Unreachable:
            if time.monotonic() + retry.pause > deadline:
                raise
            await asyncio.sleep(retry.pause)
