"""The string ``format``s checked on custom objects, those cheap to check.

Upstream checks every format its registry knows (and drops unknown ones from schemas); these
are the ones seen in practice. An unknown format is not checked, as upstream.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import uuid
from collections.abc import Callable
from datetime import date, datetime

_HOSTNAME = re.compile(
    r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$"
)
_MAC = re.compile(r"^(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$")
_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$"
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def _byte(s: str) -> bool:
    try:
        base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _date(s: str) -> bool:
    try:
        date.fromisoformat(s)
    except ValueError:
        return False
    return len(s) == 10


def _datetime(s: str) -> bool:
    if not _DATETIME.match(s):
        return False
    try:
        datetime.fromisoformat(s.replace("z", "Z").replace("t", "T").replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _ip(version: int) -> Callable[[str], bool]:
    def check(s: str) -> bool:
        try:
            return ipaddress.ip_address(s).version == version
        except ValueError:
            return False

    return check


def _cidr(s: str) -> bool:
    try:
        ipaddress.ip_network(s, strict=False)
    except ValueError:
        return False
    return "/" in s


def _uuid(s: str) -> bool:
    try:
        uuid.UUID(s)
    except ValueError:
        return False
    return len(s) == 36


CHECKS: dict[str, Callable[[str], bool]] = {
    "byte": _byte,
    "date": _date,
    "date-time": _datetime,
    "datetime": _datetime,
    "ipv4": _ip(4),
    "ipv6": _ip(6),
    "cidr": _cidr,
    "uuid": _uuid,
    "hostname": lambda s: len(s) <= 255 and bool(_HOSTNAME.match(s)),
    "mac": lambda s: bool(_MAC.match(s)),
    "email": lambda s: bool(_EMAIL.match(s)),
}


def valid(fmt: str, value: str) -> bool:
    check = CHECKS.get(fmt)
    return check is None or check(value)
