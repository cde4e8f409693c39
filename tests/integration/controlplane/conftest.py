"""Fixtures: a fresh real API server per test (generated PKI, free port)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.apiserver import ServerHandle, running_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerHandle]:
    with running_server(tmp_path / "apiserver", bookmark_interval=1.0) as srv:
        yield srv
