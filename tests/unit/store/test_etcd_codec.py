"""The etcd JSON-gateway encoding, checked against recorded etcd 3.4 messages."""

from __future__ import annotations

import base64

from berth.store.etcd import decode_event, decode_kv, list_request, prefix_range_end
from berth.store.interface import EventType, KeyValue


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_prefix_range_end_increments_the_last_byte_that_can_be() -> None:
    assert prefix_range_end(b"/a/") == b"/a0"
    assert prefix_range_end(b"a\xff\xff") == b"b"
    assert prefix_range_end(b"\xff") == b"\0"  # no upper bound: to the end of the keyspace
    assert prefix_range_end(b"") == b"\0"


def test_list_request_pages_after_start_after_within_the_prefix() -> None:
    body = list_request("/p/", revision=7, limit=3, start_after="/p/b")
    assert body == {
        "key": b64("/p/b\0"),
        "range_end": b64("/p0"),
        "revision": "7",
        "limit": "3",
    }
    everything = list_request("", revision=0, limit=0, start_after="")
    assert everything == {"key": b64("\0"), "range_end": b64("\0")}


def test_decode_kv_fills_in_fields_etcd_omits_when_zero_or_empty() -> None:
    # etcd 3.4 leaves out an empty value entirely.
    raw = {"key": b64("/a"), "create_revision": "4", "mod_revision": "4", "version": "1"}
    assert decode_kv(raw) == KeyValue("/a", b"", 4, 4)


def test_delete_events_carry_the_last_value_at_the_delete_revision() -> None:
    recorded = {
        "type": "DELETE",
        "kv": {"key": "L2E=", "mod_revision": "3"},
        "prev_kv": {
            "key": "L2E=",
            "create_revision": "2",
            "mod_revision": "2",
            "version": "1",
            "value": "aGVsbG8=",
        },
    }
    event = decode_event(recorded)
    assert event.type is EventType.DELETE
    assert event.kv == KeyValue("/a", b"hello", 2, 3)
    assert event.prev == KeyValue("/a", b"hello", 2, 2)


def test_put_events_default_to_put_and_may_lack_prev() -> None:
    recorded = {"kv": {"key": "L2E=", "create_revision": "4", "mod_revision": "4", "version": "1"}}
    event = decode_event(recorded)
    assert (event.type, event.kv, event.prev) == (EventType.PUT, KeyValue("/a", b"", 4, 4), None)
