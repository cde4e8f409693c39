"""batch/v1 Jobs and CronJobs: defaults, the generated selector, validation, table columns.

A Job's pods are selected by a label the server generates from the Job's uid
(``batch.kubernetes.io/controller-uid``), put on the template with the job-name labels (and
their legacy unprefixed twins), unless the client asks for ``manualSelector``. The template is
immutable once created, except the scheduling directives of a Job that is suspended and has
never started. A CronJob's schedule and time zone are checked with the same parser the
controller iterates with (:mod:`berth.api.cron`).
"""

from __future__ import annotations

import re
from typing import Any

from berth.api import cron
from berth.api.meta import Obj, get_path, now, parse_time
from berth.api.resources import ResourceDef
from berth.apiserver.errors import (
    FieldError,
    duplicate,
    invalid_value,
    not_supported,
    required,
)
from berth.apiserver.selectors import selector_to_string
from berth.apiserver.strategy import pod_spec_defaults
from berth.apiserver.tables import (
    AGE,
    NAME,
    WIDE_TEMPLATE,
    Cell,
    Column,
    Printer,
    age,
    created,
    human_duration,
    int_or_zero,
    name_of,
)
from berth.apiserver.validation import _containers

from .base import KindStrategy

CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID = "controller-uid"
LEGACY_JOB_NAME = "job-name"
MAX_INDEXED = 100_000
"""Most completions (and parallelism) of an Indexed Job (kube: 10^5)."""
MAX_CRONJOB_NAME = 52
"""A CronJob's Jobs are named ``<name>-<minutes>``: 52 + 11 characters fit a label value."""
_NONNEG = "must be greater than or equal to 0"


def _conditions(o: Obj) -> dict[str, str]:
    conds = get_path(o, "status", "conditions") or []
    return {str(c.get("type")): str(c.get("status")) for c in conds if isinstance(c, dict)}


def _has(conds: dict[str, str], kind: str) -> bool:
    return conds.get(kind) == "True"


def job_status_word(o: Obj) -> str:
    """The STATUS column of ``kubectl get jobs`` (1.32's order of precedence)."""
    conds = _conditions(o)
    if _has(conds, "Complete"):
        return "Complete"
    if _has(conds, "Failed"):
        return "Failed"
    if get_path(o, "metadata", "deletionTimestamp"):
        return "Terminating"
    if _has(conds, "Suspended"):
        return "Suspended"
    if _has(conds, "FailureTarget"):
        return "FailureTarget"
    if _has(conds, "SuccessCriteriaMet"):
        return "SuccessCriteriaMet"
    return "Running"


def _job_row(o: Obj) -> list[Cell]:
    spec = o.get("spec") or {}
    succeeded = int_or_zero(get_path(o, "status", "succeeded"))
    completions, parallelism = spec.get("completions"), spec.get("parallelism")
    if isinstance(completions, int):
        done = f"{succeeded}/{completions}"
    elif isinstance(parallelism, int) and parallelism > 1:
        done = f"{succeeded}/1 of {parallelism}"
    else:
        done = f"{succeeded}/1"
    start = parse_time(get_path(o, "status", "startTime"))
    end = parse_time(get_path(o, "status", "completionTime"))
    duration = "" if start is None else human_duration(((end or now()) - start).total_seconds())
    containers = get_path(o, "spec", "template", "spec", "containers") or []
    return [
        name_of(o),
        job_status_word(o),
        done,
        duration,
        age(created(o)),
        ",".join(str(c.get("name", "")) for c in containers),
        ",".join(str(c.get("image", "")) for c in containers),
        selector_to_string(spec.get("selector")) or "<none>",
    ]


JOB = Printer(
    (
        NAME,
        Column("Status", description="Status of the job."),
        Column(
            "Completions",
            description="The desired number of successfully finished pods the job should be"
            " run with.",
        ),
        Column("Duration", description="Time required to complete the job."),
        AGE,
        *WIDE_TEMPLATE,
    ),
    _job_row,
)


