"""Events expire (kube-apiserver's ``--event-ttl``): the store deletes an Event its ttl after
its last write; watchers see DELETED; other kinds never expire; on the SQLite store (the
embedded default) the deadline survives a restart of the server."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness.apiserver import ServerHandle, running_server

from .helpers import Raw

pytestmark = pytest.mark.timeout(180)
NS = "ttl"
TTL = 2
PATIENCE = 60.0  # seconds an expiry may take on a loaded machine (the sweep runs every 1 s)


def _event(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NS},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": NS},
        "reason": "Tested",
        "message": "short-lived",
    }


def _raw(srv: ServerHandle) -> Raw:
    return Raw(srv, srv.client_cert("admin", ["system:masters"]))


def _create(raw: Raw, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, _, data = raw.request("POST", path, body)
    assert status == 201, data
    result: dict[str, Any] = json.loads(data)
    return result


def _status(raw: Raw, path: str) -> int:
    return raw.request("GET", path)[0]


def _wait_gone(raw: Raw, path: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while _status(raw, path) != 404:
        assert time.monotonic() < deadline, f"{path} outlived the event ttl"
        time.sleep(0.2)


def _watched(raw: Raw, path: str, since: str) -> list[tuple[str, str]]:
    """The (type, name) of what a watch from ``since`` replays (it ends by its timeout)."""
    status, _, data = raw.request(
        "GET", f"{path}?watch=true&resourceVersion={since}&timeoutSeconds=2", timeout=60
    )
    assert status == 200, data
    events = [json.loads(line) for line in data.decode().splitlines() if line]
    return [(e["type"], e["object"]["metadata"]["name"]) for e in events if e["type"] != "BOOKMARK"]


def test_events_expire_watchers_see_deleted_and_other_kinds_stay(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with running_server(tmp_path, datastore="sqlite", sqlite_path=db, event_ttl=TTL) as srv:
        raw = _raw(srv)
        try:
            _create(raw, "/api/v1/namespaces", {"metadata": {"name": NS}})
            events = f"/api/v1/namespaces/{NS}/events"
            created = _create(raw, events, _event("short"))
            since = created["metadata"]["resourceVersion"]
            cm = _create(
                raw, f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "stays"}}
            )
            _wait_gone(raw, f"{events}/short")
            assert _watched(raw, events, since) == [("DELETED", "short")]
            status, _, data = raw.request("GET", f"/api/v1/namespaces/{NS}/configmaps/stays")
            assert status == 200
            assert (
                json.loads(data)["metadata"]["resourceVersion"] == cm["metadata"]["resourceVersion"]
            )
            assert _status(raw, f"/api/v1/namespaces/{NS}") == 200
        finally:
            raw.close()


def test_an_event_written_before_a_restart_expires_after_it(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with running_server(tmp_path / "a", datastore="sqlite", sqlite_path=db, event_ttl=TTL) as srv:
        raw = _raw(srv)
        try:
            _create(raw, "/api/v1/namespaces", {"metadata": {"name": NS}})
            _create(raw, f"/api/v1/namespaces/{NS}/events", _event("across"))
        finally:
            raw.close()
    with running_server(tmp_path / "b", datastore="sqlite", sqlite_path=db, event_ttl=TTL) as srv:
        raw = _raw(srv)
        try:
            _wait_gone(raw, f"/api/v1/namespaces/{NS}/events/across")
            assert _status(raw, f"/api/v1/namespaces/{NS}") == 200
        finally:
            raw.close()
