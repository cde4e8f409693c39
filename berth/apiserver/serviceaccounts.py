"""Service accounts in the API server: the TokenRequest API, ServiceAccount admission of
pods, and each namespace's ``default`` account.

* ``POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`` (authentication.k8s.io/v1
  TokenRequest) signs a bound token: ``spec.audiences`` (default: the API audiences),
  ``spec.expirationSeconds`` (default 3600, at least 600, shortened to the configured maximum
  with a warning), ``spec.boundObjectRef`` to a Pod or Secret of the account (the token dies
  with it). A node may only request tokens bound to pods on itself, for those pods' accounts
  (upstream's NodeRestriction).
* Pod admission (upstream's ServiceAccount plugin, on create): the account must exist (403
  otherwise); unless ``automountServiceAccountToken: false`` on the pod or the account, a
  ``kube-api-access-xxxxx`` projected volume (token, ``kube-root-ca.crt``'s ``ca.crt``,
  namespace) is added and mounted at :data:`MOUNT_PATH` in every container.
* A namespace gets its ``default`` ServiceAccount when it is created, in the same request, so
  a pod created right after its namespace is admitted (upstream leaves this to a controller
  and clients retry; the controller manager's serviceaccounts controller still repairs a
  deleted one).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric import ec

from berth.api import satoken
from berth.api.meta import Obj, format_time, get_path
from berth.api.resources import TABLE, ResourceDef

from .auth import UserInfo
from .client_warnings import add_warning
from .config import ServerConfig
from .errors import ApiError, FieldError, bad_request, conflict, forbidden, invalid
from .errors import invalid_value as _invalid_value
from .errors import required as _required
from .podsafety import trust_volume_source
from .podtemplate import PodTemplate, spec_bytes
from .satokens import ObjectCache, ServiceAccountAuthenticator
from .suffixes import random_suffix

if TYPE_CHECKING:
    from .registry import Registry

log = logging.getLogger(__name__)

MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600
MAX_EXPIRATION = 1 << 32
PROJECTED_EXPIRATION = 3607
"""What upstream's admission asks for the kube-api-access token (the agent renews it at 80%)."""
API_VERSION = "authentication.k8s.io/v1"

_SA = TABLE.lookup("", "v1", "serviceaccounts")
_PODS = TABLE.lookup("", "v1", "pods")
_SECRETS = TABLE.lookup("", "v1", "secrets")
_NODES = TABLE.lookup("", "v1", "nodes")
assert _SA is not None
assert _PODS is not None
assert _SECRETS is not None
assert _NODES is not None
SA_RD: ResourceDef = _SA
PODS_RD: ResourceDef = _PODS
SECRETS_RD: ResourceDef = _SECRETS
NODES_RD: ResourceDef = _NODES
_TOKEN_REQUEST_RD = ResourceDef(
    group="authentication.k8s.io",
    version="v1",
    plural="tokenrequests",
    singular="tokenrequest",
    kind="TokenRequest",
    namespaced=True,
)


def _signing_key(config: ServerConfig) -> ec.EllipticCurvePrivateKey:
    if config.service_account_signing_key_file is not None:
        return satoken.load_private_key(config.service_account_signing_key_file)
    log.warning(
        "no serviceAccountSigningKeyFile configured: signing service-account tokens with a key"
        " made for this process (its tokens die with it and other API servers refuse them);"
        " give the PKI's sa.key"
    )
    return ec.generate_private_key(ec.SECP256R1())


