"""The fake host-command runner (a :class:`berth.network.command.Runner`): it runs nothing,
records every call and answers the queries a test scripts.

Each call is recorded as ``(argv, stdin)`` in :attr:`FakeRunner.calls`. The first answer whose
argv prefix matches gives the call's stdout (exit 0): bytes, or a function returning them (a
host whose state the test changes); an exception instead is raised (a program that is not
installed). Any other call exits :attr:`FakeRunner.rc` with no output (``stderr`` when it fails).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from berth.network.command import Completed

Answer = bytes | Callable[[], bytes] | Exception


class FakeRunner:
    """Records calls, answers scripted queries (see the module docstring)."""

    def __init__(
        self,
        answers: Sequence[tuple[Sequence[str], Answer]] = (),
        *,
        rc: int = 0,
        stderr: bytes = b"",
    ) -> None:
        self.answers = [(list(prefix), answer) for prefix, answer in answers]
        self.rc = rc
        self.stderr = stderr
        self.calls: list[tuple[list[str], bytes | None]] = []

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        time_limit: float = 60.0,
    ) -> Completed:
        self.calls.append((list(argv), stdin))
        for prefix, answer in self.answers:
            if list(argv[: len(prefix)]) == prefix:
                if isinstance(answer, Exception):
                    raise answer
                out = answer if isinstance(answer, bytes) else answer()
                return Completed(tuple(argv), 0, out, b"")
        return Completed(tuple(argv), self.rc, b"", self.stderr if self.rc else b"")

    def argvs(self) -> list[list[str]]:
        """Every call's argv, in order."""
        return [argv for argv, _ in self.calls]

    def stdins(self, program: str) -> list[bytes]:
        """What each call of ``program`` was given on stdin (``nft -f -`` rulesets; b"" for
        none)."""
        return [stdin or b"" for argv, stdin in self.calls if argv[:1] == [program]]
