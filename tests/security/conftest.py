"""The API server every attack test module starts, and its administrator's client.

One server per module (a module that needs other settings, or more set-up with its admin,
defines its own ``server`` or ``admin`` fixture, which pytest takes over these)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.apiserver import ServerHandle, running_server
from tests.integration.apiserver.helpers import Raw


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerHandle]:
    module = request.module.__name__.rpartition(".")[2]
    with running_server(tmp_path_factory.mktemp(module)) as srv:
        yield srv


@pytest.fixture(scope="module")
def admin(server: ServerHandle) -> Iterator[Raw]:
    """Raw HTTPS as ``admin`` (system:masters)."""
    r = Raw(server, server.client_cert("admin", ["system:masters"]))
    yield r
    r.close()
