"""The watch-list (``sendInitialEvents``): the current state as ADDED events, a BOOKMARK
annotated ``k8s.io/initial-events-end: "true"`` at that state's revision, then changes; and
the option checks of kube-apiserver's ValidateListOptions."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from kubernetes import client as k8s

from .helpers import Raw, Watch, core_api

pytestmark = pytest.mark.timeout(60)
NS = "watchlist"
CMS = f"/api/v1/namespaces/{NS}/configmaps"
WATCH_LIST = "watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"


@pytest.fixture(scope="module", autouse=True)
def namespace(api: k8s.ApiClient) -> None:
    core = core_api(api)
    core.create_namespace({"metadata": {"name": NS}})
    for name in ("one", "two", "three"):
        core.create_namespaced_config_map(NS, {"metadata": {"name": name, "labels": {"n": name}}})


def _stream(raw: Raw, query: str) -> list[dict[str, Any]]:
    status, _, data = raw.request("GET", f"{CMS}?{query}", timeout=30)
    assert status == 200, data
    return [json.loads(line) for line in data.decode().splitlines() if line]


def _end_marker(event: dict[str, Any]) -> bool:
    annotations = event["object"]["metadata"].get("annotations") or {}
    return event["type"] == "BOOKMARK" and annotations == {"k8s.io/initial-events-end": "true"}


def test_initial_state_then_end_bookmark(raw: Raw) -> None:
    status, listed = raw.json("GET", CMS)
    assert status == 200
    events = _stream(raw, f"{WATCH_LIST}&allowWatchBookmarks=true&timeoutSeconds=1")
    added = [e for e in events if e["type"] == "ADDED"]
    assert sorted(e["object"]["metadata"]["name"] for e in added) == ["one", "three", "two"]
    marker = events[len(added)]
    assert _end_marker(marker), marker
    assert marker["object"]["kind"] == "ConfigMap"
    assert marker["object"]["apiVersion"] == "v1"
    assert int(marker["object"]["metadata"]["resourceVersion"]) >= int(
        listed["metadata"]["resourceVersion"]
    )
    assert sum(1 for e in events if _end_marker(e)) == 1


def test_selectors_apply_to_the_initial_state(raw: Raw) -> None:
    events = _stream(
        raw, f"{WATCH_LIST}&allowWatchBookmarks=true&timeoutSeconds=1&labelSelector=n%3Dtwo"
    )
    assert [e["type"] for e in events[:2]] == ["ADDED", "BOOKMARK"]
    assert events[0]["object"]["metadata"]["name"] == "two"
    assert _end_marker(events[1])


def test_without_bookmarks_no_marker(raw: Raw) -> None:
    events = _stream(raw, f"{WATCH_LIST}&timeoutSeconds=1")
    assert [e["type"] for e in events] == ["ADDED"] * 3


def test_resource_version_not_older_than(raw: Raw) -> None:
    _, listed = raw.json("GET", CMS)
    rv = int(listed["metadata"]["resourceVersion"])
    events = _stream(
        raw, f"{WATCH_LIST}&allowWatchBookmarks=true&timeoutSeconds=1&resourceVersion={rv}"
    )
    assert [e["type"] for e in events[:4]] == ["ADDED", "ADDED", "ADDED", "BOOKMARK"]
    status, doc = raw.json("GET", f"{CMS}?{WATCH_LIST}&resourceVersion={rv + 1000}")
    assert (status, doc["reason"]) == (504, "Timeout")
    assert doc["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"


def test_send_initial_events_false_starts_now(raw: Raw) -> None:
    query = "watch=true&sendInitialEvents=false&resourceVersionMatch=NotOlderThan"
    events = _stream(raw, f"{query}&timeoutSeconds=1")
    assert events == []
    _, listed = raw.json("GET", CMS)
    rv = listed["metadata"]["resourceVersion"]
    raw.json("POST", CMS, {"metadata": {"name": "later"}})
    events = _stream(raw, f"{query}&timeoutSeconds=1&resourceVersion={rv}")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "later")]
    raw.json("DELETE", f"{CMS}/later")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "watch=true&sendInitialEvents=true",
            "resourceVersionMatch: Forbidden: sendInitialEvents requires setting"
            " resourceVersionMatch to NotOlderThan",
        ),
        (
            "watch=true&resourceVersionMatch=NotOlderThan",
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless"
            " sendInitialEvents is provided",
        ),
        (
            "watch=true&sendInitialEvents=true&resourceVersionMatch=Exact",
            "[resourceVersionMatch: Forbidden: sendInitialEvents requires setting"
            " resourceVersionMatch to NotOlderThan, resourceVersionMatch: Unsupported value:"
            ' "Exact": supported values: "NotOlderThan"]',
        ),
        (
            "sendInitialEvents=true",
            "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list",
        ),
        (
            "resourceVersionMatch=NotOlderThan",
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless"
            " resourceVersion is provided",
        ),
        (
            "resourceVersionMatch=Exact&resourceVersion=0",
            'resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for'
            ' resourceVersion "0"',
        ),
    ],
)
def test_invalid_combinations(raw: Raw, query: str, message: str) -> None:
    status, doc = raw.json("GET", f"{CMS}?{query}")
    assert (status, doc["reason"]) == (422, "Invalid"), doc
    assert doc["message"] == f'ListOptions.meta.k8s.io "" is invalid: {message}'
    assert (doc["details"]["group"], doc["details"]["kind"]) == ("meta.k8s.io", "ListOptions")
    assert doc["details"]["causes"]


def test_send_initial_events_must_be_a_bool(raw: Raw) -> None:
    status, doc = raw.json(
        "GET", f"{CMS}?watch=true&sendInitialEvents=maybe&resourceVersionMatch=NotOlderThan"
    )
    assert (status, doc["reason"]) == (400, "BadRequest")


def test_python_client_watch_list(api: k8s.ApiClient) -> None:
    core = core_api(api)
    seen: list[tuple[str, str, dict[str, str]]] = []
    done = threading.Event()

    def watch() -> None:
        w = Watch()
        for ev in w.stream(
            core.list_namespaced_config_map,
            NS,
            send_initial_events=True,
            resource_version_match="NotOlderThan",
            allow_watch_bookmarks=True,
            timeout_seconds=5,
        ):
            raw_meta = ev["raw_object"]["metadata"]
            seen.append((ev["type"], raw_meta.get("name", ""), raw_meta.get("annotations") or {}))
            if ev["type"] == "ADDED" and raw_meta.get("name") == "after-marker":
                w.stop()
        done.set()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    deadline = time.monotonic() + 30  # an API server on a loaded machine
    while not any(s[0] == "BOOKMARK" for s in seen) and time.monotonic() < deadline:
        time.sleep(0.05)
    core.create_namespaced_config_map(NS, {"metadata": {"name": "after-marker"}})
    assert done.wait(30)
    types = [s[0] for s in seen]
    assert types[:4] == ["ADDED", "ADDED", "ADDED", "BOOKMARK"], seen
    assert seen[3][2] == {"k8s.io/initial-events-end": "true"}
    assert seen[-1][:2] == ("ADDED", "after-marker")
