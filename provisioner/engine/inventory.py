"""Moved to :mod:`provisioner.workflow.inventory` (phases use it too, and they sit below the
engine); this name is kept for code written against the old one and re-exports it."""

from provisioner.workflow.inventory import inventory_from_spec

__all__ = ["inventory_from_spec"]
