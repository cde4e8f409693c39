"""batch/v1 Jobs and CronJobs through the API server: kubectl 1.32 and 1.20 create and list
them (protobuf bodies from 1.32), defaults and the generated selector are kube's, validation
answers 422 with kube's causes, the template is immutable, and the Python client reads them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client as k8s

from .helpers import Kubectl, Raw, json_paths, replaced_at, table

pytestmark = pytest.mark.timeout(120)

JOBS = "/apis/batch/v1/namespaces/default/jobs"
CRONJOBS = "/apis/batch/v1/namespaces/default/cronjobs"


def job_body(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "c", "image": "busybox:1"}],
                    "restartPolicy": "Never",
                }
            },
            **spec,
        },
    }


def cronjob_body(name: str, schedule: str = "*/5 * * * *", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "jobTemplate": {"spec": job_body("x")["spec"]},
            **spec,
        },
    }


def test_kubectl_creates_and_lists_jobs_and_cronjobs(kubectl: Kubectl, raw: Raw) -> None:
    v = kubectl.version.replace(".", "")
    kubectl("create", "job", f"j{v}", "--image=busybox:1", "--", "echo", "hi")
    status, job = raw.json("GET", f"{JOBS}/j{v}")
    assert status == 200
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["echo", "hi"]
    rows = table(kubectl("get", "jobs", f"j{v}"))
    assert rows[0] == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert rows[1][:3] == [f"j{v}", "Running", "0/1"]
    wide = table(kubectl("get", "jobs", f"j{v}", "-o", "wide"))
    assert wide[0][-3:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
    assert wide[1][-1] == f"batch.kubernetes.io/controller-uid={job['metadata']['uid']}"
    if kubectl.version == "1.32":
        # (kubectl 1.20 creates CronJobs as batch/v1beta1, which 1.32 servers no longer
        # serve: it fails against kube-apiserver 1.32 as it does here)
        kubectl("create", "cronjob", "cj", "--image=busybox:1", "--schedule=*/5 * * * *")
    else:
        kubectl("create", "-f", "-", stdin=json.dumps(cronjob_body("cj120", "@hourly")))
    name = "cj" if kubectl.version == "1.32" else "cj120"
    rows = table(kubectl("get", "cronjobs", name))
    assert rows[0] == [
        "NAME",
        "SCHEDULE",
        "TIMEZONE",
        "SUSPEND",
        "ACTIVE",
        "LAST SCHEDULE",
        "AGE",
    ]
    assert rows[1][1:6] == [
        "*/5 * * * *" if name == "cj" else "@hourly",
        "<none>",
        "False",
        "0",
        "<none>",
    ]
    assert name in kubectl("get", "cj")  # the short name
    if kubectl.version == "1.20":
        return  # its --from=cronjob knows only batch/v1beta1 (client side, as against kube)
    kubectl("create", "job", "from-cj", f"--from=cronjob/{name}")
    status, made = raw.json("GET", f"{JOBS}/from-cj")
    assert status == 200
    assert made["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    (ref,) = made["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"]) == ("CronJob", name)


def test_job_defaults_and_generated_selector(raw: Raw) -> None:
    status, job = raw.json("POST", JOBS, job_body("defaults"))
    assert status == 201, job
    spec = job["spec"]
    uid = job["metadata"]["uid"]
    assert spec["parallelism"] == 1
    assert spec["completions"] == 1
    assert spec["backoffLimit"] == 6
    assert spec["completionMode"] == "NonIndexed"
    assert spec["suspend"] is False
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert spec["template"]["metadata"]["labels"] == {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": "defaults",
        "controller-uid": uid,
        "job-name": "defaults",
    }
    # work queue: parallelism without completions leaves completions unset
    status, wq = raw.json("POST", JOBS, job_body("queue", parallelism=3))
    assert status == 201
    assert "completions" not in wq["spec"]
    # a pod failure policy makes Failed the replacement policy
    pfp = {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}
    status, with_policy = raw.json("POST", JOBS, job_body("pfp", podFailurePolicy=pfp))
    assert status == 201, with_policy
    assert with_policy["spec"]["podReplacementPolicy"] == "Failed"
    rule = with_policy["spec"]["podFailurePolicy"]["rules"][0]
    assert rule["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]


def test_cronjob_defaults(raw: Raw) -> None:
    status, cj = raw.json("POST", CRONJOBS, cronjob_body("defaults"))
    assert status == 201, cj
    spec = cj["spec"]
    assert spec["concurrencyPolicy"] == "Allow"
    assert spec["suspend"] is False
    assert spec["successfulJobsHistoryLimit"] == 3
    assert spec["failedJobsHistoryLimit"] == 1
    assert "backoffLimit" not in spec["jobTemplate"]["spec"]  # as kube: no Job defaults here


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            job_body("rp", template={"spec": {"containers": [{"name": "c", "image": "x"}]}}),
            "spec.template.spec.restartPolicy",
        ),
        (job_body("neg", parallelism=-1), "spec.parallelism"),
        (job_body("bl", backoffLimit=-2), "spec.backoffLimit"),
        (job_body("ix", completionMode="Indexed", parallelism=2), "spec.completions"),
        (job_body("mode", completionMode="Sometimes"), "spec.completionMode"),
        (
            job_body(
                "pfp",
                podFailurePolicy={
                    "rules": [
                        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [0]}}
                    ]
                },
            ),
            "spec.podFailurePolicy.rules[0].onExitCodes.values[0]",
        ),
        (
            job_body("sel", selector={"matchLabels": {"a": "b"}}),
            "spec.template.metadata.labels",
        ),
        (
            job_body("sp", successPolicy={"rules": [{"succeededCount": 1}]}),
            "spec.completionMode",
        ),
        (
            job_body(
                "sp2",
                completionMode="Indexed",
                completions=3,
                successPolicy={"rules": [{"succeededIndexes": "1-5"}]},
            ),
            "spec.successPolicy.rules[0].succeededIndexes",
        ),
        (
            job_body("pi", backoffLimitPerIndex=1),
            "spec.backoffLimitPerIndex",
        ),
        (cronjob_body("sched", "every day"), "spec.schedule"),
        (cronjob_body("tz", timeZone="Nowhere/Atlantis"), "spec.timeZone"),
        (cronjob_body("both", "CRON_TZ=UTC 0 * * * *", timeZone="UTC"), "spec.timeZone"),
        (cronjob_body("pol", concurrencyPolicy="Sometimes"), "spec.concurrencyPolicy"),
        (cronjob_body("x" * 53), "metadata.name"),
    ],
)
def test_invalid_bodies_are_422_with_the_field(raw: Raw, body: dict[str, Any], field: str) -> None:
    path = JOBS if body["kind"] == "Job" else CRONJOBS
    status, out = raw.json("POST", path, body)
    assert status == 422, out
    assert out["reason"] == "Invalid"
    assert field in [c["field"] for c in out["details"]["causes"]], out


def test_job_template_is_immutable_but_parallelism_is_not(raw: Raw) -> None:
    status, job = raw.json("POST", JOBS, job_body("immut", parallelism=1, completions=3))
    assert status == 201
    job["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:2"
    status, out = raw.json("PUT", f"{JOBS}/immut", job)
    assert status == 422, out
    assert [c["field"] for c in out["details"]["causes"]] == ["spec.template"]
    status, out = raw.json(
        "PATCH",
        f"{JOBS}/immut",
        {"spec": {"parallelism": 3}},
        content_type="application/merge-patch+json",
    )
    assert status == 200, out
    assert out["spec"]["parallelism"] == 3
    status, out = raw.json(
        "PATCH",
        f"{JOBS}/immut",
        {"spec": {"completions": 5}},
        content_type="application/merge-patch+json",
    )
    assert status == 422
    # a suspended Job that never started may still be steered (scheduling directives)
    status, _ = raw.json("POST", JOBS, job_body("steer", suspend=True))
    assert status == 201
    status, out = raw.json(
        "PATCH",
        f"{JOBS}/steer",
        {"spec": {"template": {"spec": {"nodeSelector": {"zone": "a"}}}}},
        content_type="application/merge-patch+json",
    )
    assert status == 200, out


def test_python_client_reads_jobs_and_cronjobs(api: k8s.ApiClient, raw: Raw) -> None:
    raw.json("POST", JOBS, job_body("pyc"))
    raw.json("POST", CRONJOBS, cronjob_body("pyc"))
    batch = k8s.BatchV1Api(api)
    jobs: Any = batch.list_namespaced_job("default").items
    assert "pyc" in [j.metadata.name for j in jobs]
    cj = batch.read_namespaced_cron_job("pyc", "default")
    assert cj.spec.schedule == "*/5 * * * *"
    batch.patch_namespaced_cron_job("pyc", "default", {"spec": {"suspend": True}})
    assert batch.read_namespaced_cron_job("pyc", "default").spec.suspend is True


# -- an attacker's bodies: every path of a valid Job/CronJob replaced by a wrong JSON type ------

FUZZ_SEEDS: dict[str, dict[str, Any]] = {
    JOBS: job_body(
        "fz",
        completionMode="Indexed",
        completions=3,
        parallelism=2,
        backoffLimitPerIndex=1,
        maxFailedIndexes=1,
        podReplacementPolicy="Failed",
        activeDeadlineSeconds=60,
        ttlSecondsAfterFinished=10,
        successPolicy={"rules": [{"succeededIndexes": "0-1", "succeededCount": 1}]},
        podFailurePolicy={
            "rules": [
                {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1, 2]}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]
        },
    ),
    CRONJOBS: cronjob_body(
        "fz",
        "0 9 * * MON-FRI",
        timeZone="Europe/Berlin",
        startingDeadlineSeconds=30,
        concurrencyPolicy="Forbid",
    ),
}
FUZZ_VALUES: st.SearchStrategy[Any] = st.sampled_from(
    ["x", 7, -1, 1.5, True, None, [], ["x"], [1], {}, {"a": 1}, [{}], [None], 2**70, "9-1"]
)


@st.composite
def confused(draw: st.DrawFn) -> tuple[str, Any, str]:
    collection = draw(st.sampled_from(sorted(FUZZ_SEEDS)))
    seed = FUZZ_SEEDS[collection]
    path = draw(st.sampled_from(list(json_paths(seed))))
    body = replaced_at(seed, path, draw(FUZZ_VALUES))
    method = draw(st.sampled_from(["POST", "PUT", "PATCH"]))
    return collection, body, method


@settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(write=confused())
def test_type_confused_batch_writes_are_never_500(raw: Raw, write: tuple[str, Any, str]) -> None:
    collection, body, method = write
    for seed_path, seed in FUZZ_SEEDS.items():
        raw.json("POST", seed_path, seed)  # 409 after the first time: fine
    if method == "POST":
        if isinstance(body, dict):
            body = {**body, "metadata": {"name": "fz-new"}}
        status, out = raw.json("POST", collection, body)
        raw.json("DELETE", f"{collection}/fz-new")
    elif method == "PUT":
        status, out = raw.json("PUT", f"{collection}/fz", body)
    else:
        status, out = raw.json(
            "PATCH", f"{collection}/fz", body, content_type="application/merge-patch+json"
        )
    assert status < 500, (method, collection, body, out)
