"""Opt-in lab suites (``-m vm`` / ``BERTH_VM=1``, ``-m chaos`` / ``BERTH_CHAOS=1``) and the
reaping of labs left by dead pytest processes, shared by tests/lab, tests/vm and tests/chaos."""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any, cast

import pytest

from tests.lab import optin


def _config(markexpr: str) -> pytest.Config:
    return cast(pytest.Config, SimpleNamespace(getoption=lambda name, default=None: markexpr))


@pytest.mark.parametrize(
    ("markexpr", "env", "asked"),
    [
        ("", "", False),
        ("chaos", "", True),
        ("vm or chaos", "", True),
        ("(chaos)", "", True),
        ("not chaos", "", False),
        ("lab and not  chaos", "", False),
        ("chaosmonkey", "", False),  # another marker, not this one
        ("", "1", True),
        ("not chaos", "1", True),  # the environment asks regardless
        ("", "0", False),
    ],
)
def test_a_suite_is_asked_for_by_marker_expression_or_environment(
    monkeypatch: pytest.MonkeyPatch, markexpr: str, env: str, asked: bool
) -> None:
    monkeypatch.setenv("BERTH_CHAOS", env)
    assert optin.asked_for(_config(markexpr), "chaos", "BERTH_CHAOS") is asked


def test_only_labs_of_dead_pytest_processes_with_the_tag_are_reaped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dead = 2**22 + 1  # above pid_max's default ceiling: no such process
    alive = os.getpid()
    names = [
        f"pt{dead}-c1",
        f"pt{dead}-c12",
        f"pt{alive}-c1",
        f"pt{dead}-1",
        f"pt{dead}-v1",
        "mine",
    ]
    downed: list[str] = []

    class FakeLab:
        def __init__(self, name: str) -> None:
            self.name = name

        def down(self) -> None:
            downed.append(self.name)

    monkeypatch.setattr(optin, "list_labs", lambda: names)
    monkeypatch.setattr(optin, "Lab", cast(Any, FakeLab))
    optin.reap_abandoned_labs("c")
    assert downed == [f"pt{dead}-c1", f"pt{dead}-c12"]
    downed.clear()
    optin.reap_abandoned_labs()
    assert downed == [f"pt{dead}-1"]
