"""go_quote writes what Go's strconv.Quote writes (kube-apiserver's %q in messages)."""

from __future__ import annotations

import pytest

from berth.apiserver.gostrings import go_quote


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("spec.replicas", '"spec.replicas"'),
        ('a"b\\c', '"a\\"b\\\\c"'),
        ("tab\there", '"tab\\there"'),
        ("\a\b\f\n\r\v", '"\\a\\b\\f\\n\\r\\v"'),
        ("\x00\x1b\x7f", '"\\x00\\x1b\\x7f"'),
        ("héllo wörld ✓", '"héllo wörld ✓"'),
        ("\u00a0\u200b", '"\\u00a0\\u200b"'),
        ("\U000e0001", '"\\U000e0001"'),
        ("\ud800", '"\\ufffd"'),
    ],
)
def test_go_quote_matches_strconv_quote(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted
