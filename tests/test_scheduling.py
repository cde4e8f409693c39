"""The order ``make test`` hands test files to its parallel workers (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import EXPECTED_SECONDS, NEW_LAB_MODULE_SECONDS, expected_seconds

ROOT = Path(__file__).resolve().parents[1]


def test_every_timed_file_exists() -> None:
    """A renamed or removed module must not keep a stale entry (its new name would lose its
    place at the front)."""
    assert [path for path in EXPECTED_SECONDS if not (ROOT / path).is_file()] == []


def test_a_new_lab_module_starts_among_the_long_ones() -> None:
    """A lab module nobody timed yet boots its own cluster: it starts before every short file."""
    new = expected_seconds("tests/lab/test_not_timed_yet.py")
    assert new == NEW_LAB_MODULE_SECONDS
    short = [
        seconds
        for path, seconds in EXPECTED_SECONDS.items()
        if "/lab/" not in path and "/vm/" not in path  # the VM smoke boots its own VM
    ]
    assert new > max(short)
    assert expected_seconds("tests/unit/test_not_timed_yet.py") == 0
