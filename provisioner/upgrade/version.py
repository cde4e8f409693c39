"""Releases and the version-skew policy of an upgrade.

A host runs one berth *bundle*, named ``<version>-<hash12>`` (see
:mod:`provisioner.artifacts.berth_bundle`); the version part is a release (``0.2.0``,
``0.3.0-rc.1``). The policy, checked against what the hosts *actually run* before anything
changes:

* no downgrade (a lower release than any host runs) unless ``allow_downgrade``;
* no skipped minor release (``0.1.x -> 0.3.0`` is refused: go through ``0.2.x``), and a new
  major only from the previous major to ``X.0.x``;
* agents are never newer than the API server: a cluster whose workers already run a newer
  release than a control-plane host is refused (it was left inconsistent outside a journal).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NewType

from provisioner.errors import ExitCode, ProvisionerError

BundleId = NewType("BundleId", str)
"""``<version>-<hash12>``, the name of a directory under ``/opt/berth/versions``."""

_RELEASE = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
_HASH = re.compile(r"^[0-9a-f]{12}$")


class VersionSkewError(ProvisionerError):
    """The requested upgrade breaks the version-skew policy; nothing was changed."""

    exit_code = ExitCode.PREFLIGHT

    def __init__(self, problems: list[str], *, hint: str | None = None) -> None:
        super().__init__(
            f"upgrade refused before any change: {len(problems)} problem(s)", hint=hint
        )
        self.problems = problems

    def lines(self) -> list[str]:
        return [*self.problems, *super().lines()]


@dataclass(frozen=True, order=True)
class Release:
    """A berth release; ordered like semver (a pre-release sorts before its release)."""

    major: int
    minor: int
    patch: int
    pre: tuple[int, str] = (1, "")  # (0, "rc.1") for pre-releases, so they sort first

    @classmethod
    def parse(cls, text: str) -> Release:
        match = _RELEASE.match(text.strip().removeprefix("v"))
        if match is None:
            raise ValueError(f"{text!r} is not a release version (MAJOR.MINOR.PATCH)")
        major, minor, patch, pre = match.groups()
        return cls(int(major), int(minor), int(patch), (0, pre) if pre else (1, ""))

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}.{self.patch}"
        return f"{base}-{self.pre[1]}" if self.pre[0] == 0 else base


def split_bundle_id(bundle: str) -> tuple[Release, str]:
    """``0.2.0-0123456789ab`` -> (Release 0.2.0, ``0123456789ab``)."""
    version, sep, digest = bundle.rpartition("-")
    if not sep or not _HASH.match(digest):
        raise ValueError(f"{bundle!r} is not a berth bundle id (<version>-<hash12>)")
    return Release.parse(version), digest


def release_of(bundle: str) -> Release:
    return split_bundle_id(bundle)[0]


def _step_problem(host: str, current: Release, target: Release) -> str | None:
    """Why going from ``current`` straight to ``target`` skips a release (None when it does not)."""
    if target.major == current.major:
        if target.minor > current.minor + 1:
            skipped = ", ".join(
                f"{target.major}.{m}" for m in range(current.minor + 1, target.minor)
            )
            return (
                f"{host}: {current} -> {target} skips minor release(s) {skipped}; "
                "upgrade one minor release at a time "
                f"(to {current.major}.{current.minor + 1}.x first)"
            )
        return None
    if target.major == current.major + 1 and target.minor == 0:
        return None
    return (
        f"{host}: {current} -> {target} changes the major version by more than one step; "
        f"upgrade to {current.major + 1}.0.x first"
    )


def check_skew(
    running: Mapping[str, str | None],
    *,
    control_plane: frozenset[str] | set[str],
    target: str,
    allow_downgrade: bool = False,
) -> list[str]:
    """Every policy problem of upgrading hosts running ``running`` (host -> bundle id, ``None``
    when berth is not installed there) to bundle ``target``. Empty means the upgrade may start.

    Hosts already on ``target`` are fine; a run interrupted half-way is therefore accepted
    again (its upgraded hosts run the target, the others the previous release).
    """
    problems: list[str] = []
    want = release_of(target)
    releases: dict[str, Release] = {}
    for host, bundle in sorted(running.items()):
        if bundle is None:
            problems.append(
                f"{host}: berth is not installed (no /opt/berth/current); run `berth apply` first"
            )
            continue
        try:
            releases[host] = release_of(bundle)
        except ValueError as error:
            problems.append(f"{host}: cannot tell which release runs there: {error}")
    for host, have in sorted(releases.items()):
        if running[host] == target:
            continue
        if want < have and not allow_downgrade:
            problems.append(
                f"{host}: runs {have}; {want} would be a downgrade "
                "(pass --allow-downgrade if you mean it, or use `berth rollback`)"
            )
        elif want > have:
            step = _step_problem(host, have, want)
            if step:
                problems.append(step)
    cp = {h: r for h, r in releases.items() if h in control_plane}
    agents = {h: r for h, r in releases.items() if h not in control_plane}
    if cp and agents:
        oldest_cp = min(cp.values())
        for host, have in sorted(agents.items()):
            if have > oldest_cp:
                problems.append(
                    f"{host}: its agent runs {have}, newer than the API server's {oldest_cp}; "
                    "agents must never be newer than the control plane"
                )
    return problems
