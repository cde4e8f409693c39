"""The Job controller's pure rules: back-off from finished pods' times, the pod failure
policy, completion index strings, how many pods to run, conditions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from berth.api.meta import format_time
from berth.client.interface import Obj
from berth.controllers import jobpolicy as jp

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def pod(phase: str, *, at: int = 0, code: int | None = None, **extra: Any) -> Obj:
    status: Obj = {"phase": phase}
    if code is not None or phase in ("Succeeded", "Failed"):
        status["containerStatuses"] = [
            {
                "name": "main",
                "restartCount": 0,
                "state": {
                    "terminated": {
                        "exitCode": code if code is not None else 0,
                        "finishedAt": format_time(T0 + timedelta(seconds=at)),
                    }
                },
            }
        ]
    status.update(extra)
    return {"metadata": {"name": f"p{at}", "namespace": "ns"}, "status": status}


JOB: Obj = {"metadata": {"name": "j"}, "spec": {"backoffLimit": 6}}


def test_backoff_doubles_from_ten_seconds_and_resets_after_a_success() -> None:
    now = T0 + timedelta(seconds=100)
    assert jp.backoff_remaining([], JOB, now) == 0
    one = [pod("Failed", at=95)]
    assert jp.backoff_remaining(one, JOB, now) == pytest.approx(5)
    three = [pod("Failed", at=10), pod("Failed", at=50), pod("Failed", at=90)]
    assert jp.backoff_remaining(three, JOB, now) == pytest.approx(30)  # 40 s after the third
    reset = [*three, pod("Succeeded", at=95)]
    assert jp.backoff_remaining(reset, JOB, now) == 0
    again = [*reset, pod("Failed", at=99)]
    assert jp.backoff_remaining(again, JOB, now) == pytest.approx(9)


def test_backoff_is_capped_at_six_minutes() -> None:
    many = [pod("Failed", at=i) for i in range(12)]
    now = T0 + timedelta(seconds=11)
    assert jp.backoff_remaining(many, JOB, now) == pytest.approx(jp.BACKOFF_MAX)
    assert jp.BACKOFF_MAX == 360


def test_terminating_pods_count_as_failed_only_with_terminating_or_failed() -> None:
    deleting = {
        "metadata": {"name": "x", "deletionTimestamp": format_time(T0)},
        "status": {"phase": "Running"},
    }
    assert jp.considered_failed(deleting, {"spec": {"podReplacementPolicy": "TerminatingOrFailed"}})
    assert not jp.considered_failed(deleting, {"spec": {"podReplacementPolicy": "Failed"}})
    assert jp.considered_failed(pod("Failed"), {"spec": {"podReplacementPolicy": "Failed"}})


def policy_job(*rules: Obj) -> Obj:
    return {"metadata": {"name": "j"}, "spec": {"podFailurePolicy": {"rules": list(rules)}}}


def test_pod_failure_policy_first_matching_rule_wins() -> None:
    job = policy_job(
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
        {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1, 2]}},
    )
    fatal = pod("Failed", code=42)
    m = jp.match_failure_policy(job, fatal)
    assert m is not None
    assert m.action == "FailJob"
    assert m.message == (
        "Container main for pod ns/p0 failed with exit code 42 matching FailJob rule at index 1"
    )
    disrupted = pod("Failed", code=42, conditions=[{"type": "DisruptionTarget", "status": "True"}])
    m = jp.match_failure_policy(job, disrupted)
    assert m is not None
    assert m.action == "Ignore"
    assert not jp.counts_as_failure(job, disrupted)
    assert m.message == "Pod ns/p0 has condition DisruptionTarget matching Ignore rule at index 0"
    assert jp.match_failure_policy(job, pod("Failed", code=1)) is None  # no rule: counted
    assert jp.counts_as_failure(job, pod("Failed", code=1))
    m = jp.match_failure_policy(job, pod("Failed", code=7))
    assert m is not None
    assert m.action == "Count"
    assert jp.match_failure_policy(job, pod("Running")) is None
    only_other = policy_job(
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": "sidecar", "operator": "In", "values": [42]},
        }
    )
    assert jp.match_failure_policy(only_other, fatal) is None


@pytest.mark.parametrize(
    ("indexes", "text"),
    [([], ""), ([0], "0"), ([0, 1, 2], "0-2"), ([0, 2, 3, 4, 7], "0,2-4,7"), ([5, 1, 1], "1,5")],
)
def test_completed_indexes_round_trip(indexes: list[int], text: str) -> None:
    assert jp.format_indexes(indexes) == text
    assert jp.parse_indexes(text, 10) == set(indexes)


def test_completed_indexes_parse_ignores_junk_and_out_of_range() -> None:
    assert jp.parse_indexes("0-2,x,4-,9-3,7-100", 9) == {0, 1, 2, 7, 8}
    assert jp.parse_indexes(None, 3) == set()


def test_want_active_never_exceeds_the_completions_left() -> None:
    def job(**spec: Any) -> Obj:
        return {"spec": spec}

    assert jp.want_active(job(parallelism=2, completions=5), succeeded=0, active=0) == 2
    assert jp.want_active(job(parallelism=2, completions=5), succeeded=4, active=2) == 1
    assert jp.want_active(job(parallelism=2, completions=5), succeeded=5, active=0) == 0
    # work queue (no completions): after a success, start nothing new
    assert jp.want_active(job(parallelism=3), succeeded=0, active=1) == 3
    assert jp.want_active(job(parallelism=3), succeeded=1, active=2) == 2
    assert jp.success_reached(job(parallelism=3), 1, 0, set())
    assert not jp.success_reached(job(parallelism=3), 1, 1, set())
    indexed = job(completions=3, completionMode="Indexed")
    assert jp.success_reached(indexed, 0, 0, {0, 1, 2})
    assert not jp.success_reached(indexed, 5, 0, {0, 2})


def test_past_backoff_limit_on_failure_counts_container_restarts() -> None:
    def job(limit: int) -> Obj:
        return {
            "spec": {"backoffLimit": limit, "template": {"spec": {"restartPolicy": "OnFailure"}}}
        }

    restarted = {"status": {"phase": "Running", "containerStatuses": [{"restartCount": 2}]}}
    assert jp.past_backoff_limit_on_failure(job(2), [restarted])
    assert not jp.past_backoff_limit_on_failure(job(3), [restarted])
    assert jp.past_backoff_limit_on_failure(job(0), [restarted])
    never = {"spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never"}}}}
    assert not jp.past_backoff_limit_on_failure(never, [restarted])


def test_set_condition_adds_true_updates_and_never_adds_false() -> None:
    conds: list[Obj] = []
    assert not jp.set_condition(conds, "Suspended", "False", "JobResumed", "Job resumed", now=T0)
    assert conds == []
    assert jp.set_condition(conds, "Suspended", "True", "JobSuspended", "Job suspended", now=T0)
    assert not jp.set_condition(conds, "Suspended", "True", "JobSuspended", "Job suspended", now=T0)
    later = T0 + timedelta(seconds=5)
    assert jp.set_condition(conds, "Suspended", "False", "JobResumed", "Job resumed", now=later)
    (c,) = conds
    assert c["status"] == "False"
    assert c["lastTransitionTime"] == format_time(later)
