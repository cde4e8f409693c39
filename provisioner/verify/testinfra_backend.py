"""testinfra over berth's own connector: the same SSH settings (pinned host keys, identity,
jump host, retries) as ``apply``, instead of testinfra's own paramiko client, which would accept
any host key."""

from __future__ import annotations

from typing import Any

import testinfra.backend.base
import testinfra.host

from provisioner.connectors.base import Connector


class ConnectorBackend(testinfra.backend.base.BaseBackend):  # type: ignore[misc]
    """A testinfra backend that runs every command through a :class:`Connector`."""

    NAME = "berth"

    def __init__(self, connector: Connector, **kwargs: Any) -> None:
        self.connector = connector
        super().__init__(str(connector.host), **kwargs)

    def run(self, command: str, *args: str, **kwargs: Any) -> Any:
        text = self.get_command(command, *args)
        result = self.connector.run(text, timeout=60)
        return self.result(result.exit_code, self.encode(text), result.stdout, result.stderr)


def testinfra_host(connector: Connector) -> testinfra.host.Host:
    """A testinfra ``Host`` (``host.file(...)``, ``host.service(...)``, ``host.socket(...)``)."""
    return testinfra.host.Host(ConnectorBackend(connector))
