"""The review APIs: create-only, nothing stored, answered from who is asking.

* ``authentication.k8s.io/v1 selfsubjectreviews`` (``kubectl auth whoami``): the caller's
  user name, uid and groups as the server authenticated them (after impersonation).
* ``authorization.k8s.io/v1 selfsubjectaccessreviews`` / ``subjectaccessreviews`` (``kubectl
  auth can-i VERB RESOURCE``): one decision of the authorizer.
* ``authorization.k8s.io/v1 selfsubjectrulesreviews`` (``kubectl auth can-i --list``): every
  rule the caller holds in a namespace (:func:`rules_review`).

Every review is authorized as a ``create`` of its resource before its body is read, as any
write is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from berth.api.meta import Obj

from .auth import UserInfo
from .bodies import read_body
from .errors import ApiError, bad_request, method_not_allowed, route_not_found
from .rbac import Attributes, RbacAuthorizer

AUTHENTICATION = "authentication.k8s.io"
AUTHORIZATION = "authorization.k8s.io"
RBAC_API = "rbac.authorization.k8s.io"
NODE_RULES_UNKNOWN = "node authorizer does not support user rule resolution"
"""Upstream's evaluation error for a node identity: the node authorizer decides from its graph
of pods, Secrets and volumes per request and cannot list what it would allow."""


@dataclass(frozen=True, slots=True)
class ReviewKind:
    group: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/v1"

    def discovery_entry(self) -> dict[str, Any]:
        return {
            "name": self.plural,
            "singularName": self.kind.lower(),
            "namespaced": False,
            "kind": self.kind,
            "verbs": ["create"],
        }


SELF_SUBJECT_REVIEW = ReviewKind(AUTHENTICATION, "selfsubjectreviews", "SelfSubjectReview")
SELF_SUBJECT_ACCESS_REVIEW = ReviewKind(
    AUTHORIZATION, "selfsubjectaccessreviews", "SelfSubjectAccessReview"
)
SELF_SUBJECT_RULES_REVIEW = ReviewKind(
    AUTHORIZATION, "selfsubjectrulesreviews", "SelfSubjectRulesReview"
)
SUBJECT_ACCESS_REVIEW = ReviewKind(AUTHORIZATION, "subjectaccessreviews", "SubjectAccessReview")
REVIEWS: tuple[ReviewKind, ...] = (
    SELF_SUBJECT_REVIEW,
    SELF_SUBJECT_ACCESS_REVIEW,
    SELF_SUBJECT_RULES_REVIEW,
    SUBJECT_ACCESS_REVIEW,
)
GROUP_VERSIONS: tuple[tuple[str, str], ...] = ((AUTHENTICATION, "v1"), (AUTHORIZATION, "v1"))
"""The group-versions that hold only reviews (discovery lists them beside the stored kinds)."""


def discovery_resources(group: str, version: str) -> list[dict[str, Any]]:
    """The ``APIResourceList`` entries of the reviews served in ``group``/``version``."""
    if version != "v1":
        return []
    return [r.discovery_entry() for r in REVIEWS if r.group == group]


def serves(group: str, version: str) -> bool:
    return (group, version) in GROUP_VERSIONS


Handler = Callable[[UserInfo, Obj, RbacAuthorizer], Obj]


async def serve(
    request: web.Request,
    user: UserInfo,
    authorizer: RbacAuthorizer,
    group: str,
    rest: list[str],
) -> tuple[web.Response, tuple[str, str]]:
    """Answer ``POST /apis/{group}/v1/{plural}`` for a review; 404 for any other path under
    these groups, 405 for another method on a review."""
    review = next((r for r in REVIEWS if r.group == group and [r.plural] == rest), None)
    if review is None:
        raise route_not_found()
    if request.method != "POST":
        raise method_not_allowed(request.method)
    check = Attributes(
        user=user, verb="create", resource_request=True, api_group=group, resource=review.plural
    )
    if not authorizer.allowed(check):  # before the body is read, as for any write
        raise ApiError(
            403,
            "Forbidden",
            f'{review.plural}.{group} is forbidden: User "{user.name}" cannot create resource'
            f' "{review.plural}" in API group "{group}" at the cluster scope',
            details={"group": group, "kind": review.plural},
        )
    body = _review_body(await read_body(request), review)
    result = HANDLERS[review.plural](user, body, authorizer)
    return web.Response(body=orjson.dumps(result), status=201, content_type="application/json"), (
        "CREATE",
        review.plural,
    )


def _review_body(body: Any, review: ReviewKind) -> Obj:
    if not isinstance(body, dict):
        raise bad_request(f"a {review.kind} must be a JSON object")
    kind, api_version = body.get("kind"), body.get("apiVersion")
    if kind not in (None, "", review.kind):
        raise bad_request(f"the body is a {kind!r}, not a {review.kind}")
    if api_version not in (None, "", review.api_version):
        raise bad_request(
            f"the API version in the data ({api_version}) does not match the expected API"
            f" version ({review.api_version})"
        )
    if not isinstance(body.get("metadata") or {}, dict):
        raise bad_request(f"metadata of a {review.kind} must be an object")
    spec = body.get("spec") or {}
    if not isinstance(spec, dict):
        raise bad_request(f"spec of a {review.kind} must be an object")
    return body


# -- authentication.k8s.io ----------------------------------------------------------------------


def self_subject_review(user: UserInfo, body: Obj, authorizer: RbacAuthorizer) -> Obj:
    """Who the server thinks the caller is (upstream leaves ``uid`` and ``extra`` out when
    empty; berth's identities carry no extra attributes)."""
    del body, authorizer
    info: Obj = {"username": user.name}
    if user.uid:
        info["uid"] = user.uid
    if user.groups:
        info["groups"] = list(user.groups)
    return {
        "kind": SELF_SUBJECT_REVIEW.kind,
        "apiVersion": SELF_SUBJECT_REVIEW.api_version,
        "metadata": {
            "creationTimestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "status": {"userInfo": info},
    }


# -- authorization.k8s.io: access reviews ------------------------------------------------------


def access_review(user: UserInfo, body: Obj, authorizer: RbacAuthorizer, *, of_self: bool) -> Obj:
    """One decision: may the subject (the caller for a self review, else ``spec.user`` in
    ``spec.groups``) do what ``spec.resourceAttributes`` or ``nonResourceAttributes``
    describes?"""
    spec = body.get("spec") or {}
    subject = user
    if not of_self:
        groups = spec.get("groups") or []
        if not isinstance(groups, list):
            raise bad_request("spec.groups of a subject access review must be a list")
        subject = UserInfo(str(spec.get("user", "")), tuple(str(g) for g in groups))
    ra = spec.get("resourceAttributes")
    nra = spec.get("nonResourceAttributes")
    if isinstance(ra, dict):
        attrs = Attributes(
            user=subject,
            verb=str(ra.get("verb", "")),
            resource_request=True,
            api_group=str(ra.get("group", "")),
            resource=str(ra.get("resource", "")),
            subresource=str(ra.get("subresource", "")),
            namespace=str(ra.get("namespace", "")),
            name=str(ra.get("name", "")),
        )
    elif isinstance(nra, dict):
        attrs = Attributes(
            user=subject,
            verb=str(nra.get("verb", "")),
            resource_request=False,
            path=str(nra.get("path", "")),
        )
    else:
        raise bad_request("spec.resourceAttributes or spec.nonResourceAttributes is required")
    allowed = authorizer.allowed(attrs)
    body["status"] = {"allowed": allowed, **({"reason": "allowed by RBAC"} if allowed else {})}
    body["metadata"] = {**(body.get("metadata") or {}), "creationTimestamp": None}
    return body


def _subject_access_review(user: UserInfo, body: Obj, authorizer: RbacAuthorizer) -> Obj:
    return access_review(user, body, authorizer, of_self=False)


def _self_subject_access_review(user: UserInfo, body: Obj, authorizer: RbacAuthorizer) -> Obj:
    return access_review(user, body, authorizer, of_self=True)


# -- authorization.k8s.io: rules review ---------------------------------------------------------


def self_subject_rules_review(user: UserInfo, body: Obj, authorizer: RbacAuthorizer) -> Obj:
    """Every rule the caller holds in ``spec.namespace`` (400 without one, as upstream)."""
    namespace = (body.get("spec") or {}).get("namespace")
    if not isinstance(namespace, str) or not namespace:
        raise bad_request("no namespace on request")
    return {
        "kind": SELF_SUBJECT_RULES_REVIEW.kind,
        "apiVersion": SELF_SUBJECT_RULES_REVIEW.api_version,
        "metadata": {"creationTimestamp": None},
        "spec": {},
        "status": rules_review(authorizer, user, namespace),
    }


def rules_review(authorizer: RbacAuthorizer, user: UserInfo, namespace: str) -> Obj:
    """A ``SubjectRulesReviewStatus``: the authorizers in their order (node, then RBAC), each
    adding what it can enumerate. The node authorizer enumerates nothing for a node, so a
    node's list is ``incomplete``; RBAC lists every rule of every binding that names the user
    (its ClusterRoleBindings, then its RoleBindings in ``namespace``), and reports a binding
    whose role is missing as an evaluation error."""
    errors: list[str] = []
    incomplete = False
    if user.node_name is not None:
        incomplete = True
        errors.append(NODE_RULES_UNKNOWN)
    rules, missing = resolve_rbac_rules(authorizer, user, namespace)
    errors.extend(missing)
    status: Obj = {
        "resourceRules": [r for r in map(_resource_rule, rules) if r is not None],
        "nonResourceRules": [r for r in map(_non_resource_rule, rules) if r is not None],
        "incomplete": incomplete,
    }
    if errors:
        status["evaluationError"] = errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]"
    return status


def resolve_rbac_rules(
    authorizer: RbacAuthorizer, user: UserInfo, namespace: str
) -> tuple[list[Obj], list[str]]:
    """The RBAC rules ``user`` holds in ``namespace`` and, for each binding naming the user
    whose role does not exist, upstream's error for it."""
    rules: list[Obj] = []
    missing: list[str] = []
    for _, binding in sorted(authorizer.cluster_bindings.items()):
        if authorizer._binding_applies(binding, user, ""):
            role = _role_name(binding)
            held = authorizer.cluster_roles.get(role)
            if held is None:
                missing.append(f'clusterrole.{RBAC_API} "{role}" not found')
            rules.extend(held or [])
    for (ns, _), binding in sorted(authorizer.bindings.items()):
        if ns != namespace or not authorizer._binding_applies(binding, user, ns):
            continue
        role = _role_name(binding)
        if (binding.get("roleRef") or {}).get("kind") == "ClusterRole":
            held = authorizer.cluster_roles.get(role)
            what = "clusterrole"
        else:
            held = authorizer.roles.get((ns, role))
            what = "role"
        if held is None:
            missing.append(f'{what}.{RBAC_API} "{role}" not found')
        rules.extend(held or [])
    return rules, missing


def _role_name(binding: Obj) -> str:
    ref = binding.get("roleRef")
    return str(ref.get("name", "")) if isinstance(ref, dict) else ""


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _resource_rule(rule: Any) -> Obj | None:
    """A ``ResourceRule`` from a PolicyRule naming resources (empty lists left out)."""
    if not isinstance(rule, dict) or not _strings(rule.get("resources")):
        return None
    out: Obj = {"verbs": _strings(rule.get("verbs"))}
    for key in ("apiGroups", "resources", "resourceNames"):
        values = _strings(rule.get(key))
        if values:
            out[key] = values
    return out


def _non_resource_rule(rule: Any) -> Obj | None:
    if not isinstance(rule, dict) or not _strings(rule.get("nonResourceURLs")):
        return None
    return {
        "verbs": _strings(rule.get("verbs")),
        "nonResourceURLs": _strings(rule.get("nonResourceURLs")),
    }


HANDLERS: dict[str, Handler] = {
    SELF_SUBJECT_REVIEW.plural: self_subject_review,
    SELF_SUBJECT_ACCESS_REVIEW.plural: _self_subject_access_review,
    SUBJECT_ACCESS_REVIEW.plural: _subject_access_review,
    SELF_SUBJECT_RULES_REVIEW.plural: self_subject_rules_review,
}
