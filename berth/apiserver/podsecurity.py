"""Pod Security Admission: the Pod Security Standards applied per namespace, as kube-apiserver's
``PodSecurity`` admission plugin does.

A namespace's labels choose, per mode, a level (``privileged``, ``baseline``, ``restricted``)
and the version of its rules (``latest`` or ``v1.X``)::

    pod-security.kubernetes.io/enforce: baseline        # refuse violating pods (403)
    pod-security.kubernetes.io/enforce-version: v1.30
    pod-security.kubernetes.io/warn: restricted         # admit, with a Warning header
    pod-security.kubernetes.io/audit: restricted        # admit, with an audit log line

A mode without a label takes the cluster default (:class:`PodSecurityConfig`, the API server's
``podSecurity`` configuration; berth's default: ``baseline`` enforced, ``restricted`` warned and
audited, ``kube-system`` exempt). Exempt usernames, runtime classes and namespaces are never
checked.

What is checked, as upstream:

* pods on create, and on update when an image changes or an ephemeral container is added
  (the only pod changes that can alter what the checks see); the ``status``, ``binding``,
  ``eviction`` and other non-spec subresources never;
* workload resources' pod templates (Deployments, ReplicaSets, DaemonSets, ...) for ``warn``
  and ``audit`` only: their pods are enforced when created;
* namespaces: invalid labels are refused (422) on create, and on update when they change;
  a stricter ``enforce`` label warns about the existing pods that would violate it (at most
  3,000 pods, for at most one second).

An unparsable level fails closed for ``enforce`` (``restricted``) and open for ``warn`` and
``audit`` (``privileged``); an unparsable version means ``latest``. ``latest`` is the rules of
the Kubernetes version this server reports (1.32), as in a kube-apiserver of that version.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from berth import __version__
from berth.api.meta import Obj, get_path
from berth.api.resources import ResourceDef

from . import discovery
from .audit import AuditLog
from .auth import UserInfo
from .client_warnings import add_warning
from .errors import ApiError, FieldError, invalid
from .podsecurity_checks import RESTRICTED, VersionTuple, checks_for, go_quote

log = logging.getLogger(__name__)

PRIVILEGED = "privileged"
BASELINE = "baseline"
LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)
LATEST = "latest"

LABEL_PREFIX = "pod-security.kubernetes.io/"
MODES = ("enforce", "audit", "warn")

NAMESPACE_MAX_PODS_TO_CHECK = 3000
NAMESPACE_POD_CHECK_SECONDS = 1.0

IGNORED_POD_SUBRESOURCES = frozenset(
    {"exec", "attach", "binding", "eviction", "log", "portforward", "proxy", "status"}
)

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
        self._verdicts: OrderedDict[tuple[str, VersionTuple, bytes], Verdict] = OrderedDict()

    @staticmethod
    def fingerprint(metadata: Any, spec: Any) -> bytes | None:
        """What a verdict depends on: the spec and the annotations checks read (``None`` when
        it is not JSON, which no request body can produce)."""
        meta = metadata if isinstance(metadata, dict) else {}
        try:
            return orjson.dumps([spec, _checked_annotations(meta)], option=orjson.OPT_SORT_KEYS)
        except TypeError:
            return None

    def evaluate(
        self, lv: LevelVersion, metadata: Any, spec: Any, *, fingerprint: bytes | None = None
    ) -> Verdict:
        """The verdict of ``lv`` on a pod; ``fingerprint`` (from :meth:`fingerprint`) saves
        recomputing it when one pod is judged at several levels."""
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


def _checked_annotations(metadata: Obj) -> dict[str, Any]:
    """The annotations a check reads (seccomp and AppArmor ones); the rest of the metadata
    (names, labels, owners) never changes a verdict."""
    annotations = metadata.get("annotations")
    if not isinstance(annotations, dict):
        return {}
    return {k: v for k, v in annotations.items() if "seccomp" in str(k) or "apparmor" in str(k)}


# -- admission ----------------------------------------------------------------------------------

TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "PodTemplate": ("template",),
    "ReplicationController": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Deployment": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
"""Where each workload resource keeps the pods it will create."""

NamespaceReader = Callable[[str], Awaitable[Obj | None]]


class NamespaceLabels:
    """The labels of every namespace this server has seen, kept current from the watch hub and
    from this server's own namespace writes (so that a pod created right after its namespace
    was labelled through this server is judged by the new labels). A namespace not yet seen is
    read from the store. Pod creates are hot: a datastore read each (a thread hop with SQLite)
    would double their cost."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[int, dict[str, Any]]] = {}

    def remember(self, obj: Obj, *, deleted: bool = False) -> None:
        """Record a namespace as written (``deleted``: gone); older news never wins."""
        name = str(get_path(obj, "metadata", "name") or "")
        try:
            revision = int(str(get_path(obj, "metadata", "resourceVersion") or 0))
        except ValueError:
            revision = 0
        known = self._known.get(name)
        if known is not None and known[0] > revision:
            return
        if deleted:
            self._known.pop(name, None)
            return
        labels = get_path(obj, "metadata", "labels")
        self._known[name] = (revision, dict(labels) if isinstance(labels, dict) else {})

    def get(self, name: str) -> dict[str, Any] | None:
        known = self._known.get(name)
        return known[1] if known is not None else None


