"""Pod Security Standards: levels, versions, the namespace labels that choose them, the
cluster-wide configuration, and the evaluator running :mod:`podsecurity_checks` on a pod.

Label semantics follow upstream (``k8s.io/pod-security-admission/api``): an unparsable level
fails closed for ``enforce`` (``restricted``) and open for ``warn``/``audit``
(``privileged``); an unparsable version means ``latest``; a namespace that sets ``enforce``
but not ``warn`` warns at least at its enforce level.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from berth import __version__
from berth.api.meta import Obj

from . import discovery
from .errors import FieldError
from .gostrings import go_quote
from .podsecurity_checks import (
    ALLOWED_VOLUME_SOURCES,
    RESTRICTED,
    VersionTuple,
    checks_for,
)

PRIVILEGED = "privileged"
BASELINE = "baseline"
LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)
LATEST = "latest"

LABEL_PREFIX = "pod-security.kubernetes.io/"
MODES = ("enforce", "audit", "warn")

SERVER_VERSION: VersionTuple = (
    int(discovery.version_info(__version__)["major"]),
    int(discovery.version_info(__version__)["minor"]),
)
"""What ``latest`` means: the Kubernetes version the server reports."""

_VERSION = re.compile(r"^v1\.(0|[1-9][0-9]*)$")
_LEVEL_ERROR = f"must be one of {', '.join(LEVELS)}"
_VERSION_ERROR = 'must be "latest" or "v1.x"'


@dataclass(frozen=True, slots=True)
class LevelVersion:
    level: str
    version: VersionTuple | None = None  # None: latest

    def __str__(self) -> str:
        if self.version is None:
            return f"{self.level}:{LATEST}"
        return f"{self.level}:v{self.version[0]}.{self.version[1]}"


@dataclass(frozen=True, slots=True)
class Policy:
    enforce: LevelVersion
    audit: LevelVersion
    warn: LevelVersion

    @property
    def fully_privileged(self) -> bool:
        return (
            self.enforce.level == PRIVILEGED
            and self.audit.level == PRIVILEGED
            and self.warn.level == PRIVILEGED
        )


def parse_level(text: str) -> str | None:
    return text if text in LEVELS else None


def parse_version(text: str) -> tuple[bool, VersionTuple | None]:
    """``(valid, version)``; ``None`` is latest."""
    if text == LATEST:
        return True, None
    match = _VERSION.match(text)
    if match is None:
        return False, None
    return True, (1, int(match.group(1)))


@dataclass(frozen=True, slots=True)
class LabelError:
    label: str
    value: str
    message: str

    def field_error(self) -> FieldError:
        return FieldError(
            "FieldValueInvalid",
            f"metadata.labels[{self.label}]",
            f"Invalid value: {go_quote(self.value)}: {self.message}",
        )

    def __str__(self) -> str:
        return f"metadata.labels[{self.label}]: {self.field_error().message}"


def policy_from_labels(
    labels: Mapping[str, Any], defaults: Policy
) -> tuple[Policy, list[LabelError]]:
    """The policy a namespace's labels select, and the label values that do not parse."""
    if not labels:
        return defaults, []
    errors: list[LabelError] = []
    chosen = {"enforce": defaults.enforce, "audit": defaults.audit, "warn": defaults.warn}
    has_level: dict[str, bool] = {}
    has_version: dict[str, bool] = {}
    for mode in MODES:
        lv = chosen[mode]
        level_label = LABEL_PREFIX + mode
        version_label = f"{level_label}-version"
        level, version = lv.level, lv.version
        if level_label in labels:
            text = str(labels[level_label])
            parsed = parse_level(text)
            if parsed is None:
                errors.append(LabelError(level_label, text, _LEVEL_ERROR))
                # Fail closed for enforce, open for the modes that only report.
                level = RESTRICTED if mode == "enforce" else PRIVILEGED
            else:
                level = parsed
            has_level[mode] = parsed is not None
        if version_label in labels:
            text = str(labels[version_label])
            ok, version = parse_version(text)
            if not ok:
                errors.append(LabelError(version_label, text, _VERSION_ERROR))
            has_version[mode] = True
        chosen[mode] = LevelVersion(level, version)
    # A namespace that enforces a level warns at least at that level, unless it says otherwise.
    enforce, warn = chosen["enforce"], chosen["warn"]
    if (
        "warn" not in has_level
        and has_level.get("enforce")
        and LEVELS.index(enforce.level) > LEVELS.index(warn.level)
    ):
        chosen["warn"] = LevelVersion(
            enforce.level, warn.version if has_version.get("warn") else enforce.version
        )
    return Policy(chosen["enforce"], chosen["audit"], chosen["warn"]), errors


_POLICY_LABELS = tuple(
    label for mode in MODES for label in (LABEL_PREFIX + mode, f"{LABEL_PREFIX}{mode}-version")
)
_policies: dict[tuple[Any, ...], tuple[Policy, tuple[LabelError, ...]]] = {}
_POLICY_CACHE_SIZE = 1024


