"""The cluster spec a lab writes for itself: its hosts as berth's inventory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from berth import __version__


def render(
    *,
    name: str,
    hosts: Sequence[tuple[str, str]],
    identity_file: str,
    known_hosts_file: str,
) -> str:
    """A cluster spec for ``hosts`` ((name, address) pairs): the first is control plane and
    worker, the rest workers; SSH as root with the lab key and strictly pinned host keys."""
    spec: dict[str, Any] = {
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": name},
        "spec": {
            "version": __version__,
            "ssh": {
                "user": "root",
                "port": 22,
                "identityFile": identity_file,
                "knownHostsFile": known_hosts_file,
                "hostKeyPolicy": "strict",
            },
            "hosts": [
                {
                    "name": host,
                    "address": address,
                    "roles": ["control-plane", "worker"] if index == 0 else ["worker"],
                }
                for index, (host, address) in enumerate(hosts)
            ],
            "datastore": {"type": "sqlite"},
        },
    }
    header = f"# Written by `berth lab up` for lab {name!r}; removed by `berth lab down`.\n"
    return header + yaml.safe_dump(spec, sort_keys=False)


def write_atomically(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)
