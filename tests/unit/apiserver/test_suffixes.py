"""Random name suffixes: the digits of one uniform draw, least significant first."""

from __future__ import annotations

import pytest

from berth.apiserver import suffixes
from berth.apiserver.suffixes import ALPHABET, LENGTH, random_suffix


def _digits(value: int) -> str:
    out = []
    for _ in range(LENGTH):
        value, digit = divmod(value, len(ALPHABET))
        out.append(ALPHABET[digit])
    return "".join(out)


@pytest.mark.parametrize(
    "value",
    [0, 1, 26, 27, 728, 729, 27**4 - 1, 27**4, 27**5 - 1, 27**5, 123456789, 2**63 + 5],
)
def test_a_suffix_spells_the_draw_in_base_27(monkeypatch: pytest.MonkeyPatch, value: int) -> None:
    monkeypatch.setattr(suffixes, "random_bytes", lambda n: value.to_bytes(n, "big"))
    assert random_suffix() == _digits(value % len(ALPHABET) ** LENGTH)


def test_a_draw_at_or_above_the_limit_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter([2**64 - 1, 42])
    monkeypatch.setattr(suffixes, "random_bytes", lambda n: next(draws).to_bytes(n, "big"))
    assert random_suffix() == _digits(42)