def cached_policy_from_labels(
    labels: Mapping[str, Any], defaults: Policy
) -> tuple[Policy, list[LabelError]]:
    """:func:`policy_from_labels`, remembered by the six labels it reads (every pod create
    asks for its namespace's policy; namespaces are few and their labels rarely change)."""
    if not labels:
        return defaults, []
    try:
        key = (defaults, *(labels.get(label) for label in _POLICY_LABELS))
        found = _policies.get(key)
    except TypeError:  # an unhashable label value: not worth remembering
        return policy_from_labels(labels, defaults)
    if found is None:
        policy, errors = policy_from_labels(labels, defaults)
        if len(_policies) >= _POLICY_CACHE_SIZE:
            _policies.clear()
        found = _policies[key] = (policy, tuple(errors))
    return found[0], list(found[1])


# -- configuration ------------------------------------------------------------------------------

SECURE_DEFAULTS = Policy(
    enforce=LevelVersion(BASELINE), audit=LevelVersion(RESTRICTED), warn=LevelVersion(RESTRICTED)
)


@dataclass(frozen=True, slots=True)
class PodSecurityConfig:
    """The cluster-wide defaults and exemptions (``podSecurity`` in the API server's
    configuration, from the cluster spec)."""

    defaults: Policy = SECURE_DEFAULTS
    exempt_usernames: tuple[str, ...] = ()
    exempt_runtime_classes: tuple[str, ...] = ()
    exempt_namespaces: tuple[str, ...] = ("kube-system",)

    @classmethod
    def from_mapping(cls, data: Any) -> PodSecurityConfig:
        """Parse ``{enforce, enforceVersion, audit, auditVersion, warn, warnVersion,
        exemptions: {usernames, runtimeClasses, namespaces}}``; a key left out keeps berth's
        default. Raises ValueError naming the bad key."""
        if not isinstance(data, dict):
            raise ValueError("podSecurity must be a mapping")
        known = {f"{m}{s}" for m in MODES for s in ("", "Version")} | {"exemptions"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"podSecurity.{unknown[0]} is not a setting (known: {', '.join(sorted(known))})"
            )
        modes: dict[str, LevelVersion] = {}
        for mode in MODES:
            default: LevelVersion = getattr(SECURE_DEFAULTS, mode)
            level = str(data.get(mode, default.level))
            if parse_level(level) is None:
                raise ValueError(f"podSecurity.{mode} {level!r} {_LEVEL_ERROR}")
            ok, version = parse_version(str(data.get(f"{mode}Version", LATEST)))
            if not ok:
                raise ValueError(f"podSecurity.{mode}Version {_VERSION_ERROR}")
            modes[mode] = LevelVersion(level, version)
        exemptions = data.get("exemptions", {})
        if not isinstance(exemptions, dict):
            raise ValueError("podSecurity.exemptions must be a mapping")
        lists: dict[str, tuple[str, ...]] = {}
        for key in ("usernames", "runtimeClasses", "namespaces"):
            value = exemptions.get(key, ["kube-system"] if key == "namespaces" else [])
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise ValueError(f"podSecurity.exemptions.{key} must be a list of names")
            lists[key] = tuple(value)
        return cls(
            defaults=Policy(**modes),
            exempt_usernames=lists["usernames"],
            exempt_runtime_classes=lists["runtimeClasses"],
            exempt_namespaces=lists["namespaces"],
        )

    def to_mapping(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for mode in MODES:
            lv: LevelVersion = getattr(self.defaults, mode)
            doc[mode] = lv.level
            doc[f"{mode}Version"] = str(lv).split(":", 1)[1]
        doc["exemptions"] = {
            "usernames": list(self.exempt_usernames),
            "runtimeClasses": list(self.exempt_runtime_classes),
            "namespaces": list(self.exempt_namespaces),
        }
        return doc


SECURE_POD_SECURITY = PodSecurityConfig()
"""berth's default: baseline enforced, restricted warned and audited, kube-system exempt."""

PRIVILEGED_EVERYWHERE = PodSecurityConfig(
    defaults=Policy(LevelVersion(PRIVILEGED), LevelVersion(PRIVILEGED), LevelVersion(PRIVILEGED)),
    exempt_namespaces=(),
)
"""Upstream kube-apiserver's built-in default: nothing checked unless a namespace asks."""


# -- evaluation ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """The reasons a pod violates a level (none: allowed)."""

    reasons: tuple[tuple[str, str], ...] = ()
    text: str = field(default="", compare=False)  # detail(), built once (verdicts are cached)

    @classmethod
    def of(cls, reasons: list[tuple[str, str]]) -> Verdict:
        return cls(tuple(reasons), ", ".join(f"{r} ({d})" if d else r for r, d in reasons))

    @property
    def allowed(self) -> bool:
        return not self.reasons

    def detail(self) -> str:
        """``reason (detail), reason (detail)``: the body of upstream's messages."""
        return self.text

    def reason(self) -> str:
        return ", ".join(r for r, _ in self.reasons)


class Evaluator:
    """Runs the checks of a level at a version; ``latest`` (and any newer version) is
    ``newest``.

    Pods of one template share their spec, so verdicts are remembered (a small LRU keyed by
    the spec and the annotations checks read): a ReplicaSet's next replica costs one
    serialization instead of some thirty checks."""

    CACHE_SIZE = 512

    def __init__(self, newest: VersionTuple = SERVER_VERSION) -> None:
        self.newest = newest
        self._checks: dict[tuple[str, VersionTuple], tuple[Any, ...]] = {}
        self._verdicts: OrderedDict[tuple[str, VersionTuple, Hashable], Verdict] = OrderedDict()

    @staticmethod
    def fingerprint(metadata: Any, spec: Any) -> bytes | None:
        """What a verdict depends on: the spec and the annotations checks read (``None`` when
        it is not JSON, which no request body can produce). Parts no check reads are left out
        (see :func:`_judged_spec`), so that pods that differ only there share a verdict.

        Keys are not sorted: equal bytes still mean equal JSON (the key only has to be
        injective), pods of one template serialise their keys in one order, and sorting
        was a third of the cost."""
        meta = metadata if isinstance(metadata, dict) else {}
        try:
            return orjson.dumps([_judged_spec(spec), _checked_annotations(meta)])
        except TypeError:
            return None

    def evaluate(
        self, lv: LevelVersion, metadata: Any, spec: Any, *, fingerprint: Hashable | None = None
    ) -> Verdict:
        """The verdict of ``lv`` on a pod; ``fingerprint`` (from :meth:`fingerprint`) saves
        recomputing it when one pod is judged at several levels. A created pod's is its
        template key and :func:`annotations_key` instead (no copy of the spec to make), which
        stand for the same inputs; both kinds share the cache (bytes never equal a tuple)."""
        if lv.level == PRIVILEGED:
            return Verdict()
        version = lv.version if lv.version is not None and lv.version < self.newest else self.newest
        meta = metadata if isinstance(metadata, dict) else {}
        pod_spec = spec if isinstance(spec, dict) else {}
        if fingerprint is None:
            fingerprint = self.fingerprint(meta, pod_spec)
            if fingerprint is None:
                return self._run(lv.level, version, meta, pod_spec)
        key = (lv.level, version, fingerprint)
        cached = self._verdicts.get(key)
        if cached is not None:
            self._verdicts.move_to_end(key)
            return cached
        verdict = self._verdicts[key] = self._run(lv.level, version, meta, pod_spec)
        if len(self._verdicts) > self.CACHE_SIZE:
            self._verdicts.popitem(last=False)
        return verdict

    def _run(self, level: str, version: VersionTuple, meta: Obj, spec: Obj) -> Verdict:
        checks = self._checks.get((level, version))
        if checks is None:
            checks = self._checks[(level, version)] = checks_for(level, version)
        reasons = []
        for check in checks:
            found = check(meta, spec)
            if found is not None:
                reasons.append(found)
        return Verdict.of(reasons)


def annotations_key(metadata: Any) -> bytes | None:
    """The annotations a check reads, as JSON (``None`` if they are not JSON)."""
    if not isinstance(metadata, dict) or not metadata.get("annotations"):
        return b"{}"
    try:
        return orjson.dumps(_checked_annotations(metadata))
    except TypeError:
        return None


def _checked_annotations(metadata: Obj) -> dict[str, Any]:
    """The annotations a check reads (seccomp and AppArmor ones); the rest of the metadata
    (names, labels, owners) never changes a verdict."""
    annotations = metadata.get("annotations")
    if not isinstance(annotations, dict):
        return {}
    return {k: v for k, v in annotations.items() if "seccomp" in str(k) or "apparmor" in str(k)}


_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
_ALLOWED_OR_NAME = frozenset((*ALLOWED_VOLUME_SOURCES, "name"))


def _judged_spec(spec: Any) -> Any:
    """``spec`` without what no check reads: the volumeMounts of every container, and the name
    of each volume whose source every level allows (a message names only volumes it refuses).
    Every pod gets a ``kube-api-access-<random>`` token volume, mounted in each container:
    without this, no two pods of one template would ever share a verdict."""
    if not isinstance(spec, dict):
        return spec
    judged = dict(spec)
    volumes = spec.get("volumes")
    if isinstance(volumes, list):
        judged["volumes"] = [_judged_volume(v) for v in volumes]
    for kind in _CONTAINER_LISTS:
        containers = spec.get(kind)
        if isinstance(containers, list):
            judged[kind] = [
                {k: v for k, v in c.items() if k != "volumeMounts"} if isinstance(c, dict) else c
                for c in containers
            ]
    return judged


def _judged_volume(volume: Any) -> Any:
    if isinstance(volume, dict) and _ALLOWED_OR_NAME.issuperset(volume):
        return {k: v for k, v in volume.items() if k != "name"}
    return volume
