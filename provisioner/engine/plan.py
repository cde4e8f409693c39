"""A plan: per host and phase, each operation's predicted commands or its no-op reason.

A plan saved with ``berth plan -o FILE`` records the spec's digest and, per host and phase, a
fingerprint of the facts it was computed from, plus the digest of every predicted command.
``berth apply FILE`` refuses to run when the spec changed or any host drifted since (different
fact fingerprint), and refuses an operation whose regenerated commands differ from the plan, so
what runs is exactly what was shown.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from provisioner.errors import ExitCode, ProvisionerError, StateError

PLAN_FORMAT = 1


class PlanDriftError(ProvisionerError):
    """A saved plan no longer matches the hosts or the spec; plan again."""

    exit_code = ExitCode.STATE

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            f"the plan is stale: {len(problems)} host/phase(s) changed since it was made",
            hint="run `berth plan` again, review it, then apply the new plan",
        )
        self.problems = problems

    def lines(self) -> list[str]:
        return [*self.problems, *super().lines()]


@dataclass
class PlannedOp:
    """One operation on one host in one phase."""

    phase: str
    host: str
    op: str
    description: str
    commands: list[str] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    noop: str | None = None
    diff: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.commands)


@dataclass
class Plan:
    """Everything ``berth plan`` predicted (see the module docstring)."""

    cluster: str
    phase_set: str
    phases: list[str]
    hosts: list[str]
    spec_path: str | None = None
    spec_digest: str | None = None
    fingerprints: dict[str, dict[str, str]] = field(default_factory=dict)
    ops: list[PlannedOp] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)

    @property
    def changes(self) -> list[PlannedOp]:
        return [op for op in self.ops if op.changed]

    @property
    def has_changes(self) -> bool:
        return any(op.changed for op in self.ops)

    def find(self, phase: str, host: str, op: str) -> PlannedOp | None:
        for planned in self.ops:
            if (planned.phase, planned.host, planned.op) == (phase, host, op):
                return planned
        return None

    def to_json(self) -> str:
        return json.dumps({"format": PLAN_FORMAT, **asdict(self)}, indent=1, sort_keys=True)

    def save(self, path: Path) -> None:
        path.write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: Path) -> Plan:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise StateError(f"{path}: not a readable berth plan ({error})") from None
        if data.pop("format", None) != PLAN_FORMAT:
            raise StateError(f"{path}: plan format is not {PLAN_FORMAT}; plan again")
        ops = [PlannedOp(**op) for op in data.pop("ops", [])]
        return cls(ops=ops, **data)
