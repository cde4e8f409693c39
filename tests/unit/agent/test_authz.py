"""The agent's request authorization: path mapping, identities, cached review answers."""

from __future__ import annotations

import asyncio

from berth.agent.authz import (
    AgentAuthorizer,
    Identity,
    Request,
    identity_from_peercert,
    node_request,
)
from berth.client import errors
from berth.machinery.clock import FakeClock


def test_paths_map_to_node_subresources_as_the_kubelet_does() -> None:
    assert node_request("GET", "/containerLogs/ns/p/c", "n1") == Request("get", "proxy", "n1")
    assert node_request("GET", "/healthz", "n1") == Request("get", "healthz", "n1")
    assert node_request("GET", "/stats/summary", "n1") == Request("get", "stats", "n1")
    assert node_request("GET", "/logs/syslog", "n1") == Request("get", "log", "n1")
    assert node_request("GET", "/metricsx", "n1").subresource == "proxy"
    assert node_request("POST", "/exec/ns/p/c", "n1") == Request("create", "proxy", "n1")
    assert node_request("DELETE", "/pods", "n1") == Request("delete", "pods", "n1")


def test_streaming_endpoints_need_create_even_as_websocket_gets() -> None:
    # a WebSocket upgrade is a GET: mapped to ``get``, nodes/proxy readers could exec
    for path in ("/exec/ns/p/c", "/attach/ns/p/c", "/portForward/ns/p", "/run/ns/p/c"):
        assert node_request("GET", path, "n1") == Request("create", "proxy", "n1")
    assert node_request("GET", "/executive", "n1") == Request("get", "proxy", "n1")


def test_identity_is_cn_and_organizations() -> None:
    cert = {
        "subject": (
            (("organizationName", "system:nodes"),),
            (("organizationName", "extra"),),
            (("commonName", "system:node:n2"),),
        )
    }
    assert identity_from_peercert(cert) == Identity("system:node:n2", ("system:nodes", "extra"))
    assert identity_from_peercert(None) is None
    assert identity_from_peercert({"subject": ((("organizationName", "x"),),)}) is None


def test_masters_need_no_review_and_others_are_cached_briefly() -> None:
    clock = FakeClock()
    asked: list[str] = []
    answers = {"ops": True, "eve": False}

    async def reviewer(who: Identity, request: Request) -> bool:
        asked.append(who.user)
        if who.user == "flaky":
            raise errors.ApiError(503, "ServiceUnavailable", "down")
        return answers[who.user]

    authz = AgentAuthorizer(clock, reviewer)
    req = Request("get", "proxy", "n1")

    async def body() -> None:
        assert await authz.allowed(Identity("apiserver", ("system:masters",)), req)
        assert asked == []
        assert await authz.allowed(Identity("ops", ()), req)
        assert not await authz.allowed(Identity("eve", ()), req)
        assert await authz.allowed(Identity("ops", ()), req)
        assert not await authz.allowed(Identity("eve", ()), req)
        assert asked == ["ops", "eve"]
        clock.advance(31)  # a denial is cached 30 s, an approval 300 s
        answers["eve"] = True
        assert await authz.allowed(Identity("eve", ()), req)
        assert await authz.allowed(Identity("ops", ()), req)
        assert asked == ["ops", "eve", "eve"]
        assert not await authz.allowed(Identity("flaky", ()), req)  # fails closed
        assert not await authz.allowed(Identity("flaky", ()), req)  # and asks again
        assert asked[-2:] == ["flaky", "flaky"]

    asyncio.run(body())


def test_without_a_reviewer_only_masters_are_allowed() -> None:
    authz = AgentAuthorizer(FakeClock())
    req = Request("get", "proxy", "n1")
    assert asyncio.run(authz.allowed(Identity("admin", ("system:masters",)), req))
    assert not asyncio.run(authz.allowed(Identity("system:node:n1", ("system:nodes",)), req))
