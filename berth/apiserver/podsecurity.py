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
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from berth.api.meta import Obj, get_path
from berth.api.resources import ResourceDef

from .audit import AuditLog
from .auth import UserInfo
from .client_warnings import add_warning
from .errors import ApiError, invalid
from .podsecurity_policy import (
    LABEL_PREFIX,
    LEVELS,
    MODES,
    PRIVILEGED,
    PRIVILEGED_EVERYWHERE,
    SECURE_DEFAULTS,
    SECURE_POD_SECURITY,
    Evaluator,
    LabelError,
    LevelVersion,
    PodSecurityConfig,
    Policy,
    Verdict,
    annotations_key,
    cached_policy_from_labels,
    policy_from_labels,
)
from .podtemplate import PodTemplate, Remembered

__all__ = [
    "PRIVILEGED_EVERYWHERE",
    "SECURE_DEFAULTS",
    "SECURE_POD_SECURITY",
    "Evaluator",
    "LevelVersion",
    "PodSecurityAdmission",
    "PodSecurityConfig",
    "Verdict",
    "policy_from_labels",
]

log = logging.getLogger(__name__)

NAMESPACE_MAX_PODS_TO_CHECK = 3000
NAMESPACE_POD_CHECK_SECONDS = 1.0

IGNORED_POD_SUBRESOURCES = frozenset(
    {"exec", "attach", "binding", "eviction", "log", "portforward", "proxy", "status"}
)

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


@dataclass(frozen=True, slots=True)
class Judgement:
    """What a policy makes of one pod, apart from the request: the audit annotations it
    adds, the warning, and the reason to refuse (``None``: admitted)."""

    exempt: bool = False
    annotations: tuple[tuple[str, str], ...] = ()
    warning: str | None = None
    refusal: str | None = None
    audited: orjson.Fragment | None = field(default=None, compare=False)
    """The annotations as the audit line writes them (``pod-security.kubernetes.io/...``),
    encoded once with the judgement (JSON, spliced into each line as it is); ``None``:
    nothing to audit (no violation, no label error)."""

    @staticmethod
    def of(annotations: dict[str, str], warning: str | None, refusal: str | None) -> Judgement:
        audited = (
            orjson.Fragment(orjson.dumps({LABEL_PREFIX + k: v for k, v in annotations.items()}))
            if "audit-violations" in annotations or "error" in annotations
            else None
        )
        return Judgement(
            annotations=tuple(annotations.items()),
            warning=warning,
            refusal=refusal,
            audited=audited,
        )


