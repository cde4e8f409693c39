"""Watch semantics, mirroring the API machinery conformance tests ("Watchers should ...")."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.harness.apiserver import ServerHandle

from .helpers import Raw, Watch, core_api

pytestmark = pytest.mark.timeout(60)
NS = "watch"


@pytest.fixture(scope="module", autouse=True)
def namespace(api: k8s.ApiClient) -> None:
    core_api(api).create_namespace({"metadata": {"name": NS}})


def _cm(name: str, labels: dict[str, str], data: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "data": data or {}}


def _stream(raw: Raw, query: str) -> list[dict[str, Any]]:
    """A complete watch (ends by ``timeoutSeconds``) read through the raw client."""
    status, _, data = raw.request(
        "GET", f"/api/v1/namespaces/{NS}/configmaps?watch=true&{query}", timeout=30
    )
    assert status == 200
    return [json.loads(line) for line in data.decode().splitlines() if line]


def _summary(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [
        (
            e["type"],
            e["object"]["metadata"].get("name", ""),
            (e["object"].get("data") or {}).get("mutation", ""),
        )
        for e in events
        if e["type"] != "BOOKMARK"
    ]


def test_observe_add_update_delete_with_label_selectors(api: k8s.ApiClient) -> None:
    """Three watches (label A, label B, A or B) see exactly the changes to their objects."""
    core = core_api(api)
    results: dict[str, list[tuple[str, str, str]]] = {"a": [], "b": [], "ab": []}
    selectors = {"a": "watch-this=a", "b": "watch-this=b", "ab": "watch-this in (a,b)"}
    opened = threading.Barrier(4)

    def watch(key: str, expected: int) -> None:
        w = Watch()
        rv = core.list_namespaced_config_map(
            NS, label_selector=selectors[key]
        ).metadata.resource_version
        opened.wait()
        for ev in w.stream(
            core.list_namespaced_config_map,
            NS,
            label_selector=selectors[key],
            resource_version=rv,
            timeout_seconds=15,
        ):
            obj = ev["object"]
            results[key].append(
                (ev["type"], obj.metadata.name, (obj.data or {}).get("mutation", ""))
            )
            if len(results[key]) == expected:
                w.stop()

    threads = [
        threading.Thread(target=watch, args=("a", 4)),
        threading.Thread(target=watch, args=("b", 2)),
        threading.Thread(target=watch, args=("ab", 6)),
    ]
    for t in threads:
        t.start()
    opened.wait()
    core.create_namespaced_config_map(NS, _cm("cm-a", {"watch-this": "a"}))
    core.patch_namespaced_config_map("cm-a", NS, {"data": {"mutation": "1"}})
    core.patch_namespaced_config_map("cm-a", NS, {"data": {"mutation": "2"}})
    core.delete_namespaced_config_map("cm-a", NS)
    core.create_namespaced_config_map(NS, _cm("cm-b", {"watch-this": "b"}))
    core.delete_namespaced_config_map("cm-b", NS)
    for t in threads:
        t.join(20)
    expect_a = [
        ("ADDED", "cm-a", ""),
        ("MODIFIED", "cm-a", "1"),
        ("MODIFIED", "cm-a", "2"),
        ("DELETED", "cm-a", "2"),
    ]
    expect_b = [("ADDED", "cm-b", ""), ("DELETED", "cm-b", "")]
    assert results["a"] == expect_a
    assert results["b"] == expect_b
    assert results["ab"] == expect_a + expect_b


def test_start_watching_from_a_specific_resource_version(api: k8s.ApiClient, raw: Raw) -> None:
    core = core_api(api)
    core.create_namespaced_config_map(NS, _cm("from-rv", {"t": "from-rv"}))
    first = core.patch_namespaced_config_map("from-rv", NS, {"data": {"mutation": "1"}})
    core.patch_namespaced_config_map("from-rv", NS, {"data": {"mutation": "2"}})
    core.delete_namespaced_config_map("from-rv", NS)
    events = _stream(
        raw,
        f"labelSelector=t%3Dfrom-rv&resourceVersion={first.metadata.resource_version}&timeoutSeconds=1",
    )
    assert _summary(events) == [("MODIFIED", "from-rv", "2"), ("DELETED", "from-rv", "2")]


def test_restart_from_last_observed_resource_version(api: k8s.ApiClient, raw: Raw) -> None:
    core = core_api(api)
    start = core.list_namespaced_config_map(
        NS, label_selector="t=restart"
    ).metadata.resource_version
    core.create_namespaced_config_map(NS, _cm("restart", {"t": "restart"}))
    core.patch_namespaced_config_map("restart", NS, {"data": {"mutation": "1"}})
    first = _stream(raw, f"labelSelector=t%3Drestart&resourceVersion={start}&timeoutSeconds=1")
    assert _summary(first) == [("ADDED", "restart", ""), ("MODIFIED", "restart", "1")]
    last_rv = first[-1]["object"]["metadata"]["resourceVersion"]
    core.patch_namespaced_config_map("restart", NS, {"data": {"mutation": "2"}})
    core.delete_namespaced_config_map("restart", NS)
    second = _stream(raw, f"labelSelector=t%3Drestart&resourceVersion={last_rv}&timeoutSeconds=1")
    assert _summary(second) == [("MODIFIED", "restart", "2"), ("DELETED", "restart", "2")]


def test_object_leaving_the_selector_is_deleted_for_the_watcher(
    api: k8s.ApiClient, raw: Raw
) -> None:
    core = core_api(api)
    start = core.list_namespaced_config_map(NS).metadata.resource_version
    core.create_namespaced_config_map(NS, _cm("leaver", {"t": "leave", "sel": "in"}))
    core.patch_namespaced_config_map("leaver", NS, {"metadata": {"labels": {"sel": "out"}}})
    core.patch_namespaced_config_map("leaver", NS, {"data": {"mutation": "unseen"}})
    core.patch_namespaced_config_map("leaver", NS, {"metadata": {"labels": {"sel": "in"}}})
    events = _stream(
        raw, f"labelSelector=sel%3Din,t%3Dleave&resourceVersion={start}&timeoutSeconds=1"
    )
    assert [e["type"] for e in events] == ["ADDED", "DELETED", "ADDED"]
    assert events[2]["object"]["data"] == {"mutation": "unseen"}


def test_concurrent_watches_see_the_same_order(
    api: k8s.ApiClient, raw: Raw, server: ServerHandle
) -> None:
    core = core_api(api)
    start = core.list_namespaced_config_map(NS).metadata.resource_version

    def writer(i: int) -> None:
        for j in range(10):
            core.create_namespaced_config_map(NS, _cm(f"order-{i}-{j}", {"t": "order"}))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    orders = []
    for _ in range(3):
        r = Raw(server, server.client_cert("admin", ["system:masters"]))
        events = _stream(r, f"labelSelector=t%3Dorder&resourceVersion={start}&timeoutSeconds=1")
        r.close()
        orders.append([e["object"]["metadata"]["resourceVersion"] for e in events])
    assert len(orders[0]) == 40
    assert orders[0] == orders[1] == orders[2]
    assert [int(x) for x in orders[0]] == sorted(int(x) for x in orders[0])


def test_too_old_resource_version_is_410_expired(
    api: k8s.ApiClient, raw: Raw, server: ServerHandle
) -> None:
    core = core_api(api)
    old = core.create_namespaced_config_map(NS, _cm("old", {"t": "old"})).metadata.resource_version
    core.patch_namespaced_config_map("old", NS, {"data": {"mutation": "1"}})
    current = int(core.list_namespaced_config_map(NS).metadata.resource_version)
    server.call(server.server.compact(current))
    events = _stream(raw, f"resourceVersion={old}&timeoutSeconds=1")
    assert len(events) == 1
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410
    assert events[0]["object"]["reason"] == "Expired"
    status, body = raw.json(
        "GET", f"/api/v1/namespaces/{NS}/configmaps?limit=1&resourceVersion={old}"
    )
    assert (status, body["reason"]) == (410, "Expired")


def test_bookmarks_only_when_asked(raw: Raw) -> None:
    started = time.monotonic()
    with_bm = _stream(raw, "allowWatchBookmarks=true&timeoutSeconds=3&labelSelector=t%3Dnothing")
    assert time.monotonic() - started >= 2.5  # the server held the watch for timeoutSeconds
    bookmarks = [e for e in with_bm if e["type"] == "BOOKMARK"]
    assert bookmarks, "the server was configured to send a bookmark every second"
    assert bookmarks[0]["object"]["kind"] == "ConfigMap"
    assert int(bookmarks[0]["object"]["metadata"]["resourceVersion"]) > 0
    without = _stream(raw, "timeoutSeconds=2&labelSelector=t%3Dnothing")
    assert [e for e in without if e["type"] == "BOOKMARK"] == []


def test_table_watch_sends_columns_once(api: k8s.ApiClient, raw: Raw) -> None:
    core = core_api(api)
    start = core.list_namespaced_config_map(NS).metadata.resource_version
    core.create_namespaced_config_map(NS, _cm("tbl", {"t": "tbl"}, {"a": "1"}))
    core.patch_namespaced_config_map("tbl", NS, {"data": {"b": "2"}})
    status, _, data = raw.request(
        "GET",
        f"/api/v1/namespaces/{NS}/configmaps?watch=1&labelSelector=t%3Dtbl&resourceVersion={start}&timeoutSeconds=1",
        headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"},
    )
    assert status == 200
    events = [json.loads(line) for line in data.decode().splitlines()]
    assert [e["object"]["kind"] for e in events] == ["Table", "Table"]
    assert [c["name"] for c in events[0]["object"]["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert events[1]["object"]["columnDefinitions"] is None
    assert [e["object"]["rows"][0]["cells"][:2] for e in events] == [["tbl", 1], ["tbl", 2]]
