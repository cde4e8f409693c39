"""The audit log's lines: the same text whatever standard error is, each on its file
descriptor before ``write`` returns."""

from __future__ import annotations

import io
import os
from pathlib import Path

import orjson
import pytest

from berth.apiserver.audit import AuditLog

EVENT = {
    "verb": "create",
    "user": "tenant ü",
    "resource": "pods",
    "namespace": "default",
    "name": "p-1",
    "annotations": orjson.Fragment(b'{"pod-security.kubernetes.io/enforce-policy":"x \\"y\\""}'),
}


def _line(text: str) -> dict[str, object]:
    assert text.startswith("AUDIT ")
    assert text.endswith("\n")
    assert text.count("\n") == 1
    event = orjson.loads(text.removeprefix("AUDIT "))
    assert isinstance(event, dict)
    return event


def _expected() -> dict[str, object]:
    event = orjson.loads(orjson.dumps(EVENT))
    assert isinstance(event, dict)
    return event


def test_each_line_is_on_the_file_before_write_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "stderr"
    with open(path, "wb") as raw:
        stream = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
        monkeypatch.setattr("sys.stderr", stream)
        log = AuditLog()
        for n in (1, 2):
            log.write(EVENT)
            # read through another descriptor: nothing may wait in a buffer of this process
            fd = os.open(path, os.O_RDONLY)
            try:
                lines = os.read(fd, 1 << 16).decode().splitlines(keepends=True)
            finally:
                os.close(fd)
            assert len(lines) == n
            event = _line(lines[-1])
            assert event.pop("time")
            assert event == _expected()
        stream.detach()


@pytest.mark.parametrize(
    "stream",
    [
        io.StringIO(),  # no byte buffer
        io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=False),
        io.TextIOWrapper(io.BytesIO(), encoding="latin-1", errors="replace", write_through=True),
    ],
)
def test_other_streams_get_the_line_as_text(
    stream: io.TextIOBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stderr", stream)
    AuditLog().write(EVENT)
    if isinstance(stream, io.StringIO):
        text = stream.getvalue()
    else:
        assert isinstance(stream, io.TextIOWrapper)
        stream.flush()
        buffer = stream.buffer
        assert isinstance(buffer, io.BytesIO)
        text = buffer.getvalue().decode(stream.encoding)
    event = _line(text)
    event.pop("time")
    assert event == _expected()


def test_a_closed_stream_does_not_fail_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    stream.close()
    monkeypatch.setattr("sys.stderr", stream)
    AuditLog().write(EVENT)


@pytest.mark.parametrize(
    "event",
    [
        EVENT,
        {},
        {"time": "given", "verb": "get"},
        {"name": 'a"b\\c\u2028'},
        {"n": [1, {"x": None}]},
    ],
)
def test_the_line_is_the_time_then_the_event_as_one_object(
    event: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog()
    for now in (1_800_000_000.2, 1_800_000_000.9, 1_800_000_001.1):  # same second, then next
        monkeypatch.setattr("time.time", lambda now=now: now)
        line = log._line(event)
        expected = orjson.dumps({"time": log._now(), **event}, option=orjson.OPT_APPEND_NEWLINE)
        assert line == b"AUDIT " + expected
