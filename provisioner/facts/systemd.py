"""Facts about systemd units."""

from __future__ import annotations

import re
from dataclasses import dataclass

from provisioner.facts._sh import words
from provisioner.facts.base import Fact

_UNIT = re.compile(r"[A-Za-z0-9:_.@\-]+\.(service|socket|timer|target|mount|path)")


@dataclass(frozen=True)
class UnitState:
    """A unit as systemd sees it; ``enabled`` is its UnitFileState (``enabled``, ``disabled``)."""

    load: str
    active: str
    sub: str
    enabled: str
    needs_reload: bool

    @property
    def exists(self) -> bool:
        return self.load not in ("not-found", "unavailable")

    @property
    def is_enabled(self) -> bool:
        return self.enabled in ("enabled", "enabled-runtime", "static", "alias")

    @property
    def is_active(self) -> bool:
        return self.active in ("active", "reloading", "activating")


MISSING = UnitState("not-found", "inactive", "dead", "", False)


@dataclass(frozen=True)
class UnitStates(Fact[dict[str, UnitState]]):
    """Load/active/enabled state of each unit; ``load == "unavailable"`` when systemd is absent."""

    units: tuple[str, ...]

    def __post_init__(self) -> None:
        for unit in self.units:
            if not _UNIT.fullmatch(unit):
                raise ValueError(f"not a unit name: {unit!r}")

    def command(self) -> str:
        return (
            "systemctl show -p Id -p LoadState -p ActiveState -p SubState -p UnitFileState "
            f"-p NeedDaemonReload -- {words(self.units)}"
        )

    def parse(self, output: str, exit_code: int) -> dict[str, UnitState]:
        blocks = [b for b in output.strip().split("\n\n") if b.strip()]
        if exit_code != 0 or len(blocks) != len(self.units):
            return dict.fromkeys(self.units, UnitState("unavailable", "", "", "", False))
        result: dict[str, UnitState] = {}
        for unit, block in zip(self.units, blocks, strict=True):
            props = dict(line.partition("=")[::2] for line in block.splitlines())
            result[unit] = UnitState(
                load=props.get("LoadState", ""),
                active=props.get("ActiveState", ""),
                sub=props.get("SubState", ""),
                enabled=props.get("UnitFileState", ""),
                needs_reload=props.get("NeedDaemonReload", "no") == "yes",
            )
        return result
