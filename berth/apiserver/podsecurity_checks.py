"""The Pod Security Standards' checks, each with the versions in which it changed.

Semantics follow upstream's ``k8s.io/pod-security-admission/policy`` (the reference for the
Pod Security Standards): a check inspects a pod's metadata and spec and either allows it or
gives a reason ("hostPath volumes") and a detail (``volume "root"``). A check belongs to the
``baseline`` or the ``restricted`` level; ``restricted`` also runs every baseline check except
those a restricted check replaces (restricted volumes replace the hostPath check, for one).
Each check lists the first version each of its variants applies to, so that a namespace pinned
to ``v1.24`` is judged by the rules of 1.24.

Pods here are plain JSON objects (as the API server stores them), read defensively: a field of
the wrong type counts as absent, never as an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from berth.apiserver.gostrings import go_quote

Obj = dict[str, Any]
VersionTuple = tuple[int, int]
CheckFn = Callable[[Obj, Obj], "tuple[str, str] | None"]
"""``fn(pod_metadata, pod_spec)``: ``None`` when allowed, else ``(reason, detail)``."""

BASELINE = "baseline"
RESTRICTED = "restricted"


@dataclass(frozen=True, slots=True)
class Variant:
    minimum: VersionTuple
    fn: CheckFn
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Check:
    id: str
    level: str
    variants: tuple[Variant, ...]

    def at(self, version: VersionTuple) -> Variant | None:
        """The variant in force at ``version`` (``None`` before the check existed)."""
        chosen = None
        for variant in self.variants:
            if variant.minimum <= version:
                chosen = variant
        return chosen


# -- helpers ------------------------------------------------------------------------------------


def _dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _containers(spec: Obj) -> Iterator[Obj]:
    """Init containers, containers, then ephemeral containers (upstream's visiting order)."""
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in _list(spec.get(key)):
            if isinstance(container, dict):
                yield container


def _name(container: Obj) -> str:
    return str(container.get("name", ""))


def _sc(obj: Obj) -> Obj:
    return _dict(obj.get("securityContext"))


def _plural(singular: str, plural: str, count: int) -> str:
    return singular if count == 1 else plural


def _quote_all(items: list[str]) -> str:
    return '"' + '", "'.join(items) + '"' if items else ""


def _containers_phrase(names: list[str]) -> str:
    return f"{_plural('container', 'containers', len(names))} {_quote_all(names)}"


def _windows(spec: Obj) -> bool:
    return _dict(spec.get("os")).get("name") == "windows"


def _user_namespaced(spec: Obj) -> bool:
    """``hostUsers: false``: the pod runs in a user namespace, root in it is not root outside."""
    return spec.get("hostUsers") is False


def _not_on_windows(fn: CheckFn) -> CheckFn:
    def check(metadata: Obj, spec: Obj) -> tuple[str, str] | None:
        return None if _windows(spec) else fn(metadata, spec)

    return check


def _not_in_user_namespace(fn: CheckFn) -> CheckFn:
    def check(metadata: Obj, spec: Obj) -> tuple[str, str] | None:
        return None if _user_namespaced(spec) else fn(metadata, spec)

    return check


# -- baseline -----------------------------------------------------------------------------------


def _host_process(metadata: Obj, spec: Obj) -> tuple[str, str] | None:
    setters = []
    if _dict(_sc(spec).get("windowsOptions")).get("hostProcess") is True:
        setters.append("pod")
    bad = [
        _name(c)
        for c in _containers(spec)
        if _dict(_sc(c).get("windowsOptions")).get("hostProcess") is True
    ]
    if bad:
        setters.append(_containers_phrase(bad))
    if not setters:
        return None
    return (
        "hostProcess",
        f"{' and '.join(setters)} must not set securityContext.windowsOptions.hostProcess=true",
    )


def _host_namespaces(metadata: Obj, spec: Obj) -> tuple[str, str] | None:
    used = [f"{f}=true" for f in ("hostNetwork", "hostPID", "hostIPC") if spec.get(f) is True]
    return ("host namespaces", ", ".join(used)) if used else None


def _privileged(metadata: Obj, spec: Obj) -> tuple[str, str] | None:
    bad = [_name(c) for c in _containers(spec) if _sc(c).get("privileged") is True]
    if not bad:
        return None
    return "privileged", f"{_containers_phrase(bad)} must not set securityContext.privileged=true"


BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)


