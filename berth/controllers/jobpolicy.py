"""The Job controller's pure rules: which pods count as succeeded or failed, the pod failure
policy, the back-off before replacing failed pods, completion indexes and job conditions.

Nothing here reads the API or the clock: every function takes the objects and ``now``, so
the unit tests drive them with made-up pods and times. The names and messages are
kube-controller-manager's (1.32), which clients (``kubectl wait``, dashboards) match on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from berth.api.meta import format_time, parse_time
from berth.client.interface import Obj
from berth.controllers import pods as podutil
from berth.machinery.objects import Frozen, annotations_of, is_deleting, meta, name, namespace

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
"""Annotation (and label) holding an Indexed Job pod's index."""
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"
INDEX_FAILURE_COUNT = "batch.kubernetes.io/job-index-failure-count"
"""Annotation: how many pods of this index failed before this one (backoffLimitPerIndex)."""
CONTROLLER_NAME = "kubernetes.io/job-controller"
"""``spec.managedBy`` values this controller reconciles (besides none at all)."""

BACKOFF_BASE = 10.0
"""Delay before the first replacement of a failed pod; doubles with each further failure."""
BACKOFF_MAX = 360.0
"""Cap of that delay: six minutes, as kube's documentation states (the 1.32 code caps at ten)."""

