"""An API server whose etcd member is cut off from the other two (a minority) answers at once
503 ServiceUnavailable with Retry-After and a reason naming the quorum, not 500 after etcd's
7 s request timeout; /readyz says the same; writes are served again once the quorum is back.
Three real etcd members on 127.0.0.1; two are frozen with SIGSTOP."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from berth.store.config import DatastoreConfig
from tests.harness.apiserver import ServerProcess, prepare, start_process
from tests.integration.store.etcd_server import EtcdProcess, make_tls, start_etcd_cluster

from .helpers import Raw

pytestmark = pytest.mark.timeout(120)
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
NOTICE_BUDGET = 4.0
"""A request sent at the moment of the cut: the member notices it lost its leader after one to
two election timeouts (1-2 s), then the request is given up within the probe interval."""
ANSWER_BUDGET = 2.0
"""Once the member knows it has no leader, every answer (requests are refused at once)."""


@dataclass
class Minority:
    members: list[EtcdProcess]
    server: ServerProcess
    client: Raw

    def create(self, name: str) -> tuple[int, dict[str, str], dict[str, object], float]:
        started = time.monotonic()
        status, headers, data = self.client.request(
            "POST", CONFIGMAPS, {"metadata": {"name": name}}, timeout=30
        )
        return status, headers, json.loads(data), time.monotonic() - started


@pytest.fixture
def minority(tmp_path: Path) -> Iterator[Minority]:
    tls = make_tls(tmp_path / "etcd-pki")
    members = start_etcd_cluster(tmp_path / "etcd", tls=tls)
    server: ServerProcess | None = None
    try:
        datastore = DatastoreConfig.from_mapping(
            {
                "type": "etcd",
                # as berth configures it: the local member first, then the others
                "endpoints": [m.url for m in members],
                "caFile": str(tls.ca),
                "certFile": str(tls.client_cert),
                "keyFile": str(tls.client_key),
            }
        )
        files = prepare(tmp_path / "apiserver", datastore=datastore, encryption_key=b"k" * 32)
        server = start_process(files)
        port = int(files.url.rsplit(":", 1)[1])
        cert = files.client_cert("admin", ["system:masters"])
        client = Raw(None, cert, ca=files.pki.ca_cert, port=port)
        yield Minority(members, server, client)
        client.close()
    finally:
        for member in members:
            if member.process.poll() is None:
                os.kill(member.process.pid, signal.SIGCONT)
            member.stop()
        if server is not None:
            server.process.kill()
            server.process.wait(10)
            if server.process.stdout is not None:
                server.process.stdout.close()


def _assert_no_quorum(status: int, headers: dict[str, str], body: dict[str, object]) -> None:
    assert status == 503, body
    assert headers.get("retry-after") == "2"
    assert body["reason"] == "ServiceUnavailable"
    assert "the datastore has no quorum" in str(body["message"])


def test_a_minority_api_server_answers_503_no_quorum_at_once(minority: Minority) -> None:
    status, _, body, _ = minority.create("before")
    assert status == 201, body
    for member in minority.members[1:]:
        os.kill(member.process.pid, signal.SIGSTOP)
    # sent at the cut: the member still believes in its leader and holds the request
    status, headers, body, took = minority.create("at-the-cut")
    _assert_no_quorum(status, headers, body)
    assert took < NOTICE_BUDGET, took
    print(f"a request sent at the cut: 503 after {took:.1f} s")
    # from now on the member knows: reads, writes and /readyz answer at once
    status, headers, body, took = minority.create("during")
    _assert_no_quorum(status, headers, body)
    assert took < ANSWER_BUDGET, took
    started = time.monotonic()
    status, headers, data = minority.client.request("GET", CONFIGMAPS)
    _assert_no_quorum(status, headers, json.loads(data))
    assert time.monotonic() - started < ANSWER_BUDGET
    started = time.monotonic()
    status, headers, data = minority.client.request("GET", "/readyz")
    assert time.monotonic() - started < ANSWER_BUDGET
    assert status == 503
    assert headers.get("retry-after") == "2"
    assert b"the datastore has no quorum" in data
    # the quorum returns: writes are served again (within a few election rounds)
    for member in minority.members[1:]:
        os.kill(member.process.pid, signal.SIGCONT)
    deadline = time.monotonic() + 30
    while (answer := minority.create("after"))[0] != 201:
        assert answer[0] == 503, answer
        assert time.monotonic() < deadline, answer
        time.sleep(0.2)  # Retry-After says 2 s; the test need not wait that long
    assert minority.client.request("GET", "/readyz")[0] == 200