def _cronjob_row(o: Obj) -> list[Cell]:
    spec = o.get("spec") or {}
    suspend = spec.get("suspend")
    last = get_path(o, "status", "lastScheduleTime")
    containers = get_path(o, "spec", "jobTemplate", "spec", "template", "spec", "containers")
    return [
        name_of(o),
        str(spec.get("schedule", "")),
        str(spec.get("timeZone")) if spec.get("timeZone") is not None else "<none>",
        "<unset>" if not isinstance(suspend, bool) else ("True" if suspend else "False"),
        len(get_path(o, "status", "active") or []),
        age(last) if last else "<none>",
        age(created(o)),
        ",".join(str(c.get("name", "")) for c in containers or []),
        ",".join(str(c.get("image", "")) for c in containers or []),
        selector_to_string(get_path(o, "spec", "jobTemplate", "spec", "selector")) or "<none>",
    ]


CRONJOB = Printer(
    (
        NAME,
        Column("Schedule", description="The schedule in Cron format."),
        Column("Timezone", description="The time zone name for the given schedule."),
        Column(
            "Suspend", type="boolean", description="Whether subsequent executions are suspended."
        ),
        Column(
            "Active", type="integer", description="Active holds pointers to currently running jobs."
        ),
        Column(
            "Last Schedule",
            description="Information when was the last time the job was successfully scheduled.",
        ),
        AGE,
        *WIDE_TEMPLATE,
    ),
    _cronjob_row,
)


# -- defaults ---------------------------------------------------------------------------------


def _pod_template_defaults(tpl: Any) -> None:
    if isinstance(tpl, dict) and isinstance(tpl.get("spec"), dict):
        pod_spec_defaults(tpl["spec"])
        tpl.setdefault("metadata", {}).setdefault("creationTimestamp", None)


def job_spec_defaults(spec: Obj) -> None:
    """kube's SetDefaults_Job on a Job's spec."""
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    if spec.get("backoffLimit") is None:
        # backoffLimitPerIndex makes the global limit effectively unbounded (kube: MaxInt32)
        spec["backoffLimit"] = 2147483647 if spec.get("backoffLimitPerIndex") is not None else 6
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = (
            "Failed" if spec.get("podFailurePolicy") is not None else "TerminatingOrFailed"
        )
    manual = spec.get("manualSelector")
    if manual is False:
        spec.pop("manualSelector")
    for rule in get_path(spec, "podFailurePolicy", "rules") or []:
        if isinstance(rule, dict):
            for pattern in rule.get("onPodConditions") or []:
                if isinstance(pattern, dict):
                    pattern.setdefault("status", "True")
    _pod_template_defaults(spec.get("template"))


def generate_selector(job: Obj) -> None:
    """Label the template with the Job's uid and name and select on the uid (unless the
    client manages the selector itself)."""
    spec = job.get("spec")
    if not isinstance(spec, dict) or spec.get("manualSelector") is True:
        return
    tpl = spec.get("template")
    if not isinstance(tpl, dict):
        return
    m = job["metadata"]
    uid, name = str(m.get("uid", "")), str(m.get("name", ""))
    tmeta = tpl.get("metadata")
    if not isinstance(tmeta, dict):
        tmeta = tpl["metadata"] = {}
    labels = tmeta.get("labels")
    if not isinstance(labels, dict):
        labels = tmeta["labels"] = {}
    for key, value in (
        (LEGACY_CONTROLLER_UID, uid),
        (LEGACY_JOB_NAME, name),
        (CONTROLLER_UID, uid),
        (JOB_NAME, name),
    ):
        labels.setdefault(key, value)
    sel = spec.get("selector")
    if not isinstance(sel, dict):
        sel = spec["selector"] = {}
    ml = sel.get("matchLabels")
    if not isinstance(ml, dict):
        ml = sel["matchLabels"] = {}
    ml.setdefault(CONTROLLER_UID, uid)


# -- validation -------------------------------------------------------------------------------


def _nonneg(spec: Obj, field: str, path: str) -> list[FieldError]:
    v = spec.get(field)
    if v is None:
        return []
    if not isinstance(v, int) or isinstance(v, bool):
        return [invalid_value(f"{path}.{field}", v, "must be an integer")]
    if v < 0:
        return [invalid_value(f"{path}.{field}", v, _NONNEG)]
    return []


