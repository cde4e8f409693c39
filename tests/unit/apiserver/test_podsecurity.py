"""Pod Security Standards: each check's wording and versions, label parsing, exemptions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from berth.api.resources import TABLE
from berth.apiserver import client_warnings
from berth.apiserver.auth import UserInfo
from berth.apiserver.errors import ApiError
from berth.apiserver.podsecurity import (
    SECURE_DEFAULTS,
    Evaluator,
    LevelVersion,
    PodSecurityAdmission,
    PodSecurityConfig,
    policy_from_labels,
)

P = "pod-security.kubernetes.io/"


def detail(
    level: str,
    spec: dict[str, Any],
    *,
    version: tuple[int, int] | None = None,
    metadata: dict[str, Any] | None = None,
    newest: tuple[int, int] = (1, 32),
) -> str:
    return Evaluator(newest).evaluate(LevelVersion(level, version), metadata or {}, spec).detail()


def containers(*cs: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": f"c{i}", "image": "x", **c} for i, c in enumerate(cs)]


GOOD = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {
                "containers": containers(
                    {"ports": [{"hostPort": 80}, {"hostPort": 443}]},
                    {"ports": [{"hostPort": 8080}]},
                )
            },
            'hostPort (containers "c0", "c1" use hostPorts 443, 80, 8080)',
        ),
        (
            {
                "containers": containers({}),
                "volumes": [
                    {"name": "a", "hostPath": {"path": "/"}},
                    {"name": "b", "hostPath": {"path": "/etc"}},
                ],
            },
            'hostPath volumes (volumes "a", "b")',
        ),
        (
            {
                "containers": containers(
                    {"securityContext": {"appArmorProfile": {"type": "Unconfined"}}}
                )
            },
            'forbidden AppArmor profile (container "c0" must not set AppArmor profile type to'
            ' "Unconfined")',
        ),
        (
            {
                "securityContext": {"seLinuxOptions": {"type": "spc_t", "user": "root"}},
                "containers": containers({}),
            },
            "seLinuxOptions (pod set forbidden securityContext.seLinuxOptions:"
            ' type "spc_t"; user may not be set)',
        ),
        (
            {"containers": containers({"securityContext": {"procMount": "Unmasked"}})},
            'procMount (container "c0" must not set securityContext.procMount to "Unmasked")',
        ),
        (
            {
                "securityContext": {"windowsOptions": {"hostProcess": True}},
                "containers": containers({}),
            },
            "hostProcess (pod must not set securityContext.windowsOptions.hostProcess=true)",
        ),
        (
            {
                "initContainers": containers(
                    {"securityContext": {"capabilities": {"add": ["NET_RAW", "BPF"]}}}
                ),
                "containers": containers({}),
            },
            'non-default capabilities (container "c0" must not include "BPF", "NET_RAW" in'
            " securityContext.capabilities.add)",
        ),
    ],
)
def test_baseline_details_read_as_upstream(spec: dict[str, Any], expected: str) -> None:
    assert detail("baseline", spec) == expected


def test_restricted_replaces_baseline_checks_instead_of_repeating_them() -> None:
    spec = {
        "containers": containers(
            {"securityContext": {**GOOD, "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}}
        ),
        "volumes": [
            {"name": "root", "hostPath": {"path": "/"}},
            {"name": "tmp"},
            {"name": "c", "configMap": {"name": "x"}},
        ],
    }
    # Restricted checks run after the baseline ones, each group in check-id order.
    assert detail("restricted", spec) == (
        'unrestricted capabilities (container "c0" must not include "SYS_ADMIN" in'
        ' securityContext.capabilities.add), restricted volume types (volume "root" uses'
        ' restricted volume type "hostPath")'
    )
    assert detail("baseline", spec) == (
        'non-default capabilities (container "c0" must not include "SYS_ADMIN" in'
        ' securityContext.capabilities.add), hostPath volumes (volume "root")'
    )


def test_versions_select_each_checks_rules() -> None:
    sysctl = {
        "securityContext": {"sysctls": [{"name": "net.ipv4.ip_local_reserved_ports"}]},
        "containers": containers({}),
    }
    assert (
        detail("baseline", sysctl, version=(1, 26))
        == "forbidden sysctls (net.ipv4.ip_local_reserved_ports)"
    )
    assert detail("baseline", sysctl, version=(1, 27)) == ""
    root = {"containers": containers({"securityContext": {**GOOD, "runAsUser": 0}})}
    assert detail("restricted", root, version=(1, 22)) == ""
    assert detail("restricted", root) == 'runAsUser=0 (container "c0" must not set runAsUser=0)'
    # An old version predates a check; a version newer than the server's is the server's.
    probe = {
        "containers": containers({"livenessProbe": {"httpGet": {"host": "10.0.0.1", "port": 80}}})
    }
    assert detail("baseline", probe, version=(1, 40)) == ""
    assert detail("baseline", probe, newest=(1, 37)) == (
        'probe or lifecycle host (container "c0" uses probe or lifecycle host "10.0.0.1")'
    )
    user_ns = {
        "hostUsers": False,
        "containers": containers({"securityContext": {"procMount": "Unmasked"}}),
    }
    assert detail("baseline", user_ns, newest=(1, 37)) == ""
    assert detail("baseline", user_ns, version=(1, 34), newest=(1, 37)).startswith("procMount")


def test_seccomp_annotations_before_1_19_and_fields_after() -> None:
    spec = {"containers": containers({})}
    meta = {"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}}
    assert detail("baseline", spec, version=(1, 18), metadata=meta) == (
        "seccompProfile (forbidden annotation"
        ' seccomp.security.alpha.kubernetes.io/pod="unconfined")'
    )
    assert detail("baseline", spec, version=(1, 19), metadata=meta) == ""


def test_windows_pods_skip_linux_only_restricted_checks() -> None:
    spec = {
        "os": {"name": "windows"},
        "securityContext": {"runAsNonRoot": True},
        "containers": containers({}),
    }
    assert detail("restricted", spec) == ""
    assert "allowPrivilegeEscalation" in detail("restricted", spec, version=(1, 24))


def test_labels_choose_the_policy_and_fail_closed_for_enforce() -> None:
    policy, errors = policy_from_labels({}, SECURE_DEFAULTS)
    assert (policy, errors) == (SECURE_DEFAULTS, [])
    policy, errors = policy_from_labels(
        {P + "enforce": "bogus", P + "warn": "nope"}, SECURE_DEFAULTS
    )
    assert (str(policy.enforce), str(policy.warn)) == ("restricted:latest", "privileged:latest")
    assert [e.label for e in errors] == [P + "enforce", P + "warn"]
    policy, errors = policy_from_labels({P + "enforce-version": "v1.x"}, SECURE_DEFAULTS)
    assert str(policy.enforce) == "baseline:latest"
    assert str(errors[0]) == (
        f'metadata.labels[{P}enforce-version]: Invalid value: "v1.x": must be "latest" or "v1.x"'
    )
    # A namespace enforcing more than the default warns at that level too.
    privileged = PodSecurityConfig.from_mapping({"enforce": "privileged", "warn": "privileged"})
    policy, _ = policy_from_labels(
        {P + "enforce": "baseline", P + "enforce-version": "v1.25"}, privileged.defaults
    )
    assert str(policy.warn) == "baseline:v1.25"


def review(config: PodSecurityConfig, pod: dict[str, Any], user: str = "alice") -> list[str]:
    async def namespace(name: str) -> dict[str, Any]:
        return {"metadata": {"name": name}}

    async def pods(name: str) -> list[dict[str, Any]]:
        return []

    psa = PodSecurityAdmission(config, read_namespace=namespace, list_pods=pods)
    rd = TABLE.lookup("", "v1", "pods")
    assert rd is not None
    with client_warnings.collecting() as warnings:
        asyncio.run(
            psa.review(
                UserInfo(user), "create", rd, subresource="", namespace="apps", name="p", new=pod
            )
        )
    return warnings


def test_exempt_users_and_runtime_classes_are_not_checked() -> None:
    spec: dict[str, Any] = {"hostPID": True, "containers": containers({})}
    hostile = {"metadata": {"name": "p"}, "spec": spec}
    config = PodSecurityConfig.from_mapping(
        {"exemptions": {"usernames": ["ci"], "runtimeClasses": ["vm"]}}
    )
    with pytest.raises(ApiError) as refused:
        review(config, hostile)
    assert refused.value.code == 403
    assert review(config, hostile, user="ci") == []
    assert review(config, {**hostile, "spec": {**spec, "runtimeClassName": "vm"}}) == []


def test_remembered_verdicts_still_see_the_annotations_checks_read() -> None:
    evaluator = Evaluator()
    spec = {"containers": containers({})}
    baseline = LevelVersion("baseline", (1, 18))
    assert evaluator.evaluate(baseline, {"name": "a"}, spec).allowed
    assert evaluator.evaluate(baseline, {"name": "b", "labels": {"x": "y"}}, spec).allowed
    unconfined = {"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}}
    assert not evaluator.evaluate(baseline, unconfined, spec).allowed
    apparmor = {"annotations": {"container.apparmor.security.beta.kubernetes.io/c0": "unconfined"}}
    assert not evaluator.evaluate(LevelVersion("baseline"), apparmor, spec).allowed
    assert evaluator.evaluate(LevelVersion("baseline"), {}, spec).allowed
