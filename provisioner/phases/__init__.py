"""Phases: the workflow framework and the phase sets berth runs."""

from provisioner.phases.workflow import Inventory, Phase, PhaseData, SelectedPhase, select

__all__ = ["Inventory", "Phase", "PhaseData", "SelectedPhase", "select"]
