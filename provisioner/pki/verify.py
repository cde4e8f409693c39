"""Compare a certificate on disk with what the spec asks for, in words an operator understands.

:func:`assess` returns the reasons a certificate must be re-issued (an empty list means it is
right): wrong key, broken chain, expiry inside the renewal window, changed subject, SANs or
usages. The SAN check is what makes a changed host address re-issue exactly the certificates
that name that address.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509

from provisioner.pki.certlist import CertRequest
from provisioner.pki.x509 import (
    CLOCK_SKEW,
    PrivateKey,
    describe,
    is_p256,
    key_matches,
    signed_by,
)


@dataclass(frozen=True)
class Assessment:
    """Why a certificate must be re-issued (``reissue``), and what merely deserves a warning."""

    reissue: list[str]
    warnings: list[str]


def _expiry(info_not_after: dt.datetime, now: dt.datetime, renew_before_days: int) -> str | None:
    if info_not_after <= now:
        return f"expired on {info_not_after:%Y-%m-%d}"
    days = (info_not_after - now) // dt.timedelta(days=1)
    if info_not_after - now < dt.timedelta(days=renew_before_days):
        return f"expires in {days} day(s), inside the {renew_before_days}-day renewal window"
    return None


def assess(
    request: CertRequest,
    cert: x509.Certificate,
    key: PrivateKey,
    *,
    ca: x509.Certificate | None,
    now: dt.datetime,
    renew_before_days: int,
) -> Assessment:
    """What is wrong with ``cert``/``key`` for ``request`` (``ca``: the current signer)."""
    info = describe(cert)
    reissue: list[str] = []
    warnings: list[str] = []
    if not key_matches(cert, key):
        reissue.append("the private key does not match the certificate")
    if not is_p256(key):
        reissue.append("the key is not ECDSA P-256")
    if info.not_before > now + CLOCK_SKEW:
        reissue.append(f"not valid before {info.not_before:%Y-%m-%d %H:%M} UTC (clock skew?)")
    expiry = _expiry(info.not_after, now, renew_before_days)
    if request.is_ca:
        if not info.is_ca:
            reissue.append("is not a CA certificate")
        if not signed_by(cert, cert):
            reissue.append("is not self-signed")
        if expiry and info.not_after <= now:
            reissue.append(expiry)
        elif expiry:
            warnings.append(
                f"CA '{request.id}' {expiry}; CA rotation re-issues every certificate, plan it"
            )
        return Assessment(reissue, warnings)
    if ca is None or not signed_by(cert, ca):
        reissue.append(f"not signed by the current '{request.ca}' CA")
    if expiry:
        reissue.append(expiry)
    if info.is_ca:
        reissue.append("is a CA certificate but should be a leaf")
    wanted_subject = (request.common_name, request.organizations)
    if (info.common_name, info.organizations) != wanted_subject:
        reissue.append(
            f"subject changed from {_subject(info.common_name, info.organizations)} "
            f"to {_subject(*wanted_subject)}"
        )
    if info.sans != request.sans:
        added = sorted(request.sans - info.sans)
        removed = sorted(info.sans - request.sans)
        change = [f"+{s}" for s in added] + [f"-{s}" for s in removed]
        reissue.append("SANs changed: " + ", ".join(change))
    if info.usages != request.usages:
        reissue.append(
            "key usages changed to " + ", ".join(sorted(u.value for u in request.usages))
        )
    return Assessment(reissue, warnings)


def _subject(common_name: str, organizations: tuple[str, ...]) -> str:
    return ", ".join([f"O={o}" for o in organizations] + [f"CN={common_name}"])