PodLister = Callable[[str], Awaitable[list[Obj]]]


@dataclass
class Review:
    """One request's facts, for messages and the audit line."""

    user: UserInfo
    operation: str  # create | update
    rd: ResourceDef
    namespace: str
    name: str
    annotations: dict[str, str] = field(default_factory=dict)


class PodSecurityAdmission:
    """The admission step; ``await review(...)`` raises :class:`ApiError` to refuse."""

    def __init__(
        self,
        config: PodSecurityConfig,
        *,
        read_namespace: NamespaceReader,
        list_pods: PodLister,
        evaluator: Evaluator | None = None,
        audit_log: AuditLog | None = None,
    ) -> None:
        self.config = config
        self.audit_log = audit_log or AuditLog()
        self.evaluator = evaluator or Evaluator()
        self._read_namespace = read_namespace
        self._list_pods = list_pods
        self.namespaces = NamespaceLabels()

    async def review(
        self,
        user: UserInfo,
        operation: str,
        rd: ResourceDef,
        *,
        subresource: str,
        namespace: str,
        name: str,
        new: Obj,
        old: Obj | None = None,
    ) -> None:
        if rd.group == "" and rd.kind == "Namespace":
            await self._namespace(
                operation, rd, subresource=subresource, name=name, new=new, old=old
            )
            return
        is_pod = rd.group == "" and rd.kind == "Pod"
        if not is_pod and rd.kind not in TEMPLATE_PATHS:
            return
        if is_pod and subresource in IGNORED_POD_SUBRESOURCES:
            return
        if not is_pod and subresource:
            return
        if namespace in self.config.exempt_namespaces or user.name in self.config.exempt_usernames:
            return
        labels = self.namespaces.get(namespace)
        if labels is None:
            ns = await self._read_namespace(namespace)
            if ns is None:
                raise ApiError(500, "InternalError", f'failed to lookup namespace "{namespace}"')
            self.namespaces.remember(ns)
            labels = dict(_labels(ns))
        policy, errors = policy_from_labels(labels, self.config.defaults)
        review = Review(user, operation, rd, namespace, name)
        if is_pod:
            if not errors and policy.fully_privileged:
                return
            if operation == "update" and old is not None and not _significant_pod_update(new, old):
                return
            self._evaluate(
                review, policy, errors, new.get("metadata"), new.get("spec"), enforce=True
            )
            return
        if not errors and policy.warn.level == PRIVILEGED and policy.audit.level == PRIVILEGED:
            return
        template = get_path(new, *TEMPLATE_PATHS[rd.kind])
        if not isinstance(template, dict):
            return
        self._evaluate(
            review, policy, errors, template.get("metadata"), template.get("spec"), enforce=False
        )

    def _evaluate(
        self,
        review: Review,
        policy: Policy,
        errors: list[LabelError],
        metadata: Any,
        spec: Any,
        *,
        enforce: bool,
    ) -> None:
        runtime_class = spec.get("runtimeClassName") if isinstance(spec, dict) else None
        if runtime_class and runtime_class in self.config.exempt_runtime_classes:
            return
        if errors:
            review.annotations["error"] = "Failed to parse policy: " + _aggregate(errors)
        verdicts: dict[LevelVersion, Verdict] = {}
        fingerprint = self.evaluator.fingerprint(metadata, spec)

        def verdict(lv: LevelVersion) -> Verdict:
            found = verdicts.get(lv)
            if found is None:
                found = verdicts[lv] = self.evaluator.evaluate(
                    lv, metadata, spec, fingerprint=fingerprint
                )
            return found

        refusal: ApiError | None = None
        if enforce:
            review.annotations["enforce-policy"] = str(policy.enforce)
            enforced = verdict(policy.enforce)
            if not enforced.allowed:
                named = (
                    f'{review.rd.group_resource} "{review.name}"'
                    if review.name
                    else (review.rd.group_resource)
                )
                refusal = ApiError(
                    403,
                    "Forbidden",
                    f'{named} is forbidden: violates PodSecurity "{policy.enforce}":'
                    f" {enforced.detail()}",
                    details={"name": review.name, "kind": review.rd.plural},
                )
        audited = verdict(policy.audit)
        if not audited.allowed:
            review.annotations["audit-violations"] = (
                f'would violate PodSecurity "{policy.audit}": {audited.detail()}'
            )
        if refusal is None:  # no warnings on a request refused anyway
            warned = verdict(policy.warn)
            if not warned.allowed:
                add_warning(f'would violate PodSecurity "{policy.warn}": {warned.detail()}')
        self._audit(review)
        if refusal is not None:
            raise refusal

    # -- namespaces -----------------------------------------------------------------------------

    async def _namespace(
        self,
        operation: str,
        rd: ResourceDef,
        *,
        subresource: str,
        name: str,
        new: Obj,
        old: Obj | None,
    ) -> None:
        if subresource:
            return
        defaults = self.config.defaults
        new_policy, new_errors = policy_from_labels(_labels(new), defaults)
        if operation == "create" or old is None:
            if new_errors:
                raise invalid(rd, name, [e.field_error() for e in new_errors])
            if name in self.config.exempt_namespaces:
                self._warn_exempt(name, new_policy, _labels(new))
            return
        old_policy, old_errors = policy_from_labels(_labels(old), defaults)
        if new_errors and (not old_errors or new_errors != old_errors):
            raise invalid(rd, name, [e.field_error() for e in new_errors])
        new_enforce, old_enforce = new_policy.enforce, old_policy.enforce
        if new_enforce == old_enforce or new_enforce.level == PRIVILEGED:
            return
        if new_enforce.version == old_enforce.version and LEVELS.index(
            new_enforce.level
        ) <= LEVELS.index(old_enforce.level):
            return  # relaxed, same version: every existing pod still passes
        if name in self.config.exempt_namespaces:
            self._warn_exempt(name, new_policy, _labels(new))
            return
        for warning in await self._existing_pods(name, new_enforce):
            add_warning(warning)

    def _warn_exempt(self, name: str, policy: Policy, labels: Mapping[str, Any]) -> None:
        if policy.fully_privileged or policy == self.config.defaults:
            return
        parts = []
        for mode in MODES:
            lv: LevelVersion = getattr(policy, mode)
            labelled = LABEL_PREFIX + mode in labels or f"{LABEL_PREFIX}{mode}-version" in labels
            if lv.level != PRIVILEGED and labelled:
                parts.append(f"{mode}={lv}")
        add_warning(
            f'namespace "{name}" is exempt from Pod Security, and the policy'
            f" ({', '.join(parts)}) will be ignored"
        )

    async def _existing_pods(self, namespace: str, enforce: LevelVersion) -> list[str]:
        deadline = time.monotonic() + NAMESPACE_POD_CHECK_SECONDS
        try:
            pods = await self._list_pods(namespace)
        except Exception:
            log.exception("listing the pods of namespace %s", namespace)
            return ["failed to list pods while checking new PodSecurity enforce level"]
        ordered = self._prioritized(pods)
        total = len(ordered)
        ordered = ordered[:NAMESPACE_MAX_PODS_TO_CHECK]
        checked = len(ordered)
        first_pod: dict[str, str] = {}
        counts: dict[str, int] = {}
        for i, pod in enumerate(ordered):
            verdict = self.evaluator.evaluate(enforce, pod.get("metadata"), pod.get("spec"))
            if not verdict.allowed:
                reason = verdict.reason()
                pod_name = str(get_path(pod, "metadata", "name") or "")
                if reason not in first_pod or pod_name < first_pod[reason]:
                    first_pod[reason] = pod_name
                counts[reason] = counts.get(reason, 0) + 1
            if time.monotonic() > deadline:
                checked = i + 1
                break
        warnings = []
        if checked < total:
            warnings.append(
                "new PodSecurity enforce level only checked against the first"
                f" {checked} of {total} existing pods"
            )
        if counts:
            warnings.append(
                f'existing pods in namespace "{namespace}" violate the new PodSecurity enforce'
                f' level "{enforce}"'
            )
        per_reason = []
        for reason, count in counts.items():
            pod_name = first_pod[reason]
            if count == 1:
                per_reason.append(f"{pod_name}: {reason}")
            elif count == 2:
                per_reason.append(f"{pod_name} (and 1 other pod): {reason}")
            else:
                per_reason.append(f"{pod_name} (and {count - 1} other pods): {reason}")
        return warnings + sorted(per_reason)

    def _prioritized(self, pods: list[Obj]) -> list[Obj]:
        """One pod per controller first (its siblings share its template), then the rest."""
        first: list[Obj] = []
        siblings: list[Obj] = []
        seen: set[str] = set()
        for pod in pods:
            runtime_class = get_path(pod, "spec", "runtimeClassName")
            if runtime_class and runtime_class in self.config.exempt_runtime_classes:
                continue
            owner = _controller_uid(pod)
            if owner is None:
                first.append(pod)
            elif owner in seen:
                siblings.append(pod)
            else:
                seen.add(owner)
                first.append(pod)
        return first + siblings

    def _audit(self, review: Review) -> None:
        """The request's audit annotations, as a line of the audit log (only when there is a
        violation or a label error to record)."""
        if "audit-violations" not in review.annotations and "error" not in review.annotations:
            return
        self.audit_log.write(
            {
                "verb": review.operation,
                "user": review.user.name,
                "resource": review.rd.group_resource,
                "namespace": review.namespace,
                "name": review.name,
                "annotations": {LABEL_PREFIX + k: v for k, v in review.annotations.items()},
            }
        )


