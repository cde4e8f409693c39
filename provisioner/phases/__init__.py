"""Phases: the phase sets berth runs (the framework they are written in is
:mod:`provisioner.workflow`, re-exported here for convenience)."""

from provisioner.workflow import Inventory, Phase, PhaseData, SelectedPhase, select

__all__ = ["Inventory", "Phase", "PhaseData", "SelectedPhase", "select"]
