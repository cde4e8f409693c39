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


_BASE = len(ALPHABET)
_PAIR = _BASE * _BASE
# Every two-digit string, least significant digit first: a suffix is two of these and one
# letter, three lookups instead of five divmods and a join (this runs on every pod create).
_PAIRS: tuple[str, ...] = tuple(ALPHABET[i % _BASE] + ALPHABET[i // _BASE] for i in range(_PAIR))


def random_suffix() -> str:
    value = _LIMIT
    while value >= _LIMIT:
        value = int.from_bytes(random_bytes(8), "big")
    value %= _SPACE
    # digit i (base 27, least significant first) is the i-th letter
    high: int = value // _PAIR
    low: int = value % _PAIR
    return _PAIRS[low] + _PAIRS[high % _PAIR] + ALPHABET[high // _PAIR]