def _exit_code_rule(rule: Obj, where: str) -> list[FieldError]:
    req = rule.get("onExitCodes")
    if not isinstance(req, dict):
        return [invalid_value(where, req, "must be an object")]
    errs: list[FieldError] = []
    op = req.get("operator")
    if op not in ("In", "NotIn"):
        errs.append(not_supported(f"{where}.operator", op, ("In", "NotIn")))
    values = req.get("values")
    if not isinstance(values, list) or not values:
        return [*errs, required(f"{where}.values")]
    if len(values) > 255:
        errs.append(
            FieldError(
                "FieldValueTooMany", f"{where}.values", "Too many: must have at most 255 items"
            )
        )
        return errs
    prev: int | None = None
    seen: set[int] = set()
    for i, v in enumerate(values):
        if not isinstance(v, int) or isinstance(v, bool):
            errs.append(invalid_value(f"{where}.values[{i}]", v, "must be an integer"))
            continue
        if v in seen:
            errs.append(duplicate(f"{where}.values[{i}]", v))
        if op == "In" and v == 0:
            errs.append(
                invalid_value(f"{where}.values[{i}]", v, "must not be 0 for the In operator")
            )
        if prev is not None and v < prev:
            errs.append(invalid_value(f"{where}.values", values, "must be ordered"))
        seen.add(v)
        prev = v
    return errs


def _pod_failure_policy(spec: Obj, path: str) -> list[FieldError]:
    pfp = spec.get("podFailurePolicy")
    if pfp is None:
        return []
    where = f"{path}.podFailurePolicy"
    if not isinstance(pfp, dict):
        return [invalid_value(where, pfp, "must be an object")]
    errs: list[FieldError] = []
    policy = get_path(spec, "template", "spec", "restartPolicy")
    if policy != "Never":
        errs.append(
            invalid_value(
                f"{path}.template.spec.restartPolicy",
                policy,
                'only "Never" is supported when podFailurePolicy is specified',
            )
        )
    rules = pfp.get("rules")
    if not isinstance(rules, list):
        return [*errs, required(f"{where}.rules")]
    if len(rules) > 20:
        return [
            *errs,
            FieldError(
                "FieldValueTooMany", f"{where}.rules", "Too many: must have at most 20 items"
            ),
        ]
    actions = ("FailJob", "FailIndex", "Ignore", "Count")
    for i, rule in enumerate(rules):
        rw = f"{where}.rules[{i}]"
        if not isinstance(rule, dict):
            errs.append(invalid_value(rw, rule, "must be an object"))
            continue
        action = rule.get("action")
        if action not in actions:
            errs.append(not_supported(f"{rw}.action", action, actions))
        elif action == "FailIndex" and spec.get("backoffLimitPerIndex") is None:
            errs.append(
                invalid_value(f"{rw}.action", action, "requires the backoffLimitPerIndex to be set")
            )
        has_codes = rule.get("onExitCodes") is not None
        has_conds = rule.get("onPodConditions") is not None
        if has_codes == has_conds:
            errs.append(
                invalid_value(
                    rw, "", "specifying one of OnExitCodes and OnPodConditions is required"
                )
            )
            continue
        if has_codes:
            errs += _exit_code_rule(rule, f"{rw}.onExitCodes")
            continue
        patterns = rule.get("onPodConditions")
        if not isinstance(patterns, list) or len(patterns) > 20:
            errs.append(
                invalid_value(
                    f"{rw}.onPodConditions", patterns, "must be a list of at most 20 items"
                )
            )
            continue
        for j, p in enumerate(patterns):
            pw = f"{rw}.onPodConditions[{j}]"
            if not isinstance(p, dict) or not isinstance(p.get("type"), str) or not p["type"]:
                errs.append(required(f"{pw}.type"))
                continue
            if p.get("status") not in ("True", "False", "Unknown"):
                errs.append(
                    not_supported(f"{pw}.status", p.get("status"), ("True", "False", "Unknown"))
                )
    return errs