@dataclass(slots=True)
class Review:
    """One request's facts, for messages and the audit line."""

    user: UserInfo
    operation: str  # create | update
    rd: ResourceDef
    namespace: str
    name: str


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
        # namespace -> (its labels as NamespaceLabels holds them, their policy and errors)
        self._policies: Remembered[str, tuple[dict[str, Any], Policy, tuple[LabelError, ...], str]]
        self._policies = Remembered()
        # (policy, label errors, enforce, a created pod's template key and annotations) ->
        # the judgement: pods of one template in one policy are judged once
        self._judged: Remembered[Hashable, Judgement] = Remembered()

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
        template: Hashable | None = None,
    ) -> None:
        """``template``: a created pod's template key (:mod:`podtemplate`), by which (with
        the annotations the checks read, and each level) its verdicts are remembered."""
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
        policy, errors, policy_key = self._policy(namespace, labels)
        review = Review(user, operation, rd, namespace, name)
        if is_pod:
            if not errors and policy.fully_privileged:
                return
            if operation == "update" and old is not None and not _significant_pod_update(new, old):
                return
            metadata = new.get("metadata")
            fingerprint = None
            if isinstance(template, PodTemplate):
                annotations = annotations_key(metadata)
                if annotations is not None:
                    fingerprint = (template, annotations)
            self._evaluate(
                review,
                policy,
                errors,
                metadata,
                new.get("spec"),
                enforce=True,
                fingerprint=fingerprint,
                policy_key=policy_key,
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

    def _policy(
        self, namespace: str, labels: dict[str, Any]
    ) -> tuple[Policy, Sequence[LabelError], str]:
        """The namespace's policy from its labels, kept while :class:`NamespaceLabels` holds
        the same labels object (a namespace write replaces it; a label read from the store
        is a fresh copy each time, so never matches); and the text of the policy and its
        label errors, which stands for both in the judgements remembered (a str keeps its
        hash, a dataclass computes it in Python on every lookup)."""
        kept = self._policies.get(namespace)
        if kept is not None and kept[0] is labels:
            return kept[1], kept[2], kept[3]
        policy, errors = cached_policy_from_labels(labels, self.config.defaults)
        key = (
            f"{policy.enforce} {policy.audit} {policy.warn} {_aggregate(errors) if errors else ''}"
        )
        self._policies.put(namespace, (labels, policy, tuple(errors), key))
        return policy, errors, key

    def _evaluate(
        self,
        review: Review,
        policy: Policy,
        errors: Sequence[LabelError],
        metadata: Any,
        spec: Any,
        *,
        enforce: bool,
        fingerprint: Hashable | None = None,
        policy_key: str = "",
    ) -> None:
        """Judge a pod (or a template) and act on the judgement: annotations, the warning,
        the audit line, and the refusal. ``fingerprint``: a created pod's template key and
        annotations, by which (with ``policy_key``, the text of the policy and its label
        errors from :meth:`_policy`) the whole judgement is remembered: it depends on
        nothing else (the exempt runtime classes are the server's configuration)."""
        judged: Judgement | None
        if fingerprint is None or not policy_key:
            judged = self._judge(policy, errors, metadata, spec, enforce=enforce)
        else:
            memo_key = (policy_key, enforce, fingerprint)
            judged = self._judged.get(memo_key)
            if judged is None:
                judged = self._judge(
                    policy, errors, metadata, spec, enforce=enforce, fingerprint=fingerprint
                )
                self._judged.put(memo_key, judged)
        if judged.exempt:
            return
        if judged.warning is not None:
            add_warning(judged.warning)
        if judged.audited is not None:
            self._audit(review, judged.audited)
        if judged.refusal is not None:
            named = (
                f'{review.rd.group_resource} "{review.name}"'
                if review.name
                else (review.rd.group_resource)
            )
            raise ApiError(
                403,
                "Forbidden",
                f"{named} is forbidden: {judged.refusal}",
                details={"name": review.name, "kind": review.rd.plural},
            )

    def _judge(
        self,
        policy: Policy,
        errors: Sequence[LabelError],
        metadata: Any,
        spec: Any,
        *,
        enforce: bool,
        fingerprint: Hashable | None = None,
    ) -> Judgement:
        """What the policy says of a pod: nothing here names the request (its user, the
        pod's name), so one judgement serves every pod of a template."""
        runtime_class = spec.get("runtimeClassName") if isinstance(spec, dict) else None
        if runtime_class and runtime_class in self.config.exempt_runtime_classes:
            return Judgement(exempt=True)
        annotations: dict[str, str] = {}
        if errors:
            annotations["error"] = "Failed to parse policy: " + _aggregate(errors)
        verdicts: dict[LevelVersion, Verdict] = {}
        if fingerprint is None:
            fingerprint = self.evaluator.fingerprint(metadata, spec)

        def verdict(lv: LevelVersion) -> Verdict:
            found = verdicts.get(lv)
            if found is None:
                found = verdicts[lv] = self.evaluator.evaluate(
                    lv, metadata, spec, fingerprint=fingerprint
                )
            return found

        refusal: str | None = None
        if enforce:
            annotations["enforce-policy"] = str(policy.enforce)
            enforced = verdict(policy.enforce)
            if not enforced.allowed:
                refusal = f'violates PodSecurity "{policy.enforce}": {enforced.detail()}'
        audited = verdict(policy.audit)
        if not audited.allowed:
            annotations["audit-violations"] = (
                f'would violate PodSecurity "{policy.audit}": {audited.detail()}'
            )
        warning: str | None = None
        if refusal is None:  # no warnings on a request refused anyway
            warned = verdict(policy.warn)
            if not warned.allowed:
                warning = f'would violate PodSecurity "{policy.warn}": {warned.detail()}'
        return Judgement.of(annotations, warning, refusal)

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

    def _audit(self, review: Review, annotations: orjson.Fragment) -> None:
        """The request's audit annotations, as a line of the audit log (written only when
        there is a violation or a label error to record: :attr:`Judgement.audited`)."""
        self.audit_log.write(
            {
                "verb": review.operation,
                "user": review.user.name,
                "resource": review.rd.group_resource,
                "namespace": review.namespace,
                "name": review.name,
                "annotations": annotations,
            }
        )


def _labels(obj: Obj) -> Mapping[str, Any]:
    labels = get_path(obj, "metadata", "labels")
    return labels if isinstance(labels, dict) else {}


def _aggregate(errors: Sequence[LabelError]) -> str:
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