# Condition types and reasons (batch/v1)
COMPLETE = "Complete"
FAILED = "Failed"
SUSPENDED = "Suspended"
FAILURE_TARGET = "FailureTarget"
SUCCESS_CRITERIA_MET = "SuccessCriteriaMet"
REASON_COMPLETIONS_REACHED = "CompletionsReached"
MSG_COMPLETIONS_REACHED = "Reached expected number of succeeded pods"
REASON_BACKOFF_LIMIT = "BackoffLimitExceeded"
MSG_BACKOFF_LIMIT = "Job has reached the specified backoff limit"
REASON_DEADLINE = "DeadlineExceeded"
MSG_DEADLINE = "Job was active longer than specified deadline"
REASON_POD_FAILURE_POLICY = "PodFailurePolicy"
REASON_SUCCESS_POLICY = "SuccessPolicy"
REASON_MAX_FAILED_INDEXES = "MaxFailedIndexesExceeded"
MSG_MAX_FAILED_INDEXES = "Job has exceeded the specified maximal number of failed indexes"
REASON_FAILED_INDEXES = "FailedIndexes"
MSG_FAILED_INDEXES = "Job has failed indexes"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A finished (or finishing) Job: the condition type to add first and why."""

    type: str
    reason: str
    message: str

    @property
    def success(self) -> bool:
        return self.type in (SUCCESS_CRITERIA_MET, COMPLETE)

    @property
    def terminal_type(self) -> str:
        """The condition that follows once every pod has terminated."""
        return COMPLETE if self.success else FAILED


# -- conditions -------------------------------------------------------------------------------


def condition(job: Frozen, type_: str) -> Mapping[str, Any] | None:
    for c in (job.get("status") or {}).get("conditions") or ():
        if c.get("type") == type_:
            return c  # type: ignore[no-any-return]
    return None


def has_true(job: Frozen, type_: str) -> bool:
    c = condition(job, type_)
    return c is not None and c.get("status") == "True"


def is_finished(job: Frozen) -> bool:
    """Complete or Failed: nothing more happens to the Job (but finalizer cleanup)."""
    return has_true(job, COMPLETE) or has_true(job, FAILED)


def pending_verdict(job: Frozen) -> Verdict | None:
    """A FailureTarget / SuccessCriteriaMet condition already written: the Job is decided
    and waits for its pods to terminate."""
    for type_ in (FAILURE_TARGET, SUCCESS_CRITERIA_MET):
        c = condition(job, type_)
        if c is not None and c.get("status") == "True":
            return Verdict(type_, str(c.get("reason") or ""), str(c.get("message") or ""))
    return None


def set_condition(
    conditions: list[Obj], type_: str, status: str, reason: str, message: str, *, now: datetime
) -> bool:
    """Add or update a condition (a new False one is not added); True if anything changed."""
    stamp = format_time(now)
    for c in conditions:
        if c.get("type") != type_:
            continue
        if c.get("status") == status and c.get("reason") == reason and c.get("message") == message:
            return False
        if c.get("status") != status:
            c["lastTransitionTime"] = stamp
        c.update(status=status, reason=reason, message=message, lastProbeTime=stamp)
        return True
    if status != "True":
        return False
    conditions.append(
        {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastProbeTime": stamp,
            "lastTransitionTime": stamp,
        }
    )
    return True


# -- pods -------------------------------------------------------------------------------------


def has_tracking_finalizer(pod: Frozen) -> bool:
    return TRACKING_FINALIZER in (meta(pod).get("finalizers") or ())


def replacement_policy(job: Frozen) -> str:
    spec = job.get("spec") or {}
    default = "Failed" if spec.get("podFailurePolicy") is not None else "TerminatingOrFailed"
    return str(spec.get("podReplacementPolicy") or default)


def is_terminating(pod: Frozen) -> bool:
    return is_deleting(pod) and not podutil.is_terminal(pod)


def considered_failed(pod: Frozen, job: Frozen) -> bool:
    """Phase Failed; or, with podReplacementPolicy TerminatingOrFailed, being deleted before
    it succeeded (a pod deleted from under a Job is a failure, as kube counts it)."""
    phase = podutil.phase(pod)
    if phase == "Failed":
        return True
    return (
        replacement_policy(job) == "TerminatingOrFailed"
        and is_deleting(pod)
        and phase != "Succeeded"
    )


def finish_time(pod: Frozen) -> datetime | None:
    """When the pod's last container ended (else when it was deleted or created)."""
    latest: datetime | None = None
    status = pod.get("status") or {}
    for key in ("containerStatuses", "initContainerStatuses"):
        for cs in status.get(key) or ():
            t = parse_time(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
            if t is not None and (latest is None or t > latest):
                latest = t
    if latest is not None:
        return latest
    for c in status.get("conditions") or ():
        if c.get("type") == "Ready" and c.get("status") == "False":
            t = parse_time(c.get("lastTransitionTime"))
            if t is not None:
                return t
    return parse_time(meta(pod).get("deletionTimestamp")) or parse_time(
        meta(pod).get("creationTimestamp")
    )


def restarts(pod: Frozen) -> int:
    status = pod.get("status") or {}
    return sum(
        int(cs.get("restartCount") or 0)
        for key in ("containerStatuses", "initContainerStatuses")
        for cs in status.get(key) or ()
    )


def past_backoff_limit_on_failure(job: Frozen, active: Sequence[Frozen]) -> bool:
    """restartPolicy OnFailure: containers restart in place, so their restarts count
    against backoffLimit (any restart when the limit is 0)."""
    spec = job.get("spec") or {}
    tpl_spec = (spec.get("template") or {}).get("spec") or {}
    if tpl_spec.get("restartPolicy") != "OnFailure":
        return False
    total = sum(restarts(p) for p in active)
    limit = int(spec.get("backoffLimit", 6))
    return total > 0 if limit == 0 else total >= limit


def backoff_remaining(pods: Iterable[Frozen], job: Frozen, now: datetime) -> float:
    """Seconds to wait before creating replacement pods: 10 s after the first failure since
    the last success, doubling with each further one, capped at :data:`BACKOFF_MAX`.

    Read from the finished pods themselves (they stay until the Job goes), so a restarted
    controller keeps the same back-off rather than an in-memory record."""
    finished: list[tuple[datetime, bool]] = []
    for p in pods:
        if podutil.phase(p) == "Succeeded":
            t = finish_time(p)
            if t is not None:
                finished.append((t, False))
        elif considered_failed(p, job) and counts_as_failure(job, p):
            # (a failure the pod failure policy ignores does not slow replacements either)
            t = finish_time(p)
            if t is not None:
                finished.append((t, True))
    finished.sort()
    failures = 0
    last_failure: datetime | None = None
    for t, failed in finished:
        if failed:
            failures += 1
            last_failure = t
        else:
            failures = 0
            last_failure = None
    if failures == 0 or last_failure is None:
        return 0.0
    delay = min(BACKOFF_BASE * float(1 << min(failures - 1, 20)), BACKOFF_MAX)
    return max(0.0, delay - (now - last_failure).total_seconds())


# -- pod failure policy -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyMatch:
    action: str
    """``FailJob``, ``FailIndex``, ``Ignore`` or ``Count``."""
    message: str


def _exit_code_match(rule: Mapping[str, Any], pod: Frozen) -> str | None:
    req = rule.get("onExitCodes") or {}
    op, values = req.get("operator"), set(req.get("values") or ())
    only = req.get("containerName")
    status = pod.get("status") or {}
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(key) or ():
            if only and cs.get("name") != only:
                continue
            term = (cs.get("state") or {}).get("terminated")
            if not term:
                continue
            code = term.get("exitCode")
            if not isinstance(code, int) or code == 0:
                continue
            if (op == "In" and code in values) or (op == "NotIn" and code not in values):
                return (
                    f"Container {cs.get('name')} for pod {namespace(pod)}/{name(pod)}"
                    f" failed with exit code {code}"
                )
    return None


def _condition_match(rule: Mapping[str, Any], pod: Frozen) -> str | None:
    conds = {
        c.get("type"): c.get("status") for c in (pod.get("status") or {}).get("conditions") or ()
    }
    for pattern in rule.get("onPodConditions") or ():
        type_ = pattern.get("type")
        if conds.get(type_) == (pattern.get("status") or "True"):
            return f"Pod {namespace(pod)}/{name(pod)} has condition {type_}"
    return None


def match_failure_policy(job: Frozen, pod: Frozen) -> PolicyMatch | None:
    """The first rule of ``spec.podFailurePolicy`` a failed pod matches (None: no policy, or
    no rule matched, which counts the failure as usual)."""
    policy = (job.get("spec") or {}).get("podFailurePolicy")
    if not policy or podutil.phase(pod) != "Failed":
        return None
    for i, rule in enumerate(policy.get("rules") or ()):
        if rule.get("onExitCodes") is not None:
            hit = _exit_code_match(rule, pod)
        else:
            hit = _condition_match(rule, pod)
        if hit is not None:
            action = str(rule.get("action"))
            return PolicyMatch(action, f"{hit} matching {action} rule at index {i}")
    return None


def counts_as_failure(job: Frozen, pod: Frozen) -> bool:
    match = match_failure_policy(job, pod)
    return match is None or match.action != "Ignore"


# -- completion indexes -----------------------------------------------------------------------


def completion_index(pod: Frozen) -> int | None:
    raw = annotations_of(pod).get(COMPLETION_INDEX)
    if raw is None or not raw.isdigit() or len(raw) > 9:
        return None
    return int(raw)


def index_failure_count(pod: Frozen) -> int:
    raw = annotations_of(pod).get(INDEX_FAILURE_COUNT)
    return int(raw) if raw is not None and raw.isdigit() and len(raw) <= 9 else 0


def failures_of_index(pods: Iterable[Frozen], job: Frozen, index: int) -> int:
    """Counted failures of ``index`` so far: the highest count its pods carry, plus one for
    a pod of it that failed itself."""
    most = 0
    for p in pods:
        if completion_index(p) != index:
            continue
        n = index_failure_count(p)
        if considered_failed(p, job) and counts_as_failure(job, p):
            n += 1
        most = max(most, n)
    return most


def parse_indexes(text: str | None, completions: int) -> set[int]:
    """``"1,3-5"`` as a set, keeping only indexes below ``completions`` (bad parts ignored:
    the field is the controller's own, but never trust stored input to be well formed)."""
    out: set[int] = set()
    for part in (text or "").split(","):
        first, sep, last = part.strip().partition("-")
        if not first.isdigit() or (sep and not last.isdigit()):
            continue
        lo, hi = int(first), int(last) if sep else int(first)
        hi = min(hi, completions - 1)
        if lo <= hi:
            out.update(range(lo, hi + 1))
    return out


def format_indexes(indexes: Iterable[int]) -> str:
    """The compressed interval form kube writes: ``"0-2,5,7-8"``."""
    parts: list[str] = []
    run: list[int] = []
    for i in sorted(set(indexes)):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [i]
    if run:
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(parts)


# -- how many pods --------------------------------------------------------------------------


def want_active(job: Frozen, succeeded: int, active: int) -> int:
    """Pods that should run now (NonIndexed): never more than the completions left."""
    spec = job.get("spec") or {}
    parallelism = int(spec.get("parallelism", 1))
    completions = spec.get("completions")
    if completions is None:
        # a work queue: once one pod succeeded, let the rest finish but start no more
        return active if succeeded > 0 else parallelism
    return max(0, min(int(completions) - succeeded, parallelism))


def success_reached(job: Frozen, succeeded: int, active: int, completed: set[int]) -> bool:
    spec = job.get("spec") or {}
    completions = spec.get("completions")
    if spec.get("completionMode") == "Indexed":
        return completions is not None and len(completed) >= int(completions)
    if completions is None:
        return succeeded > 0 and active == 0
    return succeeded >= int(completions)


def success_policy_rule(job: Frozen, completed: set[int]) -> int | None:
    """The index of the first ``spec.successPolicy`` rule the completed indexes meet (an
    Indexed Job may succeed before every index has): ``succeededIndexes`` all completed,
    or at least ``succeededCount`` of them (of all indexes when no set is named)."""
    spec = job.get("spec") or {}
    policy = spec.get("successPolicy")
    if not policy or spec.get("completionMode") != "Indexed":
        return None
    completions = int(spec.get("completions") or 0)
    for i, rule in enumerate(policy.get("rules") or ()):
        named = rule.get("succeededIndexes")
        count = rule.get("succeededCount")
        if named is not None:
            wanted = parse_indexes(str(named), completions)
            done = len(wanted & completed)
            if (count is None and done == len(wanted)) or (count is not None and done >= count):
                return i
        elif count is not None and len(completed) >= int(count):
            return i
    return None


def deadline_left(job: Frozen, now: datetime) -> float | None:
    """Seconds until ``activeDeadlineSeconds`` runs out (counted from startTime), None
    without a deadline or a start."""
    spec = job.get("spec") or {}
    deadline = spec.get("activeDeadlineSeconds")
    start = parse_time((job.get("status") or {}).get("startTime"))
    if deadline is None or start is None:
        return None
    return float(deadline) - (now - start).total_seconds()


def index_pod_extras(job: Frozen, index: int) -> tuple[dict[str, str], dict[str, str], str]:
    """(labels, annotations, hostname) an Indexed Job's pod gets for ``index``."""
    ix = str(index)
    return {COMPLETION_INDEX: ix}, {COMPLETION_INDEX: ix}, f"{name(job)}-{ix}"


def index_env() -> Obj:
    """``JOB_COMPLETION_INDEX`` from the pod's own annotation (downward API)."""
    return {
        "name": COMPLETION_INDEX_ENV,
        "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}},
    }
