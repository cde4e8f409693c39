"""When the datastore cannot serve (an etcd member without quorum), the API server answers at
once 503 ServiceUnavailable with Retry-After and a reason naming the quorum, never 500; /readyz
says the same (an in-process server on a store whose outage the test switches)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from berth.apiserver.app import ApiServer
from berth.store.etcd import EtcdNoQuorum
from berth.store.interface import KeyValue, ListResult
from berth.store.memory import MemoryStore
from tests.harness.apiserver import prepare

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


class OutageStore(MemoryStore):
    """A memory store whose reads and writes fail as an etcd member without a leader does
    while ``down``."""

    down = False
    outcome_unknown = False

    def _check(self) -> None:
        if self.down:
            raise EtcdNoQuorum("https://10.0.0.1:2379", outcome_unknown=self.outcome_unknown)

    async def current_revision(self) -> int:
        self._check()
        return await super().current_revision()

    async def get(self, key: str) -> KeyValue | None:
        self._check()
        return await super().get(key)

    async def list(
        self, prefix: str, *, revision: int = 0, limit: int = 0, start_after: str = ""
    ) -> ListResult:
        self._check()
        return await super().list(prefix, revision=revision, limit=limit, start_after=start_after)

    async def create(self, key: str, value: bytes, *, ttl: int = 0) -> KeyValue:
        self._check()
        return await super().create(key, value, ttl=ttl)


def _scenario(tmp_path: Path) -> dict[str, Any]:
    files = prepare(tmp_path)
    cert, key = files.client_cert("admin", ["system:masters"])
    tls = ssl.create_default_context(cafile=str(files.pki.ca_cert))
    tls.load_cert_chain(str(cert), str(key))
    store = OutageStore()
    seen: dict[str, Any] = {}

    async def main() -> None:
        server = ApiServer(files.config, store=store)
        await server.start()
        base = f"https://127.0.0.1:{server.port}"
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as http:

                async def call(method: str, path: str, body: Any = None) -> Any:
                    async with http.request(method, base + path, json=body) as resp:
                        text = await resp.text()
                        return resp.status, resp.headers.get("Retry-After"), text

                store.down = True
                seen["list"] = await call("GET", CONFIGMAPS)
                seen["readyz"] = await call("GET", "/readyz")
                store.outcome_unknown = True
                seen["create"] = await call("POST", CONFIGMAPS, {"metadata": {"name": "c"}})
                store.down = False
                seen["after"] = await call("GET", CONFIGMAPS)
                seen["readyz-after"] = await call("GET", "/readyz")
        finally:
            await server.stop()

    asyncio.run(main())
    return seen


def test_no_quorum_is_503_with_retry_after_and_says_why(tmp_path: Path) -> None:

    seen = _scenario(tmp_path)
    status, retry_after, text = seen["list"]
    assert (status, retry_after) == (503, "2")
    body = orjson.loads(text)
    assert body["kind"] == "Status"
    assert body["reason"] == "ServiceUnavailable"
    assert body["code"] == 503
    assert body["details"]["retryAfterSeconds"] == 2
    assert "the datastore has no quorum" in body["message"]
    assert "https://10.0.0.1:2379" in body["message"]

    status, retry_after, text = seen["create"]
    assert (status, retry_after) == (503, "2")
    assert "may still be applied" in orjson.loads(text)["message"]

    status, retry_after, text = seen["readyz"]
    assert (status, retry_after) == (503, "2")
    assert "the datastore has no quorum" in text
    assert "10.0.0.1" not in text  # /readyz is public: the reason, not the member's address

    assert seen["after"][0] == 200
    assert seen["readyz-after"][:2] == (200, None)
