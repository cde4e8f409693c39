"""apt for another Debian release than this machine's, in a private directory.

A cluster may mix releases (Debian 12 and 13): each host gets the ``.deb`` files of its own
release. This machine's apt knows only its own release, so for another one berth keeps an apt
configuration of its own under the cache (``<cache>/apt/<codename>/``): the machine's own
sources (same mirrors, same keyring) with the suites renamed to the wanted release, a private
list and package cache, and an empty dpkg status (what this machine has installed says nothing
about a host). ``apt-get update`` runs there the first time and when the lists are older than
:data:`MAX_AGE_SECONDS`; every later apt call gets :meth:`AptRoot.options`.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

from provisioner.errors import OperationError

MACHINE_OS_RELEASE = Path("/etc/os-release")
SOURCES_DIR = Path("/etc/apt/sources.list.d")
MAX_AGE_SECONDS = 24 * 3600.0
_lock = threading.Lock()


def machine_codename(os_release: Path = MACHINE_OS_RELEASE) -> str:
    """This machine's release codename (``bookworm``)."""
    for line in os_release.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME":
            return value.strip().strip('"')
    return ""


def renamed_sources(text: str, *, own: str, wanted: str) -> str:
    """deb822 ``.sources`` stanzas of the machine with each suite of release ``own``
    (``bookworm``, ``bookworm-updates``, ``bookworm-security``) renamed for ``wanted``;
    stanzas serving no suite of ``own`` are left out."""
    out: list[str] = []
    for stanza in text.split("\n\n"):
        lines = [line for line in stanza.splitlines() if line and not line.startswith("#")]
        fields = dict(line.split(":", 1) for line in lines if ":" in line)
        suites = fields.get("Suites", "").split()
        ours = [s for s in suites if s == own or s.startswith(own + "-")]
        if not ours or "deb" not in fields.get("Types", "").split():
            continue
        renamed = " ".join(wanted + s[len(own) :] for s in ours)
        kept = [
            line if not line.startswith("Suites:") else f"Suites: {renamed}"
            for line in lines
            if not line.startswith("Types:")
        ]
        out.append("\n".join(["Types: deb", *kept]))
    return "\n\n".join(out) + "\n" if out else ""


class AptRoot:
    """apt configured for release ``codename`` under ``root`` (see the module docstring)."""

    def __init__(self, root: Path, codename: str, *, own: str | None = None) -> None:
        self.root = root
        self.codename = codename
        self.own = own if own is not None else machine_codename()

    def options(self) -> tuple[str, ...]:
        r = self.root
        return (
            "-o", f"Dir::Etc::SourceList={r / 'sources.list'}",
            "-o", f"Dir::Etc::SourceParts={r / 'sources.list.d'}",
            "-o", f"Dir::State={r / 'state'}",
            "-o", f"Dir::State::status={r / 'status'}",
            "-o", f"Dir::Cache={r / 'cache'}",
            "-o", "Dir::Etc::Preferences=/dev/null",
            "-o", f"Dir::Etc::PreferencesParts={r / 'preferences.d'}",
        )  # fmt: skip

    def _write_config(self) -> None:
        machine = "\n\n".join(
            p.read_text() for p in sorted(SOURCES_DIR.glob("*.sources")) if p.is_file()
        )
        sources = renamed_sources(machine, own=self.own, wanted=self.codename)
        if not sources:
            raise OperationError(
                f"cannot fetch packages for Debian {self.codename}: this machine's apt sources"
                f" ({SOURCES_DIR}) name no {self.own} suite to derive its mirror from",
                hint="add a deb822 .sources file for the machine's own release",
            )
        for sub in ("sources.list.d", "state/lists/partial", "cache/archives/partial",
                    "preferences.d"):  # fmt: skip
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "sources.list").write_text("")
        tmp = self.root / "sources.list.d" / ".berth.sources.tmp"
        tmp.write_text(sources)
        tmp.replace(self.root / "sources.list.d" / "berth.sources")
        (self.root / "status").touch()

    def ensure_updated(self, *, max_age: float = MAX_AGE_SECONDS) -> None:
        """Lists for the release, fetched now when missing or older than ``max_age``."""
        stamp = self.root / "updated"
        with _lock:
            try:
                if time.time() - stamp.stat().st_mtime < max_age:
                    return
            except FileNotFoundError:
                pass
            self._write_config()
            done = subprocess.run(
                ["apt-get", *self.options(), "-q", "update"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                raise OperationError(
                    f"apt-get update for Debian {self.codename} failed on this machine"
                    f" (exit {done.returncode}): {done.stderr.strip()[-400:]}",
                    hint="check that the machine's Debian mirror is reachable",
                )
            stamp.touch()
            os.utime(stamp)


def apt_options(cache: Path, codename: str) -> tuple[str, ...]:
    """The options every apt call for ``codename``'s packages takes: none for this machine's
    own release, a private, updated :class:`AptRoot` for another."""
    if not codename or codename == machine_codename():
        return ()
    root = AptRoot(cache / "apt" / codename, codename)
    root.ensure_updated()
    return root.options()
