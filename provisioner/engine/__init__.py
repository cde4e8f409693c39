"""The engine: connect, gather facts, plan, show, apply; hosts in parallel, phases in order."""

from provisioner.engine.plan import Plan, PlanDriftError, PlannedOp
from provisioner.engine.runner import Engine, RunContext

__all__ = ["Engine", "Plan", "PlanDriftError", "PlannedOp", "RunContext"]
