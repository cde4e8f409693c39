"""Operations: generators of typed, quoted commands that yield nothing when the host is right."""

from provisioner.operations.base import HostRun, OpContext, Operation, Outcome, evaluate

__all__ = ["HostRun", "OpContext", "Operation", "Outcome", "evaluate"]
