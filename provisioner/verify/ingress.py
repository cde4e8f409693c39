"""``berth verify``: the ingress controller answers on every runc node.

From the operator's machine, each node's port 80 (HTTP) and 443 (TLS, with an SNI no Ingress
serves) must answer a request for a host no Ingress names with the controller's own 404: that
response exists only in a configuration berth's ingress controller rendered and HAProxy
accepted, so it proves the controller, its HAProxy and both listeners are up.

Right after an apply the controller may still be starting (its unit is among the last an apply
starts, and verify follows at once), so each node and port is asked again until it answers
right or :data:`INGRESS_WITHIN` seconds passed (longer while its unit demonstrably starts, when
verify can look at units: :class:`~provisioner.verify.units.UnitWatch`)."""

from __future__ import annotations

import http.client
import ssl
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from berth.ingress.haproxy import NOT_FOUND_BODY
from provisioner import hostlayout as layout
from provisioner.spec import ClusterSpec
from provisioner.verify.hosts import CheckResult
from provisioner.verify.units import UnitWatch, deadline_for
from provisioner.verify.waiting import ask_until

PROBE_HOST = "berth-verify.invalid"
TIMEOUT = 3.0
INGRESS_WITHIN = 60.0
"""Seconds a node's port may take to answer with the controller's 404 (as long as the smoke pods
may take to run): a healthy controller answers within a few seconds of its start."""
RETRY_EVERY = 0.25


def _ask(address: str, port: int, *, tls: bool) -> tuple[bool, str]:
    conn: http.client.HTTPConnection
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the node's default certificate is self-signed
        conn = http.client.HTTPSConnection(address, port, timeout=TIMEOUT, context=ctx)
    else:
        conn = http.client.HTTPConnection(address, port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/", headers={"Host": PROBE_HOST})
        response = conn.getresponse()
        body = response.read(256).decode(errors="replace")
    except (OSError, ssl.SSLError, http.client.HTTPException) as error:
        return False, f"{type(error).__name__}: {error}"
    finally:
        conn.close()
    ok = response.status == 404 and body == NOT_FOUND_BODY
    return ok, "" if ok else f"answered {response.status} {body[:60]!r}"


def ingress_checks(
    spec: ClusterSpec,
    *,
    http_port: int = 80,
    https_port: int = 443,
    within: float = INGRESS_WITHIN,
    watch: UnitWatch | None = None,
) -> list[CheckResult]:
    """One check per runc node and port; none on simulated clusters (no ingress there).
    ``within``: how long each may take to answer right (0: ask once); ``watch``: longer while
    the node's ingress unit demonstrably starts."""
    if spec.spec.runtime != "runc":
        return []
    asks = [
        (host.name, str(host.address), tls, port)
        for host in spec.hosts
        for tls, port in ((False, http_port), (True, https_port))
    ]

    def ask_until_right(host: str, address: str, port: int, tls: bool) -> tuple[bool, str]:
        return ask_until(
            partial(_ask, address, port, tls=tls),
            lambda answer: answer[0],
            deadline_for(watch, within, lambda: [(host, layout.INGRESS)]),
            pause=RETRY_EVERY,
        )

    # in parallel: an unreachable node costs one timeout, not one per node and port
    with ThreadPoolExecutor(max_workers=min(16, len(asks))) as pool:
        answers = list(pool.map(lambda a: ask_until_right(a[0], a[1], a[3], a[2]), asks))
    return [
        CheckResult(f"ingress controller answers on port {port}", name, ok, detail)
        for (name, _address, _tls, port), (ok, detail) in zip(asks, answers, strict=True)
    ]
