"""The etcd phase's package resolution: the shared dependency walk of the artifacts layer."""

from provisioner.artifacts.depends import Group, missing, parse_depends

__all__ = ["Group", "missing", "parse_depends"]
