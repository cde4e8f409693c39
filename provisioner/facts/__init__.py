"""Facts: small typed parsers of one remote command each, gathered in one round-trip per host."""

from provisioner.facts.base import Fact, FactSet, to_data
from provisioner.facts.gather import gather

__all__ = ["Fact", "FactSet", "gather", "to_data"]
