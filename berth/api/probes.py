"""The syntax an httpGet/tcpSocket probe's fields must have: the API server validates pods by
it (:mod:`berth.apiserver.podsafety`) and the node checks again before it probes
(:mod:`berth.runtime.probetarget`), so both sides apply exactly the same rules.

* ``path``: starts with ``/``, printable ASCII without spaces (the rest percent-encoded);
* header names are RFC 9110 tokens, values have no control characters other than tab (a CR/LF
  would inject headers or whole requests);
* ``host``: an IP address or a DNS name.
"""

from __future__ import annotations

import ipaddress
import re

_DNS_LABEL = r"[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*\.?$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_PATH = re.compile(r"^/[\x21-\x7e]*$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def is_probe_path(path: str) -> bool:
    return _PATH.fullmatch(path) is not None


def is_header_name(name: str) -> bool:
    return _TOKEN.fullmatch(name) is not None


def has_control_character(value: str) -> bool:
    """A control character other than tab (CR and LF included) is in ``value``."""
    return _CONTROL.search(value) is not None


def is_host_syntax(host: str) -> bool:
    """An IP address or a DNS name of at most 253 characters."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return len(host) <= 253 and _HOSTNAME.fullmatch(host) is not None
    return True