class ServiceAccounts:
    """Owns the signing key, the verification keys and the caches tokens are checked against."""

    def __init__(self, config: ServerConfig, *, clock: Callable[[], float] = time.time) -> None:
        key = _signing_key(config)
        self.signer = satoken.Signer(key)
        public = [key.public_key()]
        for path in config.service_account_key_files:
            public += satoken.load_public_keys(path)
        self.issuer = config.service_account_issuer
        self.audiences = config.api_audiences or (self.issuer,)
        self.max_expiration = config.service_account_max_token_expiration
        self.clock = clock
        self.cache = ObjectCache()
        self.authenticator = ServiceAccountAuthenticator(
            satoken.Verifier(public),
            self.cache,
            issuer=self.issuer,
            audiences=self.audiences,
            clock=clock,
        )

    # -- TokenRequest ---------------------------------------------------------------------------

    async def create_token(
        self, registry: Registry, user: UserInfo, namespace: str, name: str, body: Any
    ) -> Obj:
        """The TokenRequest response (a shortened expiration is a client warning)."""
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise bad_request("the body of a TokenRequest must be a JSON object")
        for field, wanted in (("apiVersion", API_VERSION), ("kind", "TokenRequest")):
            if body.get(field) not in (None, "", wanted):
                raise bad_request(f"the {field} of a TokenRequest must be {wanted!r}")
        spec = body.get("spec") or {}
        if not isinstance(spec, dict):
            raise bad_request("spec of a TokenRequest must be an object")
        audiences, expiration, ref = self._validate_spec(name, spec)
        if expiration > self.max_expiration:
            add_warning(
                f"requested expiration of {expiration} seconds shortened to"
                f" {self.max_expiration} seconds"
            )
            expiration = self.max_expiration
        account = await registry.get(SA_RD, namespace, name)
        if get_path(account, "metadata", "deletionTimestamp"):
            raise forbidden(
                f'serviceaccounts "{name}" is being deleted; no new tokens', SA_RD, name
            )
        sa_ref = satoken.Ref(name, str(account["metadata"]["uid"]))
        pod = secret = node = None
        if ref is not None:
            pod, secret, node = await self._bound_object(registry, namespace, name, ref)
        self._node_restriction(user, pod, node, name)
        issued = int(self.clock())
        claims = satoken.bound_claims(
            issuer=self.issuer,
            audiences=audiences,
            namespace=namespace,
            account=sa_ref,
            issued_at=issued,
            expires_at=issued + expiration,
            pod=pod,
            secret=secret,
            node=node,
        )
        out_spec: Obj = {"audiences": audiences, "expirationSeconds": expiration}
        if ref is not None:
            out_spec["boundObjectRef"] = ref
        return {
            "kind": "TokenRequest",
            "apiVersion": API_VERSION,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "creationTimestamp": format_time_epoch(issued),
            },
            "spec": out_spec,
            "status": {
                "token": self.signer.sign(claims),
                "expirationTimestamp": format_time_epoch(issued + expiration),
            },
        }

    def _validate_spec(self, name: str, spec: Obj) -> tuple[list[str], int, Obj | None]:
        errs: list[FieldError] = []
        raw_aud = spec.get("audiences")
        audiences: list[str] = []
        if raw_aud not in (None, []):
            if not isinstance(raw_aud, list) or not all(isinstance(a, str) and a for a in raw_aud):
                errs.append(_invalid_value("spec.audiences", raw_aud, "must be a list of names"))
            else:
                audiences = list(raw_aud)
        expiration = spec.get("expirationSeconds", DEFAULT_EXPIRATION)
        if expiration is None:
            expiration = DEFAULT_EXPIRATION
        if not isinstance(expiration, int) or isinstance(expiration, bool):
            errs.append(_invalid_value("spec.expirationSeconds", expiration, "must be an integer"))
            expiration = DEFAULT_EXPIRATION
        elif expiration < MIN_EXPIRATION:
            errs.append(
                _invalid_value(
                    "spec.expirationSeconds",
                    expiration,
                    "may not specify a duration less than 10 minutes",
                )
            )
        elif expiration > MAX_EXPIRATION:
            errs.append(
                _invalid_value(
                    "spec.expirationSeconds",
                    expiration,
                    "may not specify a duration larger than 2^32 seconds",
                )
            )
        ref = spec.get("boundObjectRef")
        if ref is not None:
            if not isinstance(ref, dict):
                errs.append(_invalid_value("spec.boundObjectRef", ref, "must be an object"))
                ref = None
            else:
                if ref.get("kind") not in ("Pod", "Secret"):
                    errs.append(
                        FieldError(
                            "FieldValueNotSupported",
                            "spec.boundObjectRef.kind",
                            f'Unsupported value: {ref.get("kind")!r}: supported values: "Pod",'
                            ' "Secret"',
                        )
                    )
                if ref.get("apiVersion", "v1") != "v1":
                    errs.append(
                        _invalid_value(
                            "spec.boundObjectRef.apiVersion", ref.get("apiVersion"), "must be v1"
                        )
                    )
                if not isinstance(ref.get("name"), str) or not ref.get("name"):
                    errs.append(_required("spec.boundObjectRef.name"))
        if errs:
            raise invalid(_TOKEN_REQUEST_RD, name, errs)
        return audiences or list(self.audiences), int(expiration), ref

    async def _bound_object(
        self, registry: Registry, namespace: str, account: str, ref: Obj
    ) -> tuple[satoken.Ref | None, satoken.Ref | None, satoken.Ref | None]:
        kind, obj_name = str(ref["kind"]), str(ref["name"])
        rd = PODS_RD if kind == "Pod" else SECRETS_RD
        obj = await registry.get(rd, namespace, obj_name)
        uid = str(obj["metadata"].get("uid") or "")
        if ref.get("uid") not in (None, "", uid):
            raise conflict(
                rd,
                obj_name,
                f"the UID in the bound object reference ({ref.get('uid')}) does not match the"
                f" UID in record ({uid}). The object might have been deleted and then recreated",
            )
        if get_path(obj, "metadata", "deletionTimestamp"):
            raise forbidden(
                f'{rd.plural} "{obj_name}" is being deleted; no new tokens bound to it',
                rd,
                obj_name,
            )
        if kind == "Secret":
            return None, satoken.Ref(obj_name, uid), None
        if get_path(obj, "spec", "serviceAccountName") != account:
            raise bad_request(
                f'cannot bind token for serviceaccount "{account}" to pod running with different'
                " serviceaccount name."
            )
        node = None
        node_name = get_path(obj, "spec", "nodeName")
        if isinstance(node_name, str) and node_name:
            try:
                node_obj = await registry.get(NODES_RD, "", node_name)
            except ApiError:
                node_obj = None
            if node_obj is not None:
                node = satoken.Ref(node_name, str(node_obj["metadata"].get("uid") or ""))
            else:
                node = satoken.Ref(node_name, "")
        return satoken.Ref(obj_name, uid), None, node

    @staticmethod
    def _node_restriction(
        user: UserInfo, pod: satoken.Ref | None, node: satoken.Ref | None, account: str
    ) -> None:
        node_name = user.node_name
        if node_name is None:
            return
        who = f'node "{node_name}"'
        if pod is None:
            raise forbidden(
                f"{who} requested a token for serviceaccount {account!r} not bound to a pod",
                SA_RD,
                account,
            )
        if node is None or node.name != node_name:
            raise forbidden(
                f"{who} requested a token bound to a pod scheduled on a different node",
                SA_RD,
                account,
            )

    # -- admission ------------------------------------------------------------------------------

    async def admit_pod(self, registry: Registry, namespace: str, pod: Obj) -> PodTemplate | None:
        """ServiceAccount admission of a pod being created (mutates ``pod``). Returns the
        pod's template key (:mod:`podtemplate`), taken just before the token volume is
        added; ``None``: the pod's verdicts are not to be remembered."""
        spec = pod.get("spec")
        if not isinstance(spec, dict):
            return None
        account_name = str(spec.get("serviceAccountName") or satoken.DEFAULT_ACCOUNT)
        spec["serviceAccountName"] = account_name
        spec.setdefault("serviceAccount", account_name)
        cached = self.cache.get("serviceaccounts", namespace, account_name)
        try:
            # The cache first (no store read on the pod-create path); a miss may only be this
            # server lagging behind another that created the account, so read the store then.
            account_automount = (
                cached.automount
                if cached is not None
                else (await registry.get(SA_RD, namespace, account_name)).get(
                    "automountServiceAccountToken"
                )
            )
        except ApiError as exc:
            if exc.code != 404:
                raise
            pod_name = get_path(pod, "metadata", "name") or get_path(
                pod, "metadata", "generateName"
            )
            raise forbidden(
                f'pods "{pod_name}" is forbidden: error looking up service account'
                f' {namespace}/{account_name}: serviceaccount "{account_name}" not found',
                PODS_RD,
                str(pod_name or ""),
            ) from None
        errs = _token_projection_errors(spec)
        if errs:
            raise invalid(PODS_RD, str(get_path(pod, "metadata", "name") or ""), errs)
        automount = spec.get("automountServiceAccountToken")
        if automount is None:
            automount = account_automount
        before = spec_bytes(spec)
        added = automount is not False and _mount_token_volume(spec)
        return PodTemplate(before, added) if before is not None else None

    async def ensure_default_account(self, registry: Registry, namespace: str) -> None:
        account = {"metadata": {"name": satoken.DEFAULT_ACCOUNT, "namespace": namespace}}
        await registry.ensure(SA_RD, account)


