"""Random name suffixes: ``generateName`` and the ``kube-api-access-<x>`` volume.

Upstream's alphabet (no vowels, so no words; no 0/1/3 that read as letters). One uniform
draw below 27**5, written as 5 base-27 digits, is as uniform as 5 ``secrets.choice`` calls;
its bytes come from the operating system's CSPRNG through ``berth.api.meta.random_bytes``
(pooled: this runs on every pod create)."""

from __future__ import annotations

from berth.api.meta import random_bytes

ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
LENGTH = 5
_SPACE = len(ALPHABET) ** LENGTH
# 64 random bits, rejected at or above the largest multiple of _SPACE below 2**64 (a
# rejection once in about 10**12 draws), are uniform modulo _SPACE.
_LIMIT = (2**64 // _SPACE) * _SPACE


def random_suffix() -> str:
    value = _LIMIT
    while value >= _LIMIT:
        value = int.from_bytes(random_bytes(8), "big")
    value %= _SPACE
    out = []
    for _ in range(LENGTH):
        value, digit = divmod(value, len(ALPHABET))
        out.append(ALPHABET[digit])
    return "".join(out)
