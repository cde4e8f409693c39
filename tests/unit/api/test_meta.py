"""Timestamps as metav1.Time and MicroTime write and read them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from berth.api.meta import format_micro_time, format_time, parse_time


def test_format_and_parse() -> None:
    t = datetime(2024, 5, 6, 7, 8, 9, 987654, tzinfo=UTC)
    assert format_time(t) == "2024-05-06T07:08:09Z"  # truncated, not rounded
    assert format_micro_time(t) == "2024-05-06T07:08:09.987654Z"
    assert parse_time(format_micro_time(t)) == t
    assert parse_time("2024-05-06T09:08:09+02:00") == t.replace(microsecond=0)
    east = datetime(2024, 5, 6, 9, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(east) == "2024-05-06T07:08:09Z"
    # nanosecond fractions (Go writes up to nine digits) are read to the microsecond
    assert parse_time("2024-05-06T07:08:09.123456789Z") == t.replace(microsecond=123456)


def test_what_is_not_rfc3339_is_none() -> None:
    for bad in ("", None, 5, "2024-05-06", "2024-05-06 07:08:09Z", "2024-13-06T07:08:09Z",
                "2024-05-06T07:08:09", "20240506T070809Z"):  # fmt: skip
        assert parse_time(bad) is None