def _capabilities_baseline(metadata: Obj, spec: Obj) -> tuple[str, str] | None:
    bad: list[str] = []
    added: set[str] = set()
    for c in _containers(spec):
        extra = {
            str(cap)
            for cap in _list(_dict(_sc(c).get("capabilities")).get("add"))
            if str(cap) not in BASELINE_CAPABILITIES
        }
        if extra:
            bad.append(_name(c))
            added |= extra
    if not bad:
        return None
    return (
        "non-default capabilities",
        f"{_containers_phrase(bad)} must not include {_quote_all(sorted(added))} in"
        " securityContext.capabilities.add",
    )


def _host_path_volumes(metadata: Obj, spec: Obj) -> tuple[str, str] | None:
    names = [
        str(v.get("name", ""))
        for v in _list(spec.get("volumes"))
        if isinstance(v, dict) and v.get("hostPath") is not None
    ]
    if not names:
        return None
    return "hostPath volumes", f"{_plural('volume', 'volumes', len(names))} {_quote_all(names)}"


def _host_ports(metadata: Obj, spec: Obj) -> tuple[str, str] | None:
    bad: list[str] = []
    ports: set[str] = set()
    for c in _containers(spec):
        used = {
            str(p.get("hostPort"))
            for p in _list(c.get("ports"))
            if isinstance(p, dict) and p.get("hostPort") not in (None, 0)
        }
        if used:
            bad.append(_name(c))
            ports |= used
    if not bad:
        return None
    return (
        "hostPort",
        f"{_containers_phrase(bad)} {_plural('uses', 'use', len(bad))}"
        f" {_plural('hostPort', 'hostPorts', len(ports))} {', '.join(sorted(ports))}",
    )


def _handler_hosts(handler: Any) -> list[str]:
    hosts = []
    for kind in ("httpGet", "tcpSocket"):
        host = _dict(_dict(handler).get(kind)).get("host")
        if host:
            hosts.append(str(host))
    return hosts


def _probe_hosts(metadata: Obj, spec: Obj) -> tuple[str, str] | None:
    bad: set[str] = set()
    hosts: set[str] = set()
    for c in _containers(spec):
        lifecycle = _dict(c.get("lifecycle"))
        handlers = [c.get(p) for p in ("livenessProbe", "readinessProbe", "startupProbe")]
        handlers += [lifecycle.get("postStart"), lifecycle.get("preStop")]
        for handler in handlers:
            found = _handler_hosts(handler)
            if found:
                bad.add(_name(c))
                hosts.update(found)
    if not bad:
        return None
    return (
        "probe or lifecycle host",
        f"{_containers_phrase(sorted(bad))} {_plural('uses', 'use', len(bad))}"
        f" {_plural('probe or lifecycle host', 'probe or lifecycle hosts', len(hosts))}"
        f" {_quote_all(sorted(hosts))}",
    )


APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"


def _apparmor(metadata: Obj, spec: Obj) -> tuple[str, str] | None:
    def bad_type(sc: Obj) -> str | None:
        profile = sc.get("appArmorProfile")
        if profile is None:
            return None
        kind = str(_dict(profile).get("type", ""))
        return None if kind in ("RuntimeDefault", "Localhost") else kind

    setters: list[str] = []
    values: set[str] = set()
    pod_type = bad_type(_sc(spec))
    if pod_type is not None:
        setters.append("pod")
        values.add(pod_type)
    bad: list[str] = []
    for c in _containers(spec):
        kind = bad_type(_sc(c))
        if kind is not None:
            bad.append(_name(c))
            values.add(kind)
    if bad:
        setters.append(_containers_phrase(bad))
    annotations = sorted(
        f"{k}={go_quote(str(v))}"
        for k, v in _dict(metadata.get("annotations")).items()
        if str(k).startswith(APPARMOR_ANNOTATION_PREFIX)
        and not (v in ("", "runtime/default") or str(v).startswith("localhost/"))
    )
    listed = sorted(values) + annotations
    if annotations:
        setters.append(_plural("annotation", "annotations", len(annotations)))
    if not setters:
        return None
    return (
        _plural("forbidden AppArmor profile", "forbidden AppArmor profiles", len(listed)),
        f"{' and '.join(setters)} must not set AppArmor profile type to {_quote_all(listed)}",
    )


def _proc_mount(metadata: Obj, spec: Obj) -> tuple[str, str] | None:
    bad: list[str] = []
    kinds: set[str] = set()
    for c in _containers(spec):
        mount = _sc(c).get("procMount")
        if mount is not None and mount != "Default":
            bad.append(_name(c))
            kinds.add(str(mount))
    if not bad:
        return None
    return (
        "procMount",
        f"{_containers_phrase(bad)} must not set securityContext.procMount to"
        f" {_quote_all(sorted(kinds))}",
    )


