"""A resource added while the server runs is discovered, routed and dispatched to its
strategy (the path custom resources take), and is gone once removed."""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

from berth.api.meta import Obj
from berth.api.resources import ResourceDef
from berth.apiserver.app import ApiServer
from berth.apiserver.handlers import Call, Endpoint, json_response
from berth.apiserver.kinds import KindStrategy
from berth.apiserver.testing import ServerHandle, running_server
from tests.integration.apiserver.helpers import Raw

GADGETS = ResourceDef(
    group="example.com",
    version="v1",
    plural="gadgets",
    singular="gadget",
    kind="Gadget",
    namespaced=True,
    subresources=("status", "binding"),
)


async def _ping(server: ApiServer, call: Call) -> web.StreamResponse:
    return json_response({"pong": call.route.name, "dryRun": call.dry_run}, 201)


class GadgetStrategy(KindStrategy):
    endpoints = {("create", "binding"): Endpoint(_ping, metric_subresource=True)}

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        obj.setdefault("spec", {}).setdefault("size", 1)


def test_a_resource_added_at_run_time_is_served_by_its_strategy(tmp_path: Path) -> None:
    with running_server(tmp_path) as srv:
        admin = Raw(srv, srv.client_cert("admin", ["system:masters"]))
        try:
            _scenario(srv, admin)
        finally:
            admin.close()


def _scenario(srv: ServerHandle, admin: Raw) -> None:
    base = "/apis/example.com/v1/namespaces/default/gadgets"
    assert admin.request("GET", base)[0] == 404

    async def add() -> None:
        srv.server.add_resource(GADGETS, GadgetStrategy())

    srv.call(add())
    code, _, body = admin.request("GET", "/apis/example.com/v1")
    assert code == 200
    assert [r["name"] for r in json.loads(body)["resources"]] == [
        "gadgets",
        "gadgets/status",
        "gadgets/binding",
    ]
    code, _, body = admin.request("POST", base, {"metadata": {"name": "g"}})
    assert code == 201, body
    assert json.loads(body)["spec"] == {"size": 1}
    code, _, body = admin.request("POST", f"{base}/g/binding?dryRun=All", {})
    assert (code, json.loads(body)) == (201, {"pong": "g", "dryRun": True})
    assert admin.request("GET", f"{base}/g/binding")[0] == 405
    assert admin.request("PUT", f"{base}/g/binding", {})[0] == 405
    assert 'resource="gadgets/binding"' in admin.request("GET", "/metrics")[2].decode()

    async def remove() -> None:
        srv.server.remove_resource(GADGETS)

    srv.call(remove())
    assert admin.request("GET", base)[0] == 404
    assert admin.request("GET", "/apis/example.com/v1")[0] == 404
