"""Hosts from ``terraform output -json``.

Expected shape: an output (default name ``berth_hosts``) whose value is a list of objects::

    output "berth_hosts" {
      value = [for i, vm in libvirt_domain.node : {
        name    = vm.name                          # required, DNS-1123
        address = vm.network_interface[0].addresses[0]   # required, node IP
        roles   = i == 0 ? ["control-plane"] : ["worker"]  # optional
        user    = "debian"                         # optional SSH user
        port    = 22                               # optional SSH port
        labels  = { zone = "a" }                   # optional node labels
      }]
    }

``terraform output -json`` prints ``{"berth_hosts": {"sensitive": false, "type": ..., "value":
[...]}}``; ``terraform output -json berth_hosts`` prints just the list. Both are accepted. Hosts
without roles get the defaults of :mod:`provisioner.inventory_sources.document`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from provisioner.errors import SpecError
from provisioner.inventory_sources.document import HostEntry, build_document
from provisioner.spec.problems import Path, Problem, position_of, render
from provisioner.spec.source import YamlSyntaxError, parse_yaml
from provisioner.spec.translate import did_you_mean

DEFAULT_OUTPUT = "berth_hosts"
_FIELDS = {"name", "address", "roles", "user", "port", "labels"}


def hosts_from_terraform(
    text: str, *, filename: str = "terraform output", output: str = DEFAULT_OUTPUT
) -> list[HostEntry]:
    """The hosts listed in ``terraform output -json`` text; problems are located in the file."""
    try:
        # JSON is YAML, and the YAML loader keeps line and column of every value
        data, source, problems = parse_yaml(text, filename)
    except YamlSyntaxError as error:
        at = f"{filename}:{error.position.line}:{error.position.column}"
        raise SpecError([f"{at}: not JSON: {error.problem.message}"]) from None
    base: Path = ()
    if isinstance(data, dict):
        if output not in data:
            names = ", ".join(sorted(map(str, data))) or "none"
            raise SpecError(
                [f"{filename}:1:1: no output named '{output}' (outputs: {names})"],
                hint=f'declare `output "{output}"` in Terraform (see inventories/README.md)',
            )
        entry = data[output]
        base = (output, "value") if isinstance(entry, dict) and "value" in entry else (output,)
        data = entry["value"] if base[-1] == "value" else entry
    hosts: list[HostEntry] = []
    if not isinstance(data, list) or not data:
        problems.append(Problem(base, "must be a non-empty list of hosts"))
    else:
        for index, item in enumerate(data):
            host = _host(item, (*base, index), problems)
            if host is not None:
                hosts.append(host)
    if problems:
        problems.sort(key=lambda p: position_of(p, source))
        raise SpecError([render(p, source) for p in problems])
    return hosts


def _host(item: Any, path: Path, problems: list[Problem]) -> HostEntry | None:
    if not isinstance(item, dict):
        problems.append(Problem(path, "must be an object with name and address", item))
        return None
    before = len(problems)
    for key in sorted(set(item) - _FIELDS):
        guess = did_you_mean(str(key), _FIELDS)
        hint = (
            f"did you mean '{guess}'?" if guess else "known fields: " + ", ".join(sorted(_FIELDS))
        )
        problems.append(Problem((*path, key), f"unknown field '{key}'", hint=hint, at_key=True))
    for key in ("name", "address"):
        if not isinstance(item.get(key), str) or not item.get(key):
            problems.append(Problem((*path, key), "required text field is missing or empty"))
    roles = item.get("roles") or []
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        problems.append(Problem((*path, "roles"), "must be a list of role names", roles))
    port = item.get("port")
    if port is not None and not isinstance(port, int):
        problems.append(Problem((*path, "port"), "must be a number", port))
    labels = item.get("labels") or {}
    if not isinstance(labels, dict):
        problems.append(Problem((*path, "labels"), "must be an object", labels))
    if len(problems) > before:
        return None
    user = item.get("user")
    return HostEntry(
        name=item["name"],
        address=item["address"],
        roles=tuple(roles),
        user=user if isinstance(user, str) else None,
        port=port,
        labels={str(k): str(v) for k, v in labels.items()},
    )


def from_terraform(
    text: str,
    *,
    name: str,
    filename: str = "terraform output",
    output: str = DEFAULT_OUTPUT,
    control_planes: Collection[str] = (),
    identity_file: str | None = None,
    host_key_policy: str = "strict",
) -> dict[str, Any]:
    """A Cluster document for the hosts in ``terraform output -json`` text."""
    hosts = hosts_from_terraform(text, filename=filename, output=output)
    return build_document(
        name,
        hosts,
        control_planes=control_planes,
        identity_file=identity_file,
        host_key_policy=host_key_policy,
    )