def _selinux(allowed_types: frozenset[str]) -> CheckFn:
    def check(metadata: Obj, spec: Obj) -> tuple[str, str] | None:
        bad_types: set[str] = set()
        flags = {"user": False, "role": False}

        def valid(options: Any) -> bool:
            if options is None:
                return True
            opts = _dict(options)
            ok = True
            kind = str(opts.get("type", "") or "")
            if kind not in allowed_types:
                ok = False
                bad_types.add(kind)
            for key in ("user", "role"):
                if opts.get(key):
                    ok = False
                    flags[key] = True
            return ok

        setters = [] if valid(_sc(spec).get("seLinuxOptions")) else ["pod"]
        bad = [_name(c) for c in _containers(spec) if not valid(_sc(c).get("seLinuxOptions"))]
        if bad:
            setters.append(_containers_phrase(bad))
        if not setters:
            return None
        data = []
        if bad_types:
            types = sorted(bad_types)
            data.append(f"{_plural('type', 'types', len(types))} {_quote_all(types)}")
        data += [f"{key} may not be set" for key in ("user", "role") if flags[key]]
        return (
            "seLinuxOptions",
            f"{' and '.join(setters)} set forbidden securityContext.seLinuxOptions:"
            f" {'; '.join(data)}",
        )

    return check


SELINUX_TYPES_1_0 = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
SELINUX_TYPES_1_31 = SELINUX_TYPES_1_0 | {"container_engine_t"}

SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
SECCOMP_CONTAINER_ANNOTATION_PREFIX = "container.seccomp.security.alpha.kubernetes.io/"


def _seccomp_annotations(metadata: Obj, spec: Obj) -> tuple[str, str] | None:
    """Before 1.19 seccomp was set by annotations."""
    annotations = _dict(metadata.get("annotations"))

    def valid(value: Any) -> bool:
        text = str(value)
        return text in ("runtime/default", "docker/default") or text.startswith("localhost/")

    forbidden: set[str] = set()
    if SECCOMP_POD_ANNOTATION in annotations and not valid(annotations[SECCOMP_POD_ANNOTATION]):
        forbidden.add(
            f"{SECCOMP_POD_ANNOTATION}={go_quote(str(annotations[SECCOMP_POD_ANNOTATION]))}"
        )
    for c in _containers(spec):
        key = SECCOMP_CONTAINER_ANNOTATION_PREFIX + _name(c)
        if key in annotations and not valid(annotations[key]):
            forbidden.add(f"{key}={go_quote(str(annotations[key]))}")
    if not forbidden:
        return None
    return (
        "seccompProfile",
        f"forbidden {_plural('annotation', 'annotations', len(forbidden))}"
        f" {', '.join(sorted(forbidden))}",
    )


def _seccomp_type(sc: Obj) -> tuple[bool, str]:
    """(set, type) of a security context's seccomp profile."""
    profile = sc.get("seccompProfile")
    if profile is None:
        return False, ""
    return True, str(_dict(profile).get("type", ""))


def _seccomp_ok(kind: str) -> bool:
    return kind in ("RuntimeDefault", "Localhost")


def _seccomp(*, required: bool) -> CheckFn:
    """Baseline: a profile, where set, is RuntimeDefault or Localhost. Restricted: and every
    container has one (its own or the pod's)."""

    def check(metadata: Obj, spec: Obj) -> tuple[str, str] | None:
        setters: list[str] = []
        values: set[str] = set()
        pod_set, pod_type = _seccomp_type(_sc(spec))
        pod_ok = pod_set and _seccomp_ok(pod_type)
        if pod_set and not pod_ok:
            setters.append("pod")
            values.add(pod_type)
        explicit: list[str] = []
        implicit: list[str] = []
        for c in _containers(spec):
            is_set, kind = _seccomp_type(_sc(c))
            if is_set and not _seccomp_ok(kind):
                explicit.append(_name(c))
                values.add(kind)
            elif not is_set and not pod_ok:
                implicit.append(_name(c))
        if explicit:
            setters.append(_containers_phrase(explicit))
        if setters:
            return (
                "seccompProfile",
                f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to"
                f" {_quote_all(sorted(values))}",
            )
        if required and implicit:
            return (
                "seccompProfile",
                f"pod or {_containers_phrase(implicit)} must set"
                ' securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"',
            )
        return None

    return check


