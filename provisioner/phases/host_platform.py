"""The platform (release and python3) of a host, from the facts preflight gathered."""

from __future__ import annotations

from provisioner import platforms
from provisioner.connectors.base import HostName
from provisioner.errors import PhaseError
from provisioner.facts.system import OsRelease, PythonVersion
from provisioner.workflow import PhaseData


def host_platform(data: PhaseData, host: HostName, phase: str = "artifacts") -> platforms.Platform:
    """The platform of host ``host`` (its release and python3), as preflight accepted it."""
    facts = data.host_facts(host, (OsRelease(), PythonVersion()))
    os_info, python = facts.get(OsRelease()), facts.get(PythonVersion())
    if os_info is None:
        raise PhaseError(phase, f"{host}: no /etc/os-release: cannot tell the platform")
    try:
        return platforms.match(
            os_info.id,
            os_info.version_id,
            os_info.codename,
            python.version if python is not None else None,
            pretty_name=os_info.pretty_name,
        )
    except platforms.UnsupportedPlatform as exc:
        raise PhaseError(phase, f"{host}: {exc}") from None