def _labels(obj: Obj) -> Mapping[str, Any]:
    labels = get_path(obj, "metadata", "labels")
    return labels if isinstance(labels, dict) else {}


def _aggregate(errors: list[LabelError]) -> str:
    texts = [str(e) for e in errors]
    return texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"


def _controller_uid(pod: Obj) -> str | None:
    for ref in get_path(pod, "metadata", "ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller") is True:
            return str(ref.get("uid", ""))
    return None


def _images(containers: Any) -> list[Any]:
    return [c.get("image") if isinstance(c, dict) else None for c in containers or []]


def _significant_pod_update(new: Obj, old: Obj) -> bool:
    """Whether an update can change what the checks see: the rest of a pod's spec is
    immutable, so only images and added ephemeral containers count (as upstream); a label or
    annotation change on a pod admitted under an older policy is not re-judged."""
    for key in ("containers", "initContainers"):
        if _images(get_path(new, "spec", key)) != _images(get_path(old, "spec", key)):
            return True
    old_ephemeral = {
        c.get("name"): c.get("image")
        for c in get_path(old, "spec", "ephemeralContainers") or []
        if isinstance(c, dict)
    }
    for c in get_path(new, "spec", "ephemeralContainers") or []:
        if not isinstance(c, dict):
            continue
        if c.get("name") not in old_ephemeral or old_ephemeral[c.get("name")] != c.get("image"):
            return True
    return False
