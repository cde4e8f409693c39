"""Acknowledged writes survive ``kill -9`` of the API server (SQLite store); Secrets are
encrypted at rest."""

from __future__ import annotations

import base64
import json
import os
import signal
from pathlib import Path

import pytest

from tests.harness.apiserver import ServerProcess, prepare, start_process

from .helpers import Raw

pytestmark = pytest.mark.timeout(120)
PLAINTEXT = "correct-horse-battery-staple"


def _client(proc: ServerProcess) -> Raw:
    files = proc.files
    port = int(files.url.rsplit(":", 1)[1])
    return Raw(
        None, files.client_cert("admin", ["system:masters"]), ca=files.pki.ca_cert, port=port
    )


def _kill9(proc: ServerProcess) -> None:
    os.kill(proc.process.pid, signal.SIGKILL)
    proc.process.wait(10)
    if proc.process.stdout is not None:
        proc.process.stdout.close()


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    files = prepare(tmp_path, datastore="sqlite", sqlite_path=db, encryption_key=os.urandom(32))
    proc = start_process(files)
    client = _client(proc)
    try:
        acknowledged = []
        for i in range(40):
            status, body = client.json(
                "POST",
                "/api/v1/namespaces/default/configmaps",
                {"metadata": {"name": f"durable-{i}"}, "data": {"i": str(i)}},
            )
            assert status == 201
            acknowledged.append(body["metadata"]["name"])
        status, _ = client.json(
            "POST",
            "/api/v1/namespaces/default/secrets",
            {"metadata": {"name": "creds"}, "stringData": {"password": PLAINTEXT}},
        )
        assert status == 201
        status, body = client.json(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/durable-0",
            {"data": {"i": "patched"}},
            content_type="application/merge-patch+json",
        )
        assert status == 200
        last_rv = int(body["metadata"]["resourceVersion"])
        status, body = client.json(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/durable-1",
            {"data": {"i": "after"}},
            content_type="application/merge-patch+json",
        )
        assert status == 200
    finally:
        client.close()
        _kill9(proc)

    proc = start_process(files)
    client = _client(proc)
    try:
        status, body = client.json("GET", "/api/v1/namespaces/default/configmaps?labelSelector=")
        assert status == 200
        names = {i["metadata"]["name"] for i in body["items"]}
        assert set(acknowledged) <= names
        assert int(body["metadata"]["resourceVersion"]) >= last_rv
        status, cm = client.json("GET", "/api/v1/namespaces/default/configmaps/durable-0")
        assert cm["data"] == {"i": "patched"}
        status, secret = client.json("GET", "/api/v1/namespaces/default/secrets/creds")
        assert status == 200
        assert base64.b64decode(secret["data"]["password"]).decode() == PLAINTEXT
        status, _ = client.json(
            "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "durable-0"}}
        )
        assert status == 409
        # A watcher resuming from a resourceVersion it saw before the crash gets the changes
        # after it, replayed from the store's log (the new server's memory never had them).
        status, _, data = client.request(
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=true"
            f"&resourceVersion={last_rv}&timeoutSeconds=1",
        )
        assert status == 200
        events = [json.loads(line) for line in data.decode().splitlines()]
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
            ("MODIFIED", "durable-1")
        ]
        assert events[0]["object"]["data"] == {"i": "after"}
    finally:
        client.close()
        proc.process.send_signal(signal.SIGTERM)
        assert proc.process.wait(20) == 0
        if proc.process.stdout is not None:
            proc.process.stdout.close()
    on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("state.db*") if p.is_file())
    assert b"durable-1" in on_disk  # the files are the store ...
    assert PLAINTEXT.encode() not in on_disk  # ... and the secret is not in them in clear
    assert base64.b64encode(PLAINTEXT.encode()) not in on_disk
