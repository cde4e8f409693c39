"""Facts about the machine: OS, Python, systemd, architecture, clock, disk, sysctls, modules."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from provisioner.facts._sh import check_path, words
from provisioner.facts.base import Fact


@dataclass(frozen=True)
class OsInfo:
    id: str
    version_id: str
    pretty_name: str
    codename: str = ""


@dataclass(frozen=True)
class OsRelease(Fact[OsInfo | None]):
    """``/etc/os-release`` (``None`` when missing). Example: ``OsInfo("debian", "12", ...)``."""

    def command(self) -> str:
        return "cat /etc/os-release"

    def parse(self, output: str, exit_code: int) -> OsInfo | None:
        if exit_code != 0:
            return None
        values: dict[str, str] = {}
        for line in output.splitlines():
            key, sep, raw = line.partition("=")
            if sep and key.strip() and not key.startswith("#"):
                parsed = shlex.split(raw)
                values[key.strip()] = parsed[0] if parsed else ""
        return OsInfo(
            id=values.get("ID", ""),
            version_id=values.get("VERSION_ID", ""),
            pretty_name=values.get("PRETTY_NAME", ""),
            codename=values.get("VERSION_CODENAME", ""),
        )


@dataclass(frozen=True)
class PythonInfo:
    path: str
    version: tuple[int, int, int]


@dataclass(frozen=True)
class PythonVersion(Fact[PythonInfo | None]):
    """The host's ``python3``: path and version, or ``None`` when absent."""

    def command(self) -> str:
        return "command -v python3 && python3 -V"

    def parse(self, output: str, exit_code: int) -> PythonInfo | None:
        lines = output.splitlines()
        if exit_code != 0 or len(lines) < 2:
            return None
        match = re.search(r"Python (\d+)\.(\d+)\.(\d+)", lines[1])
        if match is None:
            raise ValueError(f"unexpected python3 -V output {lines[1]!r}")
        major, minor, patch = (int(g) for g in match.groups())
        return PythonInfo(path=lines[0].strip(), version=(major, minor, patch))


@dataclass(frozen=True)
class SystemdInfo:
    running: bool
    """systemd is PID 1 (``/run/systemd/system`` exists)."""
    version: int | None


@dataclass(frozen=True)
class Systemd(Fact[SystemdInfo]):
    """Whether systemd runs the host, and its version."""

    def command(self) -> str:
        return (
            "if [ -d /run/systemd/system ]; then echo running; else echo absent; fi; "
            "systemctl --version 2>/dev/null | head -n 1"
        )

    def parse(self, output: str, exit_code: int) -> SystemdInfo:
        lines = output.splitlines()
        match = re.match(r"systemd (\d+)", lines[1]) if len(lines) > 1 else None
        return SystemdInfo(
            running=bool(lines) and lines[0] == "running",
            version=int(match.group(1)) if match else None,
        )


@dataclass(frozen=True)
class MachineInfo:
    hostname: str
    arch: str
    kernel: str


@dataclass(frozen=True)
class Machine(Fact[MachineInfo]):
    """Hostname, CPU architecture (``uname -m``) and kernel release."""

    def command(self) -> str:
        # one process: uname prints node name, kernel release and machine in that order
        return "uname -nrm"

    def parse(self, output: str, exit_code: int) -> MachineInfo:
        lines = output.splitlines()
        if len(lines) >= 3:  # earlier berths: one uname per line (-n, -m, -r)
            hostname, arch, kernel = lines[:3]
        else:
            hostname, kernel, arch = lines[0].split()
        return MachineInfo(hostname=hostname, arch=arch, kernel=kernel)


@dataclass(frozen=True)
class Clock(Fact[float]):
    """The host's wall clock (seconds since the epoch); compared between hosts for skew."""

    volatile = True
    solo = True

    def command(self) -> str:
        return "date +%s.%N"

    def parse(self, output: str, exit_code: int) -> float:
        return float(output.strip())


@dataclass(frozen=True)
class DiskFree(Fact[dict[str, int | None]]):
    """Bytes available to unprivileged users on the filesystem of each path (``None``: absent)."""

    paths: tuple[str, ...] = ("/",)
    volatile = True

    def __post_init__(self) -> None:
        for path in self.paths:
            check_path(path)

    def command(self) -> str:
        return (
            f"for p in {words(self.paths)}; do "
            'printf \'%s\\t%s\\n\' "$p" "$(stat -f -c \'%a %S\' -- "$p")"; done'
        )

    def parse(self, output: str, exit_code: int) -> dict[str, int | None]:
        result: dict[str, int | None] = dict.fromkeys(self.paths)
        for line in output.splitlines():
            path, _, value = line.partition("\t")
            parts = value.split()
            if path in result and len(parts) == 2:
                result[path] = int(parts[0]) * int(parts[1])
        return result


def _sysctl_path(key: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", key):
        raise ValueError(f"not a sysctl key: {key!r}")
    return "/proc/sys/" + key.replace(".", "/")


@dataclass(frozen=True)
class Sysctls(Fact[dict[str, str | None]]):
    """Current values of ``keys`` (whitespace collapsed; ``None``: no such key)."""

    keys: tuple[str, ...]

    def command(self) -> str:
        lines = [
            f"if [ -r {_sysctl_path(k)} ]; then printf '%s\\t' {k}; tr '\\n\\t' '  ' < "
            f"{_sysctl_path(k)}; echo; fi"
            for k in self.keys
        ]
        return "; ".join(lines) if lines else "true"

    def parse(self, output: str, exit_code: int) -> dict[str, str | None]:
        result: dict[str, str | None] = dict.fromkeys(self.keys)
        for line in output.splitlines():
            key, sep, value = line.partition("\t")
            if sep and key in result:
                result[key] = " ".join(value.split())
        return result


@dataclass(frozen=True)
class KernelModules(Fact[frozenset[str]]):
    """Modules known to the running kernel (loaded, or built in with a ``/sys/module`` entry)."""

    def command(self) -> str:
        return "ls -1 /sys/module; cut -d' ' -f1 /proc/modules"

    def parse(self, output: str, exit_code: int) -> frozenset[str]:
        return frozenset(line.strip() for line in output.splitlines() if line.strip())