SYSCTLS_1_0 = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
    }
)
SYSCTLS_1_27 = SYSCTLS_1_0 | {"net.ipv4.ip_local_reserved_ports"}
SYSCTLS_1_29 = SYSCTLS_1_27 | {
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SYSCTLS_1_32 = SYSCTLS_1_29 | {"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}
SYSCTLS_1_37 = SYSCTLS_1_32 | {"net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat"}


def _sysctls(allowed: frozenset[str]) -> CheckFn:
    def check(metadata: Obj, spec: Obj) -> tuple[str, str] | None:
        names = [str(_dict(s).get("name", "")) for s in _list(_sc(spec).get("sysctls"))]
        bad = [n for n in names if n not in allowed]
        return ("forbidden sysctls", ", ".join(bad)) if bad else None

    return check


# -- restricted ---------------------------------------------------------------------------------

ALLOWED_VOLUME_SOURCES = (
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
)
KNOWN_RESTRICTED_SOURCES = (
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
)


def _restricted_volumes(metadata: Obj, spec: Obj) -> tuple[str, str] | None:
    bad: list[str] = []
    kinds: set[str] = set()
    for volume in _list(spec.get("volumes")):
        if not isinstance(volume, dict):
            continue
        sources = [k for k, v in volume.items() if k != "name" and v is not None]
        # A volume naming no source is an emptyDir (kube-apiserver defaults it so).
        if not sources or any(volume.get(k) is not None for k in ALLOWED_VOLUME_SOURCES):
            continue
        bad.append(str(volume.get("name", "")))
        known = [k for k in KNOWN_RESTRICTED_SOURCES if volume.get(k) is not None]
        kinds.add(known[0] if known else "unknown")
    if not bad:
        return None
    types = sorted(kinds)
    return (
        "restricted volume types",
        f"{_plural('volume', 'volumes', len(bad))} {_quote_all(bad)}"
        f" {_plural('uses', 'use', len(bad))}"
        f" {_plural('restricted volume type', 'restricted volume types', len(types))}"
        f" {_quote_all(types)}",
    )


def _privilege_escalation(metadata: Obj, spec: Obj) -> tuple[str, str] | None:
    bad = [
        _name(c) for c in _containers(spec) if _sc(c).get("allowPrivilegeEscalation") is not False
    ]
    if not bad:
        return None
    return (
        "allowPrivilegeEscalation != false",
        f"{_containers_phrase(bad)} must set securityContext.allowPrivilegeEscalation=false",
    )


def _run_as_non_root(metadata: Obj, spec: Obj) -> tuple[str, str] | None:
    setters: list[str] = []
    pod_value = _sc(spec).get("runAsNonRoot")
    if pod_value is False:
        setters.append("pod")
    explicit: list[str] = []
    implicit: list[str] = []
    for c in _containers(spec):
        value = _sc(c).get("runAsNonRoot")
        if value is False:
            explicit.append(_name(c))
        elif value is None and pod_value is not True:
            implicit.append(_name(c))
    if explicit:
        setters.append(_containers_phrase(explicit))
    if setters:
        return (
            "runAsNonRoot != true",
            f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false",
        )
    if implicit:
        return (
            "runAsNonRoot != true",
            f"pod or {_containers_phrase(implicit)} must set securityContext.runAsNonRoot=true",
        )
    return None


def _run_as_user(metadata: Obj, spec: Obj) -> tuple[str, str] | None:
    def root(sc: Obj) -> bool:
        value = sc.get("runAsUser")
        return value == 0 and not isinstance(value, bool)

    setters = ["pod"] if root(_sc(spec)) else []
    bad = [_name(c) for c in _containers(spec) if root(_sc(c))]
    if bad:
        setters.append(_containers_phrase(bad))
    if not setters:
        return None
    return "runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0"


def _capabilities_restricted(metadata: Obj, spec: Obj) -> tuple[str, str] | None:
    missing_drop: list[str] = []
    adding: list[str] = []
    forbidden: set[str] = set()
    for c in _containers(spec):
        caps = _sc(c).get("capabilities")
        if caps is None:
            missing_drop.append(_name(c))
            continue
        caps = _dict(caps)
        if "ALL" not in [str(x) for x in _list(caps.get("drop"))]:
            missing_drop.append(_name(c))
        extra = {str(x) for x in _list(caps.get("add")) if str(x) != "NET_BIND_SERVICE"}
        if extra:
            adding.append(_name(c))
            forbidden |= extra
    details = []
    if missing_drop:
        details.append(
            f'{_containers_phrase(missing_drop)} must set securityContext.capabilities.drop=["ALL"]'
        )
    if adding:
        details.append(
            f"{_containers_phrase(adding)} must not include {_quote_all(sorted(forbidden))} in"
            " securityContext.capabilities.add"
        )
    return ("unrestricted capabilities", "; ".join(details)) if details else None


# -- the table ----------------------------------------------------------------------------------

CHECKS: tuple[Check, ...] = (
    Check("windowsHostProcess", BASELINE, (Variant((1, 0), _host_process),)),
    Check("hostNamespaces", BASELINE, (Variant((1, 0), _host_namespaces),)),
    Check("privileged", BASELINE, (Variant((1, 0), _privileged),)),
    Check("capabilities_baseline", BASELINE, (Variant((1, 0), _capabilities_baseline),)),
    Check("hostPathVolumes", BASELINE, (Variant((1, 0), _host_path_volumes),)),
    Check("hostPorts", BASELINE, (Variant((1, 0), _host_ports),)),
    Check("hostProbesAndHostLifecycle", BASELINE, (Variant((1, 34), _probe_hosts),)),
    Check("appArmorProfile", BASELINE, (Variant((1, 0), _apparmor),)),
    Check(
        "procMount",
        BASELINE,
        (Variant((1, 0), _proc_mount), Variant((1, 35), _not_in_user_namespace(_proc_mount))),
    ),
    Check(
        "seLinuxOptions",
        BASELINE,
        (
            Variant((1, 0), _selinux(SELINUX_TYPES_1_0)),
            Variant((1, 31), _selinux(SELINUX_TYPES_1_31)),
        ),
    ),
    Check(
        "seccompProfile_baseline",
        BASELINE,
        (Variant((1, 0), _seccomp_annotations), Variant((1, 19), _seccomp(required=False))),
    ),
    Check(
        "sysctls",
        BASELINE,
        (
            Variant((1, 0), _sysctls(SYSCTLS_1_0)),
            Variant((1, 27), _sysctls(SYSCTLS_1_27)),
            Variant((1, 29), _sysctls(SYSCTLS_1_29)),
            Variant((1, 32), _sysctls(SYSCTLS_1_32)),
            Variant((1, 37), _sysctls(SYSCTLS_1_37)),
        ),
    ),
    Check(
        "restrictedVolumes",
        RESTRICTED,
        (Variant((1, 0), _restricted_volumes, ("hostPathVolumes",)),),
    ),
    Check(
        "allowPrivilegeEscalation",
        RESTRICTED,
        (
            Variant((1, 8), _privilege_escalation),
            Variant((1, 25), _not_on_windows(_privilege_escalation)),
        ),
    ),
    Check(
        "runAsNonRoot",
        RESTRICTED,
        (
            Variant((1, 0), _run_as_non_root),
            Variant((1, 35), _not_in_user_namespace(_run_as_non_root)),
        ),
    ),
    Check(
        "runAsUser",
        RESTRICTED,
        (
            Variant((1, 23), _run_as_user),
            Variant((1, 35), _not_in_user_namespace(_run_as_user)),
        ),
    ),
    Check(
        "seccompProfile_restricted",
        RESTRICTED,
        (
            Variant((1, 19), _seccomp(required=True), ("seccompProfile_baseline",)),
            Variant(
                (1, 25), _not_on_windows(_seccomp(required=True)), ("seccompProfile_baseline",)
            ),
        ),
    ),
    Check(
        "capabilities_restricted",
        RESTRICTED,
        (
            Variant((1, 22), _capabilities_restricted, ("capabilities_baseline",)),
            Variant((1, 25), _not_on_windows(_capabilities_restricted), ("capabilities_baseline",)),
        ),
    ),
    Check(
        "procMount_restricted",
        RESTRICTED,
        (Variant((1, 35), _proc_mount, ("procMount",)),),
    ),
)

NEWEST_CHECK_VERSION: VersionTuple = max(v.minimum for c in CHECKS for v in c.variants)


def checks_for(level: str, version: VersionTuple) -> tuple[CheckFn, ...]:
    """The check functions of ``level`` at ``version``: baseline checks first, then
    restricted ones, each group ordered by check id (upstream's order, which fixes the order
    of reasons in a message)."""
    baseline = {c.id: c.at(version) for c in CHECKS if c.level == BASELINE}
    chosen = {k: v for k, v in baseline.items() if v is not None}
    if level == RESTRICTED:
        restricted = {c.id: c.at(version) for c in CHECKS if c.level == RESTRICTED}
        active = {k: v for k, v in restricted.items() if v is not None}
        for variant in active.values():
            for overridden in variant.overrides:
                chosen.pop(overridden, None)
        ordered = sorted(chosen) + sorted(active)
        chosen.update(active)
    else:
        ordered = sorted(chosen)
    return tuple(chosen[i].fn for i in ordered)
