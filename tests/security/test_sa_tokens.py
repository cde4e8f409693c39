"""Issue 13 point 6: service-account tokens cannot be forged.

Before the fix, the ``token`` of a ``kubernetes.io/service-account-token`` Secret was whatever
its creator wrote, and the account it named was never looked up: a tenant who may create
Secrets minted a bearer token for any service account of the namespace. Each forgery below is
planted that way (written into a token Secret by the tenant) and must now be refused with 401;
the tokens the server signs (TokenRequest, ``kubectl create token``, pods' projected volumes)
authenticate, and stop doing so once their account, its UID or their pod is gone.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from berth.api import satoken
from berth.apiserver.config import DEFAULT_ISSUER
from berth.apiserver.watch import ObjEvent
from berth.client.http import HttpClient
from berth.controllers.manager import ControllerManager, ManagerConfig
from berth.machinery.clock import RealClock
from tests.harness.apiserver import ServerHandle, running_server
from tests.harness.polling import wait_for
from tests.integration.apiserver.helpers import Raw
from tests.security.helpers import bind_role

NS = "tenant"
KUBECTL = Path("/usr/bin/kubectl")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with running_server(tmp_path_factory.mktemp("satokens")) as handle:
        yield handle


@pytest.fixture(scope="module")
def admin(srv: ServerHandle) -> Iterator[Raw]:
    client = Raw(srv, srv.client_cert("admin", ["system:masters"]))
    status, _ = client.json("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
    assert status == 201
    yield client
    client.close()


@pytest.fixture(scope="module")
def tenant(srv: ServerHandle, admin: Raw) -> Iterator[Raw]:
    """Mallory: may do anything with Secrets, ServiceAccounts and Pods in her namespace."""
    rules = [
        {
            "apiGroups": [""],
            "resources": ["secrets", "serviceaccounts", "serviceaccounts/token", "pods"],
            "verbs": ["*"],
        }
    ]
    bind_role(admin, NS, "mallory", "tenant-admin", rules)
    client = Raw(srv, srv.client_cert("mallory"))
    yield client
    client.close()


def _seen(srv: ServerHandle, resource_version: str) -> None:
    """Wait until the server's watch hub (which feeds every authentication cache) has
    dispatched the write at ``resource_version``."""

    wanted = int(resource_version)
    hub = srv.server.hub

    async def until() -> None:
        done = asyncio.Event()

        def listener(ev: ObjEvent) -> None:
            if ev.revision >= wanted:
                done.set()

        hub.listeners.append(listener)
        try:
            if hub.latest < wanted:
                await done.wait()
        finally:
            hub.listeners.remove(listener)

    srv.call(until(), timeout=10)


def _write(srv: ServerHandle, client: Raw, method: str, path: str, body: Any = None) -> Any:
    status, out = client.json(method, path, body)
    assert status in (200, 201), (status, out)
    _seen(srv, out["metadata"]["resourceVersion"])
    return out


def _account(srv: ServerHandle, client: Raw, name: str) -> str:
    out = _write(
        srv,
        client,
        "POST",
        f"/api/v1/namespaces/{NS}/serviceaccounts",
        {"metadata": {"name": name}},
    )
    return str(out["metadata"]["uid"])


def _delete(srv: ServerHandle, client: Raw, path: str) -> None:
    status, out = client.json("DELETE", path)
    assert status == 200, out
    rv = (out.get("metadata") or {}).get("resourceVersion") or str(
        srv.call(srv.server.store.current_revision())
    )
    _seen(srv, rv)


def _request_token(client: Raw, account: str, spec: dict[str, Any] | None = None) -> str:
    status, out = client.json(
        "POST",
        f"/api/v1/namespaces/{NS}/serviceaccounts/{account}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec or {}},
    )
    assert status == 201, out
    return str(out["status"]["token"])


def _whoami(srv: ServerHandle, token: str) -> tuple[int, str]:
    """(status, user) for a bearer token: 401, or the 403 naming the authenticated user."""
    client = Raw(srv, None)
    try:
        status, out = client.json(
            "GET",
            "/api/v1/namespaces/kube-system/secrets",
            headers={"Authorization": f"Bearer {token}"},
        )
    finally:
        client.close()
    if status == 403:
        return status, out["message"].split('User "', 1)[1].split('"', 1)[0]
    return status, ""


def _plant(srv: ServerHandle, tenant: Raw, token: str, account: str = "robot") -> int:
    """Mallory writes ``token`` into a token Secret of ``account`` and presents it."""
    name = f"planted-{abs(hash(token)) % 10**8}"
    secret = {
        "metadata": {
            "name": name,
            "annotations": {"kubernetes.io/service-account.name": account},
        },
        "type": "kubernetes.io/service-account-token",
        "data": {"token": base64.b64encode(token.encode()).decode()},
    }
    _write(srv, tenant, "POST", f"/api/v1/namespaces/{NS}/secrets", secret)
    return _whoami(srv, token)[0]


def _claims(uid: str, *, account: str = "robot", **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = satoken.bound_claims(
        issuer=satoken_issuer(),
        audiences=[satoken_issuer()],
        namespace=NS,
        account=satoken.Ref(account, uid),
        issued_at=now,
        expires_at=now + 3600,
    )
    claims.update(changes)
    return claims


def satoken_issuer() -> str:
    return DEFAULT_ISSUER


def _server_signer(srv: ServerHandle) -> satoken.Signer:
    key_file = srv.config.service_account_signing_key_file
    assert key_file is not None
    return satoken.Signer(satoken.load_private_key(key_file))


# -- forgeries ---------------------------------------------------------------------------------


def test_handwritten_token_in_a_secret_is_refused(srv: ServerHandle, tenant: Raw) -> None:
    _account(srv, tenant, "robot")
    assert _plant(srv, tenant, "mallory-chose-this-token") == 401
    # and what she wrote is not kept as the Secret's token
    status, secret = tenant.json("GET", f"/api/v1/namespaces/{NS}/secrets")
    assert status == 200
    for item in secret["items"]:
        data = item.get("data") or {}
        assert base64.b64decode(data.get("token", "")) != b"mallory-chose-this-token"


def test_token_for_an_account_that_never_existed_is_refused(srv: ServerHandle, tenant: Raw) -> None:
    assert _plant(srv, tenant, "ghost-token-0123456789", account="ghost") == 401


def test_jwt_signed_by_another_key_is_refused(srv: ServerHandle, tenant: Raw) -> None:
    uid = _account(srv, tenant, "robot-b")
    other = satoken.Signer(ec.generate_private_key(ec.SECP256R1()))
    forged = other.sign(_claims(uid, account="robot-b"))
    assert _plant(srv, tenant, forged, "robot-b") == 401
    # the same claims signed by the cluster's key do authenticate (the control)
    genuine = _server_signer(srv).sign(_claims(uid, account="robot-b"))
    assert _whoami(srv, genuine) == (403, f"system:serviceaccount:{NS}:robot-b")


def test_unsigned_and_tampered_tokens_are_refused(srv: ServerHandle, tenant: Raw) -> None:
    uid = _account(srv, tenant, "robot-n")
    claims = _claims(uid, account="robot-n")

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    body = b64(json.dumps(claims).encode())
    unsigned = f"{b64(json.dumps({'alg': 'none'}).encode())}.{body}."
    assert _plant(srv, tenant, unsigned, "robot-n") == 401
    # a genuine token whose claims were changed (another account) after signing
    genuine = _server_signer(srv).sign(claims).split(".")
    other = dict(claims, sub=f"system:serviceaccount:{NS}:default")
    other["kubernetes.io"] = dict(claims["kubernetes.io"], serviceaccount={"name": "default"})
    tampered = f"{genuine[0]}.{b64(json.dumps(other).encode())}.{genuine[2]}"
    assert _plant(srv, tenant, tampered, "robot-n") == 401


def test_expired_token_is_refused(srv: ServerHandle, tenant: Raw) -> None:
    uid = _account(srv, tenant, "robot-e")
    long_ago = int(time.time()) - 7200
    expired = _server_signer(srv).sign(
        _claims(uid, account="robot-e", iat=long_ago, nbf=long_ago, exp=long_ago + 3600)
    )
    assert _plant(srv, tenant, expired, "robot-e") == 401


def test_token_for_another_audience_is_refused(srv: ServerHandle, tenant: Raw) -> None:
    _account(srv, tenant, "robot-a")
    token = _request_token(tenant, "robot-a", {"audiences": ["https://vault.example"]})
    assert _plant(srv, tenant, token, "robot-a") == 401
    assert _whoami(srv, _request_token(tenant, "robot-a"))[0] == 403  # default audience works


def test_token_of_a_deleted_account_is_refused(srv: ServerHandle, tenant: Raw) -> None:
    _account(srv, tenant, "robot-d")
    token = _request_token(tenant, "robot-d")
    assert _whoami(srv, token) == (403, f"system:serviceaccount:{NS}:robot-d")
    _delete(srv, tenant, f"/api/v1/namespaces/{NS}/serviceaccounts/robot-d")
    assert _whoami(srv, token)[0] == 401


def test_token_of_a_recreated_account_is_refused(srv: ServerHandle, tenant: Raw) -> None:
    first = _account(srv, tenant, "robot-r")
    token = _request_token(tenant, "robot-r")
    _delete(srv, tenant, f"/api/v1/namespaces/{NS}/serviceaccounts/robot-r")
    second = _account(srv, tenant, "robot-r")
    assert first != second
    assert _whoami(srv, token)[0] == 401
    assert _plant(srv, tenant, token, "robot-r") == 401


def test_token_bound_to_a_deleted_pod_is_refused(srv: ServerHandle, tenant: Raw) -> None:
    pod = _write(
        srv,
        tenant,
        "POST",
        f"/api/v1/namespaces/{NS}/pods",
        {"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
    )
    ref = {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": pod["metadata"]["uid"]}
    token = _request_token(tenant, "default", {"boundObjectRef": ref})
    assert _whoami(srv, token) == (403, f"system:serviceaccount:{NS}:default")
    _delete(srv, tenant, f"/api/v1/namespaces/{NS}/pods/web")
    assert _whoami(srv, token)[0] == 401
    # a new pod with the same name does not revive it
    _write(
        srv,
        tenant,
        "POST",
        f"/api/v1/namespaces/{NS}/pods",
        {"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
    )
    assert _whoami(srv, token)[0] == 401


# -- the tokens the server signs ----------------------------------------------------------------


def _payload(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def test_token_request_carries_the_account_identity(srv: ServerHandle, tenant: Raw) -> None:
    uid = _account(srv, tenant, "robot-t")
    status, out = tenant.json(
        "POST",
        f"/api/v1/namespaces/{NS}/serviceaccounts/robot-t/token",
        {"spec": {"expirationSeconds": 900}},
    )
    assert status == 201, out
    assert out["kind"] == "TokenRequest"
    assert out["spec"]["expirationSeconds"] == 900
    claims = _payload(out["status"]["token"])
    assert claims["sub"] == f"system:serviceaccount:{NS}:robot-t"
    assert claims["iss"] == satoken_issuer()
    assert claims["aud"] == [satoken_issuer()]
    assert claims["exp"] - claims["iat"] == 900
    assert claims["kubernetes.io"] == {
        "namespace": NS,
        "serviceaccount": {"name": "robot-t", "uid": uid},
    }
    assert _whoami(srv, out["status"]["token"]) == (403, f"system:serviceaccount:{NS}:robot-t")


def test_token_request_limits(srv: ServerHandle, tenant: Raw, admin: Raw) -> None:
    _account(srv, tenant, "robot-l")
    path = f"/api/v1/namespaces/{NS}/serviceaccounts/robot-l/token"
    status, out = tenant.json("POST", path, {"spec": {"expirationSeconds": 60}})
    assert status == 422
    assert "may not specify a duration less than 10 minutes" in out["message"]
    status, _ = tenant.json("POST", f"/api/v1/namespaces/{NS}/serviceaccounts/nobody/token", {})
    assert status == 404
    # longer than the configured maximum: shortened to it, with a warning
    longest = srv.server.config.service_account_max_token_expiration
    status, headers, data = tenant.request("POST", path, {"spec": {"expirationSeconds": 1 << 31}})
    assert status == 201
    assert json.loads(data)["spec"]["expirationSeconds"] == longest
    assert headers["warning"] == (
        f'299 - "requested expiration of {1 << 31} seconds shortened to {longest} seconds"'
    )
    # another namespace's account: not hers
    status, _ = tenant.json("POST", "/api/v1/namespaces/default/serviceaccounts/default/token", {})
    assert status == 403


def _token_for_pod_on(
    srv: ServerHandle, admin: Raw, node: Raw, pod: str, node_name: str, path: str
) -> tuple[int, Any]:
    """Create pod ``pod`` bound to ``node_name``; then ``node`` asks ``path`` for a token bound
    to it."""
    body = {
        "metadata": {"name": pod},
        "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "nginx"}]},
    }
    _write(srv, admin, "POST", f"/api/v1/namespaces/{NS}/pods", body)
    ref = {"kind": "Pod", "apiVersion": "v1", "name": pod}
    return node.json("POST", path, {"spec": {"boundObjectRef": ref}})


def test_node_gets_tokens_only_for_its_own_pods(srv: ServerHandle, admin: Raw) -> None:
    node = Raw(srv, srv.client_cert("system:node:n1", ["system:nodes"]))
    try:
        path = f"/api/v1/namespaces/{NS}/serviceaccounts/default/token"
        status, out = node.json("POST", path, {"spec": {}})
        assert status == 403, out
        status, out = _token_for_pod_on(srv, admin, node, "elsewhere", "n2", path)
        assert status == 403, out
        status, out = _token_for_pod_on(srv, admin, node, "mine", "n1", path)
        assert status == 201, out
        claims = _payload(out["status"]["token"])
        assert claims["kubernetes.io"]["pod"]["name"] == "mine"
        assert claims["kubernetes.io"]["node"]["name"] == "n1"
    finally:
        node.close()


def test_kubectl_create_token(srv: ServerHandle, tenant: Raw, tmp_path: Path) -> None:
    _account(srv, tenant, "robot-k")
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "KUBECONFIG": str(srv.kubeconfig("admin", groups=["system:masters"])),
    }
    out = subprocess.run(
        [str(KUBECTL), "create", "token", "robot-k", "-n", NS, "--duration", "20m"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert _whoami(srv, token) == (403, f"system:serviceaccount:{NS}:robot-k")
    claims = _payload(token)
    assert claims["exp"] - claims["iat"] == 1200


# -- ServiceAccount admission ---------------------------------------------------------------------


def test_pod_with_a_missing_account_is_refused(tenant: Raw) -> None:
    status, out = tenant.json(
        "POST",
        f"/api/v1/namespaces/{NS}/pods",
        {
            "metadata": {"name": "sneaky"},
            "spec": {
                "serviceAccountName": "not-there",
                "containers": [{"name": "c", "image": "nginx"}],
            },
        },
    )
    assert status == 403, out
    assert 'serviceaccount "not-there" not found' in out["message"]


def test_pod_gets_the_projected_token_volume(srv: ServerHandle, tenant: Raw) -> None:
    pod = _write(
        srv,
        tenant,
        "POST",
        f"/api/v1/namespaces/{NS}/pods",
        {"metadata": {"name": "api-user"}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
    )
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "default"
    (volume,) = [v for v in spec["volumes"] if v["name"].startswith("kube-api-access-")]
    sources = volume["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["path"] == "token"
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    assert sources[2]["downwardAPI"]["items"][0]["path"] == "namespace"
    (mount,) = spec["containers"][0]["volumeMounts"]
    assert mount == {
        "name": volume["name"],
        "readOnly": True,
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
    }
    opted_out = _write(
        srv,
        tenant,
        "POST",
        f"/api/v1/namespaces/{NS}/pods",
        {
            "metadata": {"name": "no-token"},
            "spec": {
                "automountServiceAccountToken": False,
                "containers": [{"name": "c", "image": "x"}],
            },
        },
    )
    assert not opted_out["spec"].get("volumes")
    _write(
        srv,
        tenant,
        "POST",
        f"/api/v1/namespaces/{NS}/serviceaccounts",
        {"metadata": {"name": "quiet"}, "automountServiceAccountToken": False},
    )
    quiet = _write(
        srv,
        tenant,
        "POST",
        f"/api/v1/namespaces/{NS}/pods",
        {
            "metadata": {"name": "quiet"},
            "spec": {"serviceAccountName": "quiet", "containers": [{"name": "c", "image": "x"}]},
        },
    )
    assert not quiet["spec"].get("volumes")


# -- legacy token Secrets -------------------------------------------------------------------------


@contextlib.contextmanager
def _token_controller(srv: ServerHandle) -> Iterator[None]:
    """The controller manager's token controller, with its own identity, on its own loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    kubeconfig = srv.kubeconfig("system:kube-controller-manager", groups=[])

    stop = asyncio.Event()

    async def run() -> None:
        client = HttpClient.from_kubeconfig(kubeconfig)
        config = ManagerConfig(
            controllers=["serviceaccount-token"],
            root_ca_pem=srv.pki.ca_cert.read_bytes(),
            service_account_signer=_server_signer(srv),
        )
        manager = asyncio.create_task(ControllerManager(client, RealClock(), config).run())
        await stop.wait()
        manager.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await manager
        await client.close()
        await asyncio.sleep(0.3)  # let TLS connections finish closing (aiohttp's advice)

    future = asyncio.run_coroutine_threadsafe(run(), loop)
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        future.result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_legacy_token_secret_is_filled_by_the_controller_and_dies_with_its_account(
    srv: ServerHandle, tenant: Raw
) -> None:
    uid = _account(srv, tenant, "legacy")
    path = f"/api/v1/namespaces/{NS}/secrets"
    secret = {
        "metadata": {
            "name": "legacy-token",
            "annotations": {"kubernetes.io/service-account.name": "legacy"},
        },
        "type": "kubernetes.io/service-account-token",
        "data": {"token": base64.b64encode(b"i-pick-my-own-token").decode()},
    }
    status, out = tenant.json("POST", path, secret)
    assert status == 201, out
    assert "token" not in (out.get("data") or {})  # what the creator wrote is dropped
    with _token_controller(srv):

        def filled() -> Any:
            got = tenant.json("GET", f"{path}/legacy-token")[1]
            return got if (got.get("data") or {}).get("token") else None

        got = wait_for("the token controller to fill the Secret", filled, timeout=10)
        token = base64.b64decode(got["data"]["token"]).decode()
        assert base64.b64decode(got["data"]["ca.crt"]) == srv.pki.ca_cert.read_bytes()
        assert base64.b64decode(got["data"]["namespace"]) == NS.encode()
        assert got["metadata"]["annotations"]["kubernetes.io/service-account.uid"] == uid
        assert _payload(token)["iss"] == "kubernetes/serviceaccount"
        _seen(srv, got["metadata"]["resourceVersion"])
        assert _whoami(srv, token) == (403, f"system:serviceaccount:{NS}:legacy")

        _delete(srv, tenant, f"/api/v1/namespaces/{NS}/serviceaccounts/legacy")
        assert _whoami(srv, token)[0] == 401
        wait_for(
            "the token controller to delete the orphaned Secret",
            lambda: tenant.json("GET", f"{path}/legacy-token")[0] == 404,
            timeout=10,
        )
