"""RBAC authorization over Role/ClusterRole/RoleBinding/ClusterRoleBinding, plus the bootstrap
policy the control-plane components need.

The authorizer keeps an in-memory copy of the RBAC objects, fed by the server's watch hub, so
an authorization decision never reads the store. ``system:masters`` is always allowed (as in
kube-apiserver), so an operator cannot lock themselves out by deleting a binding.
"""

from __future__ import annotations

from typing import Any

from berth.api.meta import Obj
from berth.api.values import value_class

from .auth import UserInfo
from .component_roles import (
    controller_manager_rules,
    ingress_rules,
    network_policy_rules,
    node_proxier_rules,
    scheduler_rules,
    vip_holder_rules,
)
from .noderules import SYSTEM_NODE_ROLE_RULES

RBAC_GROUP = "rbac.authorization.k8s.io"


@value_class
class Attributes:
    """What a request wants to do."""

    user: UserInfo
    verb: str
    resource_request: bool
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    field_selector: str = ""  # list/watch: the raw fieldSelector (the node authorizer reads it)


def _has(values: Any, wanted: str) -> bool:
    return isinstance(values, list) and ("*" in values or wanted in values)


def rule_allows(rule: Obj, attrs: Attributes) -> bool:
    if not _has(rule.get("verbs"), attrs.verb):
        return False
    if not attrs.resource_request:
        for url in rule.get("nonResourceURLs") or []:
            if url in ("*", attrs.path):
                return True
            if url.endswith("*") and attrs.path.startswith(url[:-1]):
                return True
        return False
    if not _has(rule.get("apiGroups"), attrs.api_group):
        return False
    resources = rule.get("resources") or []
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    if not (
        "*" in resources
        or combined in resources
        or (attrs.subresource and f"*/{attrs.subresource}" in resources)
    ):
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


def _subject_matches(subject: Obj, user: UserInfo, binding_namespace: str) -> bool:
    kind = subject.get("kind")
    name = subject.get("name")
    if kind == "User":
        return name == user.name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_namespace
        return user.name == f"system:serviceaccount:{ns}:{name}"
    return False


class RbacAuthorizer:
    """Answers "may this user do this?" from cached RBAC objects."""

    def __init__(self) -> None:
        self.cluster_roles: dict[str, list[Obj]] = {}
        self.roles: dict[tuple[str, str], list[Obj]] = {}
        self.cluster_bindings: dict[str, Obj] = {}
        self.bindings: dict[tuple[str, str], Obj] = {}

    # -- cache maintenance -----------------------------------------------------------------

    def apply(self, kind: str, obj: Obj, *, deleted: bool) -> None:
        """Update the cache with one RBAC object (from the initial list or a watch event)."""
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        ns = str(meta.get("namespace", ""))
        if kind == "ClusterRole":
            self._set(self.cluster_roles, name, obj.get("rules") or [], deleted)
        elif kind == "Role":
            self._set(self.roles, (ns, name), obj.get("rules") or [], deleted)
        elif kind == "ClusterRoleBinding":
            self._set(self.cluster_bindings, name, obj, deleted)
        elif kind == "RoleBinding":
            self._set(self.bindings, (ns, name), obj, deleted)

    @staticmethod
    def _set(d: dict[Any, Any], key: Any, value: Any, deleted: bool) -> None:
        if deleted:
            d.pop(key, None)
        else:
            d[key] = value

    # -- decisions ---------------------------------------------------------------------------

    def allowed(self, attrs: Attributes) -> bool:
        user = attrs.user
        if user.is_master:
            return True
        for binding in self.cluster_bindings.values():
            if self._binding_applies(binding, user, ""):
                ref = binding.get("roleRef") or {}
                for rule in self.cluster_roles.get(str(ref.get("name")), []):
                    if rule_allows(rule, attrs):
                        return True
        if attrs.resource_request and attrs.namespace:
            for (ns, _), binding in self.bindings.items():
                if ns != attrs.namespace or not self._binding_applies(binding, user, ns):
                    continue
                ref = binding.get("roleRef") or {}
                if ref.get("kind") == "ClusterRole":
                    rules = self.cluster_roles.get(str(ref.get("name")), [])
                else:
                    rules = self.roles.get((ns, str(ref.get("name"))), [])
                for rule in rules:
                    if rule_allows(rule, attrs):
                        return True
        return False

    def rules_for(self, user: UserInfo, namespace: str) -> list[Obj]:
        """Every rule ``user`` holds in ``namespace`` (cluster-wide only when ``""``): the
        rules of her ClusterRoleBindings, plus those of her RoleBindings in ``namespace``."""
        rules: list[Obj] = []
        for binding in self.cluster_bindings.values():
            if self._binding_applies(binding, user, ""):
                ref = binding.get("roleRef") or {}
                rules += self.cluster_roles.get(str(ref.get("name")), [])
        if namespace:
            for (ns, _), binding in self.bindings.items():
                if ns != namespace or not self._binding_applies(binding, user, ns):
                    continue
                ref = binding.get("roleRef") or {}
                if ref.get("kind") == "ClusterRole":
                    rules += self.cluster_roles.get(str(ref.get("name")), [])
                else:
                    rules += self.roles.get((ns, str(ref.get("name"))), [])
        return rules

    @staticmethod
    def _binding_applies(binding: Obj, user: UserInfo, ns: str) -> bool:
        return any(
            isinstance(s, dict) and _subject_matches(s, user, ns)
            for s in binding.get("subjects") or []
        )


