"""Moved to :mod:`provisioner.workflow` (the framework sits below the phases and the engine);
this name is kept for code written against the old one and re-exports it."""

from provisioner.workflow import (
    AfterFn,
    CheckFn,
    Inventory,
    OperationsFn,
    Phase,
    PhaseData,
    SelectedPhase,
    flatten,
    select,
)

__all__ = [
    "AfterFn",
    "CheckFn",
    "Inventory",
    "OperationsFn",
    "Phase",
    "PhaseData",
    "SelectedPhase",
    "flatten",
    "select",
]
