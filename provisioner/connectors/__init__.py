"""How bytes reach a host: one :class:`Connector` protocol, three transports (ssh, local, fake)."""

from provisioner.connectors.base import (
    CommandResult,
    Connector,
    HostKeyPolicy,
    HostName,
    HostTarget,
    JumpHost,
)

__all__ = ["CommandResult", "Connector", "HostKeyPolicy", "HostName", "HostTarget", "JumpHost"]