def job_spec_fields(spec: Any, path: str, *, needs_selector: bool) -> list[FieldError]:
    """kube's ValidateJobSpec (the parts berth implements) for ``spec`` at ``path``."""
    if not isinstance(spec, dict):
        return [required(path)]
    errs: list[FieldError] = []
    for f in (
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ):
        errs += _nonneg(spec, f, path)
    mode = spec.get("completionMode", "NonIndexed")
    if mode not in ("NonIndexed", "Indexed"):
        errs.append(not_supported(f"{path}.completionMode", mode, ("NonIndexed", "Indexed")))
    if mode == "Indexed":
        completions = spec.get("completions")
        if completions is None:
            errs.append(
                FieldError(
                    "FieldValueRequired",
                    f"{path}.completions",
                    "Required value: when completion mode is Indexed",
                )
            )
        elif isinstance(completions, int) and completions > MAX_INDEXED:
            errs.append(
                invalid_value(
                    f"{path}.completions",
                    completions,
                    f"must be less than or equal to {MAX_INDEXED} when completion mode is Indexed",
                )
            )
        par = spec.get("parallelism")
        if isinstance(par, int) and par > MAX_INDEXED:
            errs.append(
                invalid_value(
                    f"{path}.parallelism",
                    par,
                    f"must be less than or equal to {MAX_INDEXED} when completion mode is Indexed",
                )
            )
    elif spec.get("backoffLimitPerIndex") is not None:
        errs.append(
            invalid_value(
                f"{path}.backoffLimitPerIndex",
                spec.get("backoffLimitPerIndex"),
                "requires indexed completion mode",
            )
        )
    max_failed = spec.get("maxFailedIndexes")
    if max_failed is not None and spec.get("backoffLimitPerIndex") is None:
        errs.append(
            FieldError(
                "FieldValueRequired",
                f"{path}.backoffLimitPerIndex",
                "Required value: when maxFailedIndexes is specified",
            )
        )
    elif (
        isinstance(max_failed, int)
        and isinstance(spec.get("completions"), int)
        and max_failed > spec["completions"]
    ):
        errs.append(
            invalid_value(
                f"{path}.maxFailedIndexes", max_failed, "must be less than or equal to completions"
            )
        )
    prp = spec.get("podReplacementPolicy")
    if prp is not None:
        allowed = (
            ("Failed",)
            if spec.get("podFailurePolicy") is not None
            else ("TerminatingOrFailed", "Failed")
        )
        if prp not in allowed:
            errs.append(not_supported(f"{path}.podReplacementPolicy", prp, allowed))
    for f in ("suspend", "manualSelector"):
        if spec.get(f) is not None and not isinstance(spec.get(f), bool):
            errs.append(invalid_value(f"{path}.{f}", spec.get(f), "must be a boolean"))
    sel = spec.get("selector")
    if needs_selector and (
        not isinstance(sel, dict) or not (sel.get("matchLabels") or sel.get("matchExpressions"))
    ):
        errs.append(required(f"{path}.selector"))
    tpl = spec.get("template")
    if not isinstance(tpl, dict):
        return [*errs, required(f"{path}.template")]
    errs += _containers(tpl.get("spec"), f"{path}.template.spec")
    policy = get_path(tpl, "spec", "restartPolicy")
    if isinstance(tpl.get("spec"), dict) and policy not in ("OnFailure", "Never"):
        errs.append(
            not_supported(f"{path}.template.spec.restartPolicy", policy, ("OnFailure", "Never"))
        )
    tlabels = get_path(tpl, "metadata", "labels") or {}
    matches = isinstance(tlabels, dict) and all(
        tlabels.get(k) == v for k, v in (get_path(sel, "matchLabels") or {}).items()
    )
    if isinstance(sel, dict) and isinstance(sel.get("matchLabels"), dict) and not matches:
        errs.append(
            invalid_value(
                f"{path}.template.metadata.labels",
                tlabels,
                "`selector` does not match template `labels`",
            )
        )
    errs += _pod_failure_policy(spec, path)
    errs += _success_policy(spec, path)
    return errs


