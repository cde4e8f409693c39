"""Applying the rendered ruleset with ``nft -f`` (one atomic transaction per sync)."""

from __future__ import annotations

import hashlib

from berth.network.command import CommandFailed, Runner
from berth.proxy.render import TABLE, transaction


class NftApplier:
    """Replaces berth's nftables table; skips the call when the ruleset has not changed."""

    def __init__(self, runner: Runner, *, table: str = TABLE, nft: str = "nft") -> None:
        self.runner = runner
        self.table = table
        self.nft = nft
        self._applied: str | None = None

    async def apply(self, ruleset: str, *, force: bool = False) -> bool:
        """Apply ``ruleset``; returns whether ``nft`` ran. A failure leaves the previous table
        in place (the transaction is all-or-nothing) and raises :class:`CommandFailed`."""
        digest = hashlib.sha256(ruleset.encode()).hexdigest()
        if digest == self._applied and not force:
            return False
        script = transaction(ruleset, table=self.table)
        result = await self.runner.run([self.nft, "-f", "-"], stdin=script.encode())
        if not result.ok:
            self._applied = None
            raise CommandFailed(result, f"apply nftables table {self.table}")
        self._applied = digest
        return True

    async def check(self, ruleset: str) -> str | None:
        """Dry-run ``ruleset`` with ``nft -c`` (nothing changes): ``None`` when nft accepts
        it, else the first line of its complaint."""
        script = transaction(ruleset, table=self.table)
        result = await self.runner.run([self.nft, "-c", "-f", "-"], stdin=script.encode())
        if result.ok:
            return None
        text = (result.stderr or result.stdout or b"").decode(errors="replace").strip()
        return (text.splitlines() or [f"exit status {result.returncode}"])[0][:300]

    async def remove(self) -> None:
        """Delete the table (no error when it is already gone)."""
        script = f"add table ip {self.table}\ndelete table ip {self.table}\n"
        result = await self.runner.run([self.nft, "-f", "-"], stdin=script.encode())
        if not result.ok:
            raise CommandFailed(result, f"remove nftables table {self.table}")
        self._applied = None
