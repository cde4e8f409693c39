"""A tenant allowed to write RBAC objects cannot grant herself (or anyone) more than she holds.

Issue 13 point 2: with only ``create rolebindings`` a user bound ``cluster-admin`` to herself.
kube-apiserver's escalation prevention now applies on every write path (POST, PUT, every PATCH
type including apply, dry-run): a role may grant only what its writer holds (or she has
``escalate``), a binding may refer only to a role whose permissions its writer holds (or she
has ``bind`` on it), and a binding's roleRef never changes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness.apiserver import ServerHandle
from tests.integration.apiserver.helpers import Raw
from tests.security.helpers import groupless_clients

pytestmark = pytest.mark.timeout(120)

RBAC = "/apis/rbac.authorization.k8s.io/v1"
GROUP = "rbac.authorization.k8s.io"
EVERYTHING = [
    {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
    {"nonResourceURLs": ["*"], "verbs": ["*"]},
]
NOT_HELD = "is attempting to grant RBAC permissions not currently held"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


@pytest.fixture
def as_user(server: ServerHandle) -> Iterator[Any]:
    yield from groupless_clients(server)


def _ok(result: tuple[int, Any], *codes: int) -> Any:
    status, body = result
    assert status in (codes or (200, 201)), body
    return body


def _role(name: str, rules: list[Any], *, namespace: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Role" if namespace else "ClusterRole",
        "metadata": meta,
        "rules": rules,
    }


def _binding(
    name: str, role_kind: str, role: str, user: str, *, namespace: str = ""
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "RoleBinding" if namespace else "ClusterRoleBinding",
        "metadata": meta,
        "roleRef": {"apiGroup": GROUP, "kind": role_kind, "name": role},
        "subjects": [{"apiGroup": GROUP, "kind": "User", "name": user}],
    }


def _path(kind: str, namespace: str = "", name: str = "") -> str:
    plural = {
        "Role": "roles",
        "ClusterRole": "clusterroles",
        "RoleBinding": "rolebindings",
        "ClusterRoleBinding": "clusterrolebindings",
    }[kind]
    base = f"{RBAC}/namespaces/{namespace}/{plural}" if namespace else f"{RBAC}/{plural}"
    return f"{base}/{name}" if name else base


def _can(admin: Raw, user: str, namespace: str, rule: dict[str, Any]) -> bool:
    attrs = {
        "verb": rule["verbs"][0],
        "group": rule["apiGroups"][0],
        "resource": rule["resources"][0],
        "namespace": namespace,
        "name": (rule.get("resourceNames") or [""])[0],
    }
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": ["system:authenticated"], "resourceAttributes": attrs},
    }
    body = _ok(admin.json("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review))
    return bool(body["status"]["allowed"])


def _grant(admin: Raw, user: str, rules: list[Any], *, namespace: str = "") -> None:
    """Give ``user`` ``rules`` (in ``namespace``, or cluster-wide), as the admin, and wait
    until the authorizer's cache has them (it follows the store's watch)."""
    name = f"{user}-rights-{len(rules)}-{time.monotonic_ns()}"
    kind = "Role" if namespace else "ClusterRole"
    _ok(admin.json("POST", _path(kind, namespace), _role(name, rules, namespace=namespace)))
    binding = _binding(name, kind, name, user, namespace=namespace)
    _ok(admin.json("POST", _path(binding["kind"], namespace), binding))
    deadline = time.monotonic() + 30  # the authorizer follows the store (load)
    while not all(_can(admin, user, namespace, r) for r in rules if "resources" in r):
        assert time.monotonic() < deadline, f"{user} never got {rules}"
        time.sleep(0.02)


def _namespace(admin: Raw, name: str) -> str:
    _ok(admin.json("POST", "/api/v1/namespaces", {"metadata": {"name": name}}))
    return name


def _forbidden(result: tuple[int, Any]) -> str:
    status, body = result
    assert status == 403, body
    assert body["reason"] == "Forbidden"
    return str(body["message"])


def _every_update_forbidden(
    client: Raw, user: str, path: str, field: str, items: list[Any], applied: dict[str, Any]
) -> None:
    """Setting list ``field`` of the object at ``path`` to ``items`` is refused by every update
    route: PUT, merge, strategic and JSON patch (appending ``items[0]``), a forced apply of
    ``applied``, and a dry-run merge patch."""
    current = _ok(client.json("GET", path))
    _forbidden(client.json("PUT", path, {**current, field: items}))
    _forbidden(client.json("PATCH", path, {field: items}, content_type=MERGE))
    _forbidden(client.json("PATCH", path, {field: items}, content_type=STRATEGIC))
    append = [{"op": "add", "path": f"/{field}/-", "value": items[0]}]
    _forbidden(client.json("PATCH", path, append, content_type=JSON_PATCH))
    forced = f"{path}?fieldManager={user}&force=true"
    _forbidden(client.json("PATCH", forced, applied, content_type=APPLY))
    _forbidden(client.json("PATCH", path + "?dryRun=All", {field: items}, content_type=MERGE))


def _rule(group: str, resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": [group], "resources": resources, "verbs": verbs}


CREATE_ROLEBINDINGS = _rule(GROUP, ["rolebindings"], ["create"])


# --- bindings ----------------------------------------------------------------------------------


def test_rolebinding_to_cluster_admin_is_refused(admin: Raw, as_user: Any) -> None:
    ns = _namespace(admin, "esc-rb")
    _grant(admin, "alice", [CREATE_ROLEBINDINGS], namespace=ns)
    alice = as_user("alice")
    message = _forbidden(
        alice.json(
            "POST",
            _path("RoleBinding", ns),
            _binding("mine", "ClusterRole", "cluster-admin", "alice", namespace=ns),
        )
    )
    assert message == (
        'rolebindings.rbac.authorization.k8s.io "mine" is forbidden: user "alice"'
        ' (groups=["system:authenticated"]) is attempting to grant RBAC permissions not'
        ' currently held:\n{APIGroups:["*"], Resources:["*"], Verbs:["*"]}\n'
        '{NonResourceURLs:["*"], Verbs:["*"]}'
    )
    # nothing was stored, and dry-run is refused the same way
    status, _ = admin.json("GET", _path("RoleBinding", ns, "mine"))
    assert status == 404
    _forbidden(
        alice.json(
            "POST",
            _path("RoleBinding", ns) + "?dryRun=All",
            _binding("mine", "ClusterRole", "cluster-admin", "alice", namespace=ns),
        )
    )
    # apply-patch creating the binding goes through the same check
    _grant(admin, "alice", [_rule(GROUP, ["rolebindings"], ["patch"])], namespace=ns)
    _forbidden(
        alice.json(
            "PATCH",
            _path("RoleBinding", ns, "mine") + "?fieldManager=alice",
            _binding("mine", "ClusterRole", "cluster-admin", "alice", namespace=ns),
            content_type=APPLY,
        )
    )
    status, _ = alice.json("GET", f"/api/v1/namespaces/{ns}/secrets")
    assert status == 403


def test_clusterrolebinding_to_cluster_admin_is_refused(admin: Raw, as_user: Any) -> None:
    _grant(admin, "bert", [_rule(GROUP, ["clusterrolebindings"], ["create"])])
    bert = as_user("bert")
    message = _forbidden(
        bert.json(
            "POST",
            _path("ClusterRoleBinding"),
            _binding("bert-admin", "ClusterRole", "cluster-admin", "bert"),
        )
    )
    assert NOT_HELD in message
    assert message.startswith('clusterrolebindings.rbac.authorization.k8s.io "bert-admin"')
    # nor the controller manager's or a node's powers
    for role in ("system:kube-controller-manager", "system:node"):
        _forbidden(
            bert.json(
                "POST",
                _path("ClusterRoleBinding"),
                _binding(f"b-{role}", "ClusterRole", role, "bert"),
            )
        )


def test_binding_a_role_she_holds_is_allowed_one_more_permission_is_not(
    admin: Raw, as_user: Any
) -> None:
    ns = _namespace(admin, "esc-held")
    read_pods = _rule("", ["pods"], ["get", "list"])
    _grant(admin, "carla", [CREATE_ROLEBINDINGS, read_pods], namespace=ns)
    _ok(admin.json("POST", _path("Role", ns), _role("pod-reader", [read_pods], namespace=ns)))
    _ok(
        admin.json(
            "POST",
            _path("Role", ns),
            _role("pod-deleter", [_rule("", ["pods"], ["get", "delete"])], namespace=ns),
        )
    )
    carla = as_user("carla")
    _ok(
        carla.json(
            "POST",
            _path("RoleBinding", ns),
            _binding("dave-reads", "Role", "pod-reader", "dave", namespace=ns),
        )
    )
    message = _forbidden(
        carla.json(
            "POST",
            _path("RoleBinding", ns),
            _binding("dave-deletes", "Role", "pod-deleter", "dave", namespace=ns),
        )
    )
    assert message.endswith('{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}')
    # what she holds in another namespace does not count here
    other = _namespace(admin, "esc-held-other")
    _grant(admin, "carla", [CREATE_ROLEBINDINGS], namespace=other)
    _forbidden(
        carla.json(
            "POST",
            _path("RoleBinding", other),
            _binding("dave-reads", "ClusterRole", "view", "dave", namespace=other),
        )
    )
    # a role that does not exist is a 404 (as upstream), not a free pass
    status, body = carla.json(
        "POST",
        _path("RoleBinding", ns),
        _binding("ghost", "Role", "no-such-role", "dave", namespace=ns),
    )
    assert status == 404, body


def test_bind_verb_allows_binding_the_named_role_only(admin: Raw, as_user: Any) -> None:
    ns = _namespace(admin, "esc-bind")
    _grant(admin, "erin", [CREATE_ROLEBINDINGS], namespace=ns)
    erin = as_user("erin")
    view = _binding("frank-views", "ClusterRole", "view", "frank", namespace=ns)
    _forbidden(erin.json("POST", _path("RoleBinding", ns), view))
    _grant(
        admin,
        "erin",
        [{**_rule(GROUP, ["clusterroles"], ["bind"]), "resourceNames": ["view"]}],
        namespace=ns,
    )
    _ok(erin.json("POST", _path("RoleBinding", ns), view))
    # resourceNames are honoured: bind on "view" is not bind on cluster-admin
    _forbidden(
        erin.json(
            "POST",
            _path("RoleBinding", ns),
            _binding("frank-admin", "ClusterRole", "cluster-admin", "frank", namespace=ns),
        )
    )


def test_updates_and_patches_of_a_binding_are_checked(admin: Raw, as_user: Any) -> None:
    ns = _namespace(admin, "esc-rb-update")
    # an admin binding of cluster-admin to someone else; gina may edit rolebindings
    _ok(
        admin.json(
            "POST",
            _path("RoleBinding", ns),
            _binding("admins", "ClusterRole", "cluster-admin", "root", namespace=ns),
        )
    )
    _grant(
        admin,
        "gina",
        [_rule(GROUP, ["rolebindings"], ["get", "update", "patch"])],
        namespace=ns,
    )
    gina = as_user("gina")
    path = _path("RoleBinding", ns, "admins")
    me = [{"apiGroup": GROUP, "kind": "User", "name": "gina"}]
    applied = _binding("admins", "ClusterRole", "cluster-admin", "gina", namespace=ns)
    _every_update_forbidden(gina, "gina", path, "subjects", me, applied)
    stored = _ok(admin.json("GET", path))
    assert [s["name"] for s in stored["subjects"]] == ["root"]


def test_role_ref_is_immutable(admin: Raw) -> None:
    ns = _namespace(admin, "esc-roleref")
    path = _path("RoleBinding", ns, "viewers")
    _ok(
        admin.json(
            "POST",
            _path("RoleBinding", ns),
            _binding("viewers", "ClusterRole", "view", "harry", namespace=ns),
        )
    )
    for result in (
        admin.json(
            "PATCH",
            path,
            {"roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "cluster-admin"}},
            content_type=MERGE,
        ),
        admin.json(
            "PUT", path, _binding("viewers", "ClusterRole", "cluster-admin", "harry", namespace=ns)
        ),
    ):
        status, body = result
        assert status == 422, body
        assert body["reason"] == "Invalid"
        assert "roleRef: Invalid value" in body["message"]
        assert "cannot change roleRef" in body["message"]
    assert _ok(admin.json("GET", path))["roleRef"]["name"] == "view"
    # the same for cluster role bindings
    crb = _path("ClusterRoleBinding", "", "harry-views")
    _ok(
        admin.json(
            "POST",
            _path("ClusterRoleBinding"),
            _binding("harry-views", "ClusterRole", "view", "harry"),
        )
    )
    status, body = admin.json(
        "PATCH", crb, {"roleRef": {"name": "cluster-admin"}}, content_type=MERGE
    )
    assert status == 422, body


def test_a_cluster_binding_must_refer_to_a_cluster_role(admin: Raw) -> None:
    """A ClusterRoleBinding "to a Role" named like a ClusterRole used to grant the ClusterRole."""
    status, body = admin.json(
        "POST", _path("ClusterRoleBinding"), _binding("odd", "Role", "cluster-admin", "ivan")
    )
    assert status == 422, body
    assert "roleRef.kind: Unsupported value" in body["message"]


# --- roles -------------------------------------------------------------------------------------


def test_role_granting_everything_is_refused(admin: Raw, as_user: Any) -> None:
    ns = _namespace(admin, "esc-role")
    _grant(admin, "jane", [_rule(GROUP, ["roles"], ["create"])], namespace=ns)
    jane = as_user("jane")
    message = _forbidden(
        jane.json("POST", _path("Role", ns), _role("all", [EVERYTHING[0]], namespace=ns))
    )
    assert message == (
        'roles.rbac.authorization.k8s.io "all" is forbidden: user "jane"'
        ' (groups=["system:authenticated"]) is attempting to grant RBAC permissions not'
        ' currently held:\n{APIGroups:["*"], Resources:["*"], Verbs:["*"]}'
    )
    # not even a single permission she lacks, nor a subresource of one she has
    _grant(admin, "jane", [_rule("", ["pods"], ["get"])], namespace=ns)
    _ok(
        jane.json(
            "POST",
            _path("Role", ns),
            _role("get-pods", [_rule("", ["pods"], ["get"])], namespace=ns),
        )
    )
    for rules in (
        [_rule("", ["secrets"], ["get"])],
        [_rule("", ["pods"], ["get", "delete"])],
        [_rule("", ["pods/exec"], ["get"])],
        [_rule("", ["pods"], ["*"])],
    ):
        _forbidden(jane.json("POST", _path("Role", ns), _role("more", rules, namespace=ns)))
    _forbidden(
        jane.json(
            "POST",
            _path("Role", ns) + "?dryRun=All",
            _role("all", [EVERYTHING[0]], namespace=ns),
        )
    )


def test_cluster_role_needs_cluster_wide_permissions(admin: Raw, as_user: Any) -> None:
    ns = _namespace(admin, "esc-clusterrole")
    # kate may read pods in one namespace only: not enough for a ClusterRole granting it
    _grant(admin, "kate", [_rule(GROUP, ["clusterroles"], ["create"])])
    _grant(admin, "kate", [_rule("", ["pods"], ["get"])], namespace=ns)
    kate = as_user("kate")
    _forbidden(
        kate.json("POST", _path("ClusterRole"), _role("kate-pods", [_rule("", ["pods"], ["get"])]))
    )
    _forbidden(kate.json("POST", _path("ClusterRole"), _role("kate-all", EVERYTHING)))
    _forbidden(
        kate.json(
            "POST",
            _path("ClusterRole"),
            _role("kate-metrics", [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]),
        )
    )
    # aggregationRule can gather anything: it needs everything
    aggregating = {
        **_role("kate-agg", []),
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]},
    }
    message = _forbidden(kate.json("POST", _path("ClusterRole"), aggregating))
    assert "must have cluster-admin privileges to use the aggregationRule" in message


def test_updates_and_patches_of_a_role_are_checked(admin: Raw, as_user: Any) -> None:
    ns = _namespace(admin, "esc-role-update")
    _grant(
        admin,
        "liam",
        [
            _rule(GROUP, ["roles"], ["create", "get", "update", "patch"]),
            _rule("", ["pods"], ["get"]),
        ],
        namespace=ns,
    )
    liam = as_user("liam")
    path = _path("Role", ns, "mine")
    _ok(
        liam.json(
            "POST", _path("Role", ns), _role("mine", [_rule("", ["pods"], ["get"])], namespace=ns)
        )
    )
    everything = [EVERYTHING[0]]
    applied = _role("mine", everything, namespace=ns)
    _every_update_forbidden(liam, "liam", path, "rules", everything, applied)
    # an apply that creates a new role is checked like a create
    _forbidden(
        liam.json(
            "PATCH",
            _path("Role", ns, "fresh") + "?fieldManager=liam",
            _role("fresh", everything, namespace=ns),
            content_type=APPLY,
        )
    )
    assert _ok(admin.json("GET", path))["rules"] == [_rule("", ["pods"], ["get"])]
    # a role she could not write may still get the garbage collector's fields changed (as
    # upstream: the GC must be able to remove finalizers and ownerReferences)
    _ok(admin.json("POST", _path("Role", ns), _role("big", everything, namespace=ns)))
    big = _path("Role", ns, "big")
    _ok(
        liam.json(
            "PATCH", big, {"metadata": {"finalizers": ["example.com/keep"]}}, content_type=MERGE
        )
    )
    _ok(liam.json("PATCH", big, {"metadata": {"finalizers": None}}, content_type=MERGE))
    _forbidden(liam.json("PATCH", big, {"metadata": {"labels": {"a": "b"}}}, content_type=MERGE))


def test_escalate_verb_allows_an_escalating_role(admin: Raw, as_user: Any) -> None:
    ns = _namespace(admin, "esc-escalate")
    _grant(admin, "mona", [_rule(GROUP, ["roles"], ["create", "update"])], namespace=ns)
    mona = as_user("mona")
    everything = _role("all", [EVERYTHING[0]], namespace=ns)
    _forbidden(mona.json("POST", _path("Role", ns), everything))
    _grant(admin, "mona", [_rule(GROUP, ["roles"], ["escalate"])], namespace=ns)
    created = _ok(mona.json("POST", _path("Role", ns), everything))
    _ok(mona.json("PUT", _path("Role", ns, "all"), created))
    # escalate in one namespace is not escalate in another
    other = _namespace(admin, "esc-escalate-other")
    _grant(admin, "mona", [_rule(GROUP, ["roles"], ["create"])], namespace=other)
    _forbidden(
        mona.json("POST", _path("Role", other), _role("all", [EVERYTHING[0]], namespace=other))
    )


def test_masters_bypass_the_check(admin: Raw) -> None:
    _ok(admin.json("POST", _path("ClusterRole"), _role("admin-made", EVERYTHING)))
    _ok(
        admin.json(
            "POST",
            _path("ClusterRoleBinding"),
            _binding("admin-made", "ClusterRole", "cluster-admin", "nora"),
        )
    )
