"""The engine: connect, gather facts, plan, show, apply; hosts in parallel, phases in order.

Public API::

    from provisioner.engine import Engine, RunContext, Plan
    from provisioner.workflow.inventory import inventory_from_spec
    from provisioner.workflow import Phase, select

    ctx = RunContext(inventory_from_spec(spec, known_hosts=state.known_hosts),
                     cache_dir=cache, spec=spec, phase_set="cluster")
    with Engine(ctx, select(phases, only=..., skip=...), reporter=ConsoleReporter()) as engine:
        engine.connect_all(tolerate=True)   # unreachable hosts abort unless allow_unreachable
        engine.preflight()                  # every phase's check, all hosts, all problems at once
        plan = engine.plan()                # predict only; plan.changes, plan.save(path)
        engine.report_plan(plan)
        engine.apply()                      # or engine.apply(Plan.load(path)): exact, drift refused

Errors: ``HostsFailed`` (per-host lines ``[phase] host: ...``; exit code by kind),
``PreflightError``, ``PlanDriftError``.
"""

from provisioner.engine.plan import Plan, PlanDriftError, PlannedOp
from provisioner.engine.runner import Engine, HostsFailed, RunContext

__all__ = ["Engine", "HostsFailed", "Plan", "PlanDriftError", "PlannedOp", "RunContext"]
