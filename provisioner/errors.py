"""One error taxonomy for the operator side.

Every error berth reports to a user derives from :class:`ProvisionerError`. Each kind carries the
process exit code CI scripts can branch on, and a message that already names *where* (file:line,
host, phase) and *what to do*. The CLI's single reporter (``provisioner.cli.main``) prints them;
nothing else prints errors. Messages must never contain key material or passwords.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, stable for CI scripts."""

    OK = 0
    FAILURE = 1
    USAGE = 2  # typer/click's own code for bad command-line usage
    VALIDATION = 3
    PREFLIGHT = 4
    CONNECTION = 5
    APPLY = 6
    VERIFY = 7
    LAB = 8
    STATE = 9
    READER_GONE = 141  # 128 + SIGPIPE: stdout's reader went away (provisioner/cli/pipes.py)


class ProvisionerError(Exception):
    """Root of every error berth reports to a user."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def lines(self) -> list[str]:
        """The lines the reporter prints for this error (one problem per line)."""
        out = [self.message]
        if self.hint:
            out.append(f"hint: {self.hint}")
        return out


class SpecError(ProvisionerError, ValueError):
    """The cluster spec is invalid. Carries every problem found, each already located."""

    exit_code = ExitCode.VALIDATION

    def __init__(self, problems: list[str], *, hint: str | None = None) -> None:
        super().__init__(f"{len(problems)} problem(s) in the cluster spec", hint=hint)
        self.problems = problems

    def lines(self) -> list[str]:
        return [*self.problems, *super().lines()]


class StateError(ProvisionerError):
    """The operator-side cluster state (PKI, pinned keys, journal, lock) is unusable."""

    exit_code = ExitCode.STATE


class ConnectError(ProvisionerError):
    """A host could not be reached or authenticated (names the host, never credentials)."""

    exit_code = ExitCode.CONNECTION


class FactError(ProvisionerError):
    """A fact command failed or its output could not be parsed."""

    exit_code = ExitCode.APPLY


class OperationError(ProvisionerError):
    """An operation's command failed on a host."""

    exit_code = ExitCode.APPLY


class TemplateError(OperationError):
    """A template failed to render (names the template, line and surrounding lines)."""


class PhaseError(ProvisionerError):
    """A phase failed; ``phase`` is its path, e.g. ``pki/apiserver``."""

    exit_code = ExitCode.APPLY

    def __init__(self, phase: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"phase {phase}: {message}", hint=hint)
        self.phase = phase


class PreflightError(ProvisionerError):
    """Preflight found problems; carries all of them at once."""

    exit_code = ExitCode.PREFLIGHT

    def __init__(self, problems: list[str], *, hint: str | None = None) -> None:
        super().__init__(f"preflight found {len(problems)} problem(s)", hint=hint)
        self.problems = problems

    def lines(self) -> list[str]:
        return [*self.problems, *super().lines()]


class VerifyError(ProvisionerError):
    """Verification of a host or the cluster failed."""

    exit_code = ExitCode.VERIFY


class LabError(ProvisionerError):
    """The local lab could not be brought up, faulted or torn down."""

    exit_code = ExitCode.LAB
