"""Spec output: the JSON Schema for editors and YAML text for generated inventories."""

from __future__ import annotations

from typing import Any

import yaml

from provisioner.spec.model import API_VERSION, ClusterSpec


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a Cluster document, keys as written in YAML."""
    schema = ClusterSpec.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://berth.dev/schemas/{API_VERSION.replace('/', '-')}-cluster.json",
        **schema,
    }


class _Dumper(yaml.SafeDumper):
    """Block-style YAML, with lists indented under their key as people write them by hand."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def dump_spec(spec: ClusterSpec | dict[str, Any], *, header: str | None = None) -> str:
    """YAML text of a spec (defaults left out when given a model), with an optional comment
    ``header`` on top."""
    data = (
        spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        if isinstance(spec, ClusterSpec)
        else spec
    )
    if isinstance(spec, ClusterSpec):
        data = {"apiVersion": spec.api_version, "kind": spec.kind, **data}
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)
    if header:
        text = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) + text
    return text
