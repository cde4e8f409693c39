"""berth.runtime.timeline: per-pod startup stamps, nothing kept when off."""

from __future__ import annotations

import logging

import pytest

from berth.runtime import timeline


@pytest.fixture
def enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timeline, "ENABLED", True)
    monkeypatch.setattr(timeline, "_stamps", {})
    monkeypatch.setattr(timeline, "_done", set())


def test_off_keeps_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timeline, "ENABLED", False)
    monkeypatch.setattr(timeline, "_stamps", {})
    timeline.stamp("u1", "seen")
    assert timeline._stamps == {}
    assert timeline.flush("u1") is None


@pytest.mark.usefixtures("enabled")
def test_first_stamp_of_a_stage_wins_and_flush_logs_one_parseable_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    timeline.stamp("u1", "seen")
    first = timeline._stamps["u1"]["seen"]
    timeline.stamp("u1", "seen")  # a later event for the same pod: not a new delivery
    timeline.stamp("u1", "started")
    with caplog.at_level(logging.INFO, logger="berth.timeline"):
        marks = timeline.flush("u1")
    assert marks is not None
    assert marks["seen"] == first <= marks["started"]
    (record,) = caplog.records
    doc = timeline.parse(record.getMessage())
    assert doc == {"uid": "u1", "seen": first, "started": marks["started"]}
    assert timeline.flush("u1") is None  # forgotten once written
    timeline.stamp("u1", "seen")  # e.g. the watch echoing its status patch
    assert "u1" not in timeline._stamps


def test_parse_ignores_other_lines() -> None:
    assert timeline.parse("2026 INFO berth.agent: started") is None
    assert timeline.parse("pod timeline {not json") is None
    assert timeline.parse('pod timeline {"seen": 1.0}') is None
