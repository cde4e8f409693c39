"""Random name suffixes: ``generateName`` and the ``kube-api-access-<x>`` volume.

Upstream's alphabet (no vowels, so no words; no 0/1/3 that read as letters). One
``secrets.randbelow`` call drawn as 5 base-27 digits is as uniform as 5 ``secrets.choice``
calls and asks the OS for random bytes once instead of five times (this runs on every pod
create)."""

from __future__ import annotations

import secrets

ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
LENGTH = 5
_SPACE = len(ALPHABET) ** LENGTH


def random_suffix() -> str:
    value = secrets.randbelow(_SPACE)
    out = []
    for _ in range(LENGTH):
        value, digit = divmod(value, len(ALPHABET))
        out.append(ALPHABET[digit])
    return "".join(out)
