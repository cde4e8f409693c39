"""Set-up shared by the attack tests: a tenant with a namespaced Role, and clients for users
with no group (each opened over raw HTTPS, as an attacker would)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from tests.harness.apiserver import ServerHandle
from tests.integration.apiserver.helpers import Raw

RBAC = "rbac.authorization.k8s.io"


def bind_role(admin: Raw, namespace: str, user: str, role: str, rules: list[Any]) -> None:
    """Create Role ``role`` with ``rules`` in ``namespace`` and bind it to ``user`` (the
    RoleBinding is named after the user)."""
    role_obj = {"metadata": {"name": role}, "rules": rules}
    binding = {
        "metadata": {"name": user},
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": role},
        "subjects": [{"kind": "User", "name": user}],
    }
    for path, obj in (
        (f"/apis/{RBAC}/v1/namespaces/{namespace}/roles", role_obj),
        (f"/apis/{RBAC}/v1/namespaces/{namespace}/rolebindings", binding),
    ):
        status, _, body = admin.request("POST", path, obj)
        assert status == 201, body


def tenant_in_new_namespace(
    server: ServerHandle, namespace: str, role: str, rules: list[Any], *, user: str = "mallory"
) -> Raw:
    """Create ``namespace``, grant ``user`` the ``rules`` there, and return her client."""
    admin = Raw(server, server.client_cert("admin", ["system:masters"]))
    status, _, body = admin.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    assert status == 201, body
    bind_role(admin, namespace, user, role, rules)
    admin.close()
    return Raw(server, server.client_cert(user))


def groupless_clients(server: ServerHandle) -> Iterator[Callable[[str], Raw]]:
    """Body of a fixture: yields ``make(user)``, a client for ``user`` (no groups); every client
    made is closed afterwards."""
    opened: list[Raw] = []

    def make(user: str) -> Raw:
        r = Raw(server, server.client_cert(user, []))
        opened.append(r)
        return r

    yield make
    for r in opened:
        r.close()