def format_time_epoch(seconds: int) -> str:
    return format_time(dt.datetime.fromtimestamp(seconds, dt.UTC))


def access_volume(name: str) -> Obj:
    """Upstream's ``kube-api-access-*`` volume."""
    return {
        "name": name,
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "expirationSeconds": PROJECTED_EXPIRATION,
                        "path": "token",
                    }
                },
                {
                    "configMap": {
                        "name": satoken.ROOT_CA_CONFIGMAP,
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
            "defaultMode": 0o644,
        },
    }


# The projected source of that volume is the same for every pod: validated once, here, and
# then trusted by pod validation (``podsafety``), which need not walk it on every create.
trust_volume_source("projected", access_volume("")["projected"])


def _token_projection_errors(spec: Obj) -> list[FieldError]:
    """Upstream's validation of ``serviceAccountToken`` projections."""
    errs: list[FieldError] = []
    for i, vol in enumerate(spec.get("volumes") or []):
        projected = vol.get("projected") if isinstance(vol, dict) else None
        if not isinstance(projected, dict):
            continue
        for j, src in enumerate(projected.get("sources") or []):
            ref = src.get("serviceAccountToken") if isinstance(src, dict) else None
            if ref is None:
                continue
            where = f"spec.volumes[{i}].projected.sources[{j}].serviceAccountToken"
            if not isinstance(ref, dict):
                errs.append(_invalid_value(where, ref, "must be an object"))
                continue
            seconds = ref.get("expirationSeconds", DEFAULT_EXPIRATION)
            if not isinstance(seconds, int) or isinstance(seconds, bool):
                errs.append(_invalid_value(f"{where}.expirationSeconds", seconds, "not a number"))
            elif seconds < MIN_EXPIRATION:
                errs.append(
                    _invalid_value(
                        f"{where}.expirationSeconds",
                        seconds,
                        "may not specify a duration less than 10 minutes",
                    )
                )
            elif seconds > MAX_EXPIRATION:
                errs.append(
                    _invalid_value(
                        f"{where}.expirationSeconds",
                        seconds,
                        "may not specify a duration larger than 2^32 seconds",
                    )
                )
            path = ref.get("path")
            if not isinstance(path, str) or not path:
                errs.append(_required(f"{where}.path"))
            elif path.startswith("/") or ".." in path.split("/"):
                errs.append(
                    _invalid_value(f"{where}.path", path, "must be a relative path without '..'")
                )
    return errs


def _mounts_token(container: Obj) -> bool:
    for m in container.get("volumeMounts") or ():
        if isinstance(m, dict) and m.get("mountPath") == MOUNT_PATH:
            return True
    return False


def _mount_token_volume(spec: Obj) -> bool:
    """Add the ``kube-api-access-*`` volume and mount it where it is missing; ``False`` when
    every container mounts something at :data:`MOUNT_PATH` already (nothing added)."""
    needing = [
        c
        for key in ("initContainers", "containers")
        for c in spec.get(key) or ()
        if isinstance(c, dict) and not _mounts_token(c)
    ]
    if not needing:
        return False
    volumes = spec.setdefault("volumes", [])
    taken = {v.get("name") for v in volumes if isinstance(v, dict)}
    name = ""
    while not name or name in taken:
        name = "kube-api-access-" + random_suffix()
    volumes.append(access_volume(name))
    for c in needing:
        c.setdefault("volumeMounts", []).append(
            {"name": name, "readOnly": True, "mountPath": MOUNT_PATH}
        )
    return True