# --- bootstrap policy ------------------------------------------------------------------------


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> Obj:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


READ = ["get", "list", "watch"]
EVENTS = _rule(["", "events.k8s.io"], ["events"], ["create", "patch", "update"])
LEASES_RW = _rule(
    ["coordination.k8s.io"],
    ["leases"],
    ["get", "list", "watch", "create", "update", "patch", "delete"],
)


def _cluster_role(name: str, rules: list[Obj]) -> Obj:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
        "rules": rules,
    }


def _cluster_binding(name: str, role: str, subjects: list[Obj]) -> Obj:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    }


def _user(name: str) -> Obj:
    return {"apiGroup": RBAC_GROUP, "kind": "User", "name": name}


def _group(name: str) -> Obj:
    return {"apiGroup": RBAC_GROUP, "kind": "Group", "name": name}


def bootstrap_policy() -> list[Obj]:
    """ClusterRoles and ClusterRoleBindings created at server start when absent."""
    discovery = [
        {
            "nonResourceURLs": [
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/version",
                "/version/",
                "/healthz",
                "/livez",
                "/readyz",
                "/openapi",
                "/openapi/*",
            ],
            "verbs": ["get"],
        }
    ]
    roles = [
        _cluster_role(
            "cluster-admin",
            [
                _rule(["*"], ["*"], ["*"]),
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        ),
        _cluster_role("system:discovery", discovery),
        _cluster_role(
            "system:basic-user",
            [
                _rule(
                    ["authorization.k8s.io"],
                    ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    ["create"],
                ),
                _rule(["authentication.k8s.io"], ["selfsubjectreviews"], ["create"]),
            ],
        ),
        _cluster_role(
            "view",
            [
                _rule(
                    ["", "apps", "coordination.k8s.io"],
                    [
                        "pods",
                        "pods/log",
                        "services",
                        "endpoints",
                        "configmaps",
                        "events",
                        "serviceaccounts",
                        "namespaces",
                        "deployments",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/scale",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "replicationcontrollers/status",
                        "daemonsets",
                        "leases",
                    ],
                    READ,
                ),
                _rule(["autoscaling"], ["horizontalpodautoscalers"], READ),
                # what metrics-server's aggregated-metrics-reader adds to view: kubectl top
                _rule(["metrics.k8s.io"], ["pods", "nodes"], READ),
            ],
        ),
        _cluster_role("system:kube-scheduler", scheduler_rules()),
        # The controller manager runs every controller in one process with one identity: the
        # union of its controllers' rights (see component_roles for what that implies).
        _cluster_role("system:kube-controller-manager", controller_manager_rules()),
        _cluster_role("system:node-proxier", node_proxier_rules()),
        _cluster_role("system:berth-network-policy", network_policy_rules()),
        _cluster_role("system:berth-vip", vip_holder_rules()),
        _cluster_role("system:berth-ingress", ingress_rules()),
        # Nodes are authorized by the node authorizer (nodeauthz.py), not by this role: as
        # upstream, it exists for operators to bind elsewhere and is bound to nobody.
        _cluster_role("system:node", [dict(r) for r in SYSTEM_NODE_ROLE_RULES]),
    ]
    _add_service_account_token_rules(roles)
    bindings = [
        _cluster_binding("cluster-admin", "cluster-admin", [_group("system:masters")]),
        _cluster_binding("system:discovery", "system:discovery", [_group("system:authenticated")]),
        _cluster_binding(
            "system:basic-user", "system:basic-user", [_group("system:authenticated")]
        ),
        _cluster_binding(
            "system:kube-scheduler", "system:kube-scheduler", [_user("system:kube-scheduler")]
        ),
        _cluster_binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            [_user("system:kube-controller-manager")],
        ),
        _cluster_binding(
            "system:node-proxier", "system:node-proxier", [_user("system:kube-proxy")]
        ),
        _cluster_binding("system:berth-vip", "system:berth-vip", [_user("system:berth-vip")]),
        _cluster_binding(
            "system:berth-network-policy",
            "system:berth-network-policy",
            [_user("system:kube-proxy")],
        ),
        _cluster_binding(
            "system:berth-ingress", "system:berth-ingress", [_user("system:berth-ingress")]
        ),
        _cluster_binding("system:node", "system:node", []),
    ]
    return roles + bindings


# -- service-account tokens (issue 13 point 6) ---------------------------------------------------


def _add_service_account_token_rules(roles: list[Obj]) -> None:
    """A node requests the projected tokens of the pods it runs (the API server's token
    request handler narrows that to pods bound to the node, as NodeRestriction does)."""
    for role in roles:
        if role["metadata"]["name"] == "system:node":
            role["rules"].append(_rule([""], ["serviceaccounts/token"], ["create"]))