_INDEXES = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def _success_policy(spec: Obj, path: str) -> list[FieldError]:
    sp = spec.get("successPolicy")
    if sp is None:
        return []
    where = f"{path}.successPolicy"
    if spec.get("completionMode") != "Indexed":
        why = "requires indexed completion mode"
        return [invalid_value(f"{path}.completionMode", spec.get("completionMode"), why)]
    rules = sp.get("rules") if isinstance(sp, dict) else None
    if not isinstance(rules, list) or not rules or len(rules) > 20:
        return [invalid_value(f"{where}.rules", rules, "must have between 1 and 20 rules")]
    raw_completions = spec.get("completions")
    completions = raw_completions if isinstance(raw_completions, int) else 0
    errs: list[FieldError] = []
    for i, rule in enumerate(rules):
        rw = f"{where}.rules[{i}]"
        if not isinstance(rule, dict) or (
            rule.get("succeededIndexes") is None and rule.get("succeededCount") is None
        ):
            errs.append(required(rw))
            continue
        named = rule.get("succeededIndexes")
        size = completions
        if named is not None:
            if not isinstance(named, str) or len(named) > 65536 or not _INDEXES.match(named):
                errs.append(invalid_value(f"{rw}.succeededIndexes", named, "error parsing"))
                continue
            parts = [tuple(int(x) for x in p.split("-")) for p in named.split(",")]
            if any(p[-1] >= completions or p[0] > p[-1] for p in parts):
                why = "must be ordered indexes below completions"
                errs.append(invalid_value(f"{rw}.succeededIndexes", named, why))
                continue
            size = sum(p[-1] - p[0] + 1 for p in parts)
        count = rule.get("succeededCount")
        if count is not None and (
            not isinstance(count, int) or isinstance(count, bool) or count < 0 or count > size
        ):
            why = "must be between 0 and the number of indexes it names"
            errs.append(invalid_value(f"{rw}.succeededCount", count, why))
    return errs


def _generated_selector(job: Obj) -> list[FieldError]:
    """kube's ValidateGeneratedSelector: without manualSelector the uid selector stands."""
    spec = job.get("spec") or {}
    if spec.get("manualSelector") is True or not isinstance(spec, dict):
        return []
    uid = str(get_path(job, "metadata", "uid") or "")
    errs: list[FieldError] = []
    tlabels = get_path(spec, "template", "metadata", "labels") or {}
    if isinstance(tlabels, dict) and tlabels.get(CONTROLLER_UID) != uid:
        errs.append(
            invalid_value(
                "spec.template.metadata.labels",
                tlabels,
                "must be '" + CONTROLLER_UID + ": " + uid + "'",
            )
        )
    ml = get_path(spec, "selector", "matchLabels") or {}
    if isinstance(ml, dict) and ml.get(CONTROLLER_UID) != uid:
        errs.append(
            invalid_value("spec.selector", spec.get("selector"), "`selector` not auto-generated")
        )
    return errs


_SCHEDULING = ("nodeSelector", "affinity", "tolerations", "schedulingGates")


def _template_view(tpl: Any, *, scheduling_mutable: bool) -> Any:
    if not scheduling_mutable or not isinstance(tpl, dict):
        return tpl
    view = {k: v for k, v in tpl.items() if k != "metadata"}
    spec = view.get("spec")
    if isinstance(spec, dict):
        view["spec"] = {k: v for k, v in spec.items() if k not in _SCHEDULING}
    return view


