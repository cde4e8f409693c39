"""ServiceAccounts and their ``token`` subresource (TokenRequest)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from berth.apiserver.handlers import Call, Endpoint, json_response
from berth.apiserver.tables import AGE, NAME, Column, Printer, age, created, name_of

from .base import KindStrategy

if TYPE_CHECKING:
    from berth.apiserver.app import ApiServer

SERVICEACCOUNT = Printer(
    (NAME, Column("Secrets", type="integer"), AGE),
    lambda o: [name_of(o), len(o.get("secrets") or []), age(created(o))],
)


async def _token(server: ApiServer, call: Call) -> web.StreamResponse:
    r = call.route
    token = await server.service_accounts.create_token(
        server.registry, call.user, r.namespace, r.name, call.body
    )
    return json_response(token, 201)


class ServiceAccountStrategy(KindStrategy):
    kind = "ServiceAccount"
    specless = True
    columns = SERVICEACCOUNT
    endpoints = {("create", "token"): Endpoint(_token, metric_subresource=True)}
