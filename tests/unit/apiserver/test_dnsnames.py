"""The shared name syntaxes: bounds, edges and the trailing newline a '$' anchor would let by."""

from __future__ import annotations

from typing import Any

import pytest

from berth.apiserver.dnsnames import (
    is_dns_label,
    is_dns_subdomain,
    is_iana_svc_name,
    is_label_value,
)


@pytest.mark.parametrize(
    ("value", "label", "subdomain", "label_value", "port_name"),
    [
        ("web", True, True, True, True),
        ("a" * 15, True, True, True, True),
        ("a" * 16, True, True, True, False),
        ("a" * 63, True, True, True, False),
        ("a" * 64, False, True, False, False),
        (".".join(["a" * 63] * 4)[:253], False, True, False, False),
        ("a" * 254, False, False, False, False),
        ("web.example", False, True, True, False),
        ("8080", True, True, True, False),
        ("a--b", True, True, True, False),
        ("-a", False, False, False, False),
        ("a-", False, False, False, False),
        ("Web", False, False, True, False),
        ("my_app", False, False, True, False),
        ("", False, False, True, False),
        ("web\n", False, False, False, False),
        (None, False, False, False, False),
        (80, False, False, False, False),
    ],
)
def test_name_syntaxes(
    value: Any, label: bool, subdomain: bool, label_value: bool, port_name: bool
) -> None:
    assert is_dns_label(value) is label
    assert is_dns_subdomain(value) is subdomain
    assert is_label_value(value) is label_value
    assert is_iana_svc_name(value) is port_name
