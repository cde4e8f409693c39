"""The cluster spec: models, the located-error loader, the JSON Schema and YAML output.

Public API::

    load_spec(path) -> ClusterSpec          # raises SpecError with every located problem
    load_spec(path, ssh_files=True)         # ... also checks the SSH key files (commands that
                                            # connect to hosts, and `berth validate`)
    parse_spec(text, filename=..., source=...) -> ClusterSpec
    json_schema() -> dict                   # for editors (``berth schema``)
    dump_spec(data) -> str                  # YAML text of a spec document (camelCase keys)
"""

from __future__ import annotations

from provisioner.spec.load import load_spec, parse_spec
from provisioner.spec.model import (
    API_VERSION,
    CONTROL_PLANE,
    KIND,
    WORKER,
    ApiServer,
    Certificates,
    ClusterSpec,
    ClusterSpecBody,
    Datastore,
    Host,
    HostSsh,
    HostSshOverrides,
    JumpHostSettings,
    JumpHostTarget,
    Metadata,
    Network,
    SshSettings,
    Taint,
    Upgrade,
    https_url,
)
from provisioner.spec.output import dump_spec, json_schema

__all__ = [
    "API_VERSION",
    "CONTROL_PLANE",
    "KIND",
    "WORKER",
    "ApiServer",
    "Certificates",
    "ClusterSpec",
    "ClusterSpecBody",
    "Datastore",
    "Host",
    "HostSsh",
    "HostSshOverrides",
    "JumpHostSettings",
    "JumpHostTarget",
    "Metadata",
    "Network",
    "SshSettings",
    "Taint",
    "Upgrade",
    "dump_spec",
    "https_url",
    "json_schema",
    "load_spec",
    "parse_spec",
]