def job_update(old: Obj, new: Obj) -> list[FieldError]:
    """What an update of a Job may not change (kube's ValidateJobSpecUpdate)."""
    o, n = old.get("spec"), new.get("spec")
    if not isinstance(o, dict) or not isinstance(n, dict):
        return []  # the object itself is invalid: validate_fields says so
    errs: list[FieldError] = []
    for f in (
        "selector",
        "completionMode",
        "podFailurePolicy",
        "successPolicy",
        "backoffLimitPerIndex",
        "manualSelector",
    ):
        if o.get(f) != n.get(f):
            errs.append(invalid_value(f"spec.{f}", n.get(f), "field is immutable"))
    if o.get("completions") != n.get("completions"):
        elastic = (
            n.get("completionMode") == "Indexed"
            and n.get("completions") == n.get("parallelism")
            and o.get("completions") == o.get("parallelism")
        )
        if not elastic:
            errs.append(
                invalid_value("spec.completions", n.get("completions"), "field is immutable")
            )
    # A suspended Job that never ran may still be steered (kube: mutable scheduling
    # directives), e.g. by a queueing controller before it resumes the Job.
    never_started = get_path(old, "status", "startTime") is None
    mutable = bool(o.get("suspend")) and never_started
    if _template_view(o.get("template"), scheduling_mutable=mutable) != _template_view(
        n.get("template"), scheduling_mutable=mutable
    ):
        errs.append(invalid_value("spec.template", n.get("template"), "field is immutable"))
    return errs


def cronjob_fields(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    errs: list[FieldError] = []
    name = str(get_path(obj, "metadata", "name") or "")
    if len(name) > MAX_CRONJOB_NAME:
        errs.append(
            invalid_value(
                "metadata.name", name, f"must be no more than {MAX_CRONJOB_NAME} characters"
            )
        )
    schedule, tz = spec.get("schedule"), spec.get("timeZone")
    if tz is not None:
        if not isinstance(tz, str) or not tz:
            errs.append(
                invalid_value("spec.timeZone", tz, "timeZone must be nil or non-empty string")
            )
            tz = None
        else:
            try:
                cron.load_zone(tz)
            except cron.ScheduleError as exc:
                errs.append(invalid_value("spec.timeZone", tz, str(exc)))
                tz = None
    if not isinstance(schedule, str) or not schedule:
        errs.append(required("spec.schedule"))
    else:
        try:
            cron.parse(schedule, tz)
        except cron.ScheduleError as exc:
            field = "spec.timeZone" if "timeZone field" in str(exc) else "spec.schedule"
            value = tz if field == "spec.timeZone" else schedule
            errs.append(
                invalid_value(
                    field,
                    value,
                    str(exc) if field == "spec.timeZone" else f"unparseable schedule: {exc}",
                )
            )
    policy = spec.get("concurrencyPolicy", "Allow")
    if policy not in ("Allow", "Forbid", "Replace"):
        errs.append(not_supported("spec.concurrencyPolicy", policy, ("Allow", "Forbid", "Replace")))
    for f in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        errs += _nonneg(spec, f, "spec")
    if spec.get("suspend") is not None and not isinstance(spec.get("suspend"), bool):
        errs.append(invalid_value("spec.suspend", spec.get("suspend"), "must be a boolean"))
    jt = spec.get("jobTemplate")
    if not isinstance(jt, dict):
        return [*errs, required("spec.jobTemplate")]
    errs += job_spec_fields(jt.get("spec"), "spec.jobTemplate.spec", needs_selector=False)
    return errs


class JobStrategy(KindStrategy):
    group = "batch"
    kind = "Job"
    columns = JOB

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        spec = obj.get("spec")
        if isinstance(spec, dict):
            job_spec_defaults(spec)

    def prepare_for_create(self, rd: ResourceDef, obj: Obj, namespace: str) -> Obj:
        super().prepare_for_create(rd, obj, namespace)
        generate_selector(obj)
        return obj

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        spec = obj.get("spec")
        errs = job_spec_fields(spec, "spec", needs_selector=True)
        if isinstance(spec, dict):
            errs += _generated_selector(obj)
            # The job-name label carries the name: it must be a valid label value.
            name = str(get_path(obj, "metadata", "name") or "")
            if len(name) > 63:
                errs.append(
                    invalid_value("metadata.name", name, "must be no more than 63 characters")
                )
        return errs

    def validate_update(self, rd: ResourceDef, old: Obj, new: Obj) -> list[FieldError]:
        return job_update(old, new)


class CronJobStrategy(KindStrategy):
    group = "batch"
    kind = "CronJob"
    columns = CRONJOB

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
        jt = spec.get("jobTemplate")
        if isinstance(jt, dict) and isinstance(jt.get("spec"), dict):
            _pod_template_defaults(jt["spec"].get("template"))

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        return cronjob_fields(obj)
