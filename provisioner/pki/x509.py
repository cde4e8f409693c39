"""Certificate and key primitives on top of ``cryptography``: ECDSA P-256, SHA-256.

Issuing: :func:`new_key`, :func:`issue` (CA or leaf from a :class:`CertRequest`). Reading:
:func:`describe` pulls out what the PKI compares (subject, SANs, usages, validity). Keys are
PEM PKCS#8; CA keys are encrypted with the state passphrase when one is set.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioner.pki.certlist import CertRequest, Usage

PrivateKey = ec.EllipticCurvePrivateKey
CLOCK_SKEW = dt.timedelta(minutes=5)  # certificates start a little in the past for slow clocks

_EKU = {
    Usage.SERVER: ExtendedKeyUsageOID.SERVER_AUTH,
    Usage.CLIENT: ExtendedKeyUsageOID.CLIENT_AUTH,
}
_USAGE_OF = {oid.dotted_string: usage for usage, oid in _EKU.items()}


def new_key() -> PrivateKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted with the best available scheme when ``passphrase`` is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def public_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def is_encrypted_pem(data: bytes) -> bool:
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data


def load_key(data: bytes, passphrase: bytes | None = None) -> PrivateKey:
    """Load a PEM private key; ``ValueError`` if it is not an EC key or cannot be decrypted,
    ``TypeError`` if it is encrypted and no passphrase was given."""
    key = serialization.load_pem_private_key(
        data, password=passphrase if is_encrypted_pem(data) else None
    )
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("not an ECDSA key")
    return key


def load_cert(data: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data)


def _name(common_name: str, organizations: tuple[str, ...]) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def issue(
    request: CertRequest,
    key: PrivateKey,
    *,
    now: dt.datetime,
    ca: tuple[x509.Certificate, PrivateKey] | None = None,
) -> x509.Certificate:
    """Sign a certificate for ``request`` (self-signed when ``ca`` is ``None``).

    A leaf never outlives its CA: its expiry is capped at the CA's.
    """
    subject = _name(request.common_name, request.organizations)
    not_before = now - CLOCK_SKEW
    not_after = now + dt.timedelta(days=request.validity_days)
    issuer_name = subject
    signing_key = key
    builder = x509.CertificateBuilder()
    if ca is not None:
        ca_cert, signing_key = ca
        issuer_name = ca_cert.subject
        not_after = min(not_after, ca_cert.not_valid_after_utc)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    builder = (
        builder.subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if request.is_ca:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=0), critical=True
        ).add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        ).add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        if request.usages:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([_EKU[u] for u in sorted(request.usages)]), critical=False
            )
        if request.dns_names or request.ip_addresses:
            names: list[x509.GeneralName] = [x509.DNSName(d) for d in request.dns_names]
            names += [x509.IPAddress(ipaddress.ip_address(i)) for i in request.ip_addresses]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


@dataclass(frozen=True)
class CertInfo:
    """What the PKI compares in an existing certificate."""

    common_name: str
    organizations: tuple[str, ...]
    sans: frozenset[str]  # "DNS:name" / "IP:address"
    usages: frozenset[Usage]
    is_ca: bool
    not_before: dt.datetime
    not_after: dt.datetime
    issuer_common_name: str
    serial: int

    def days_left(self, now: dt.datetime) -> int:
        """Whole days until expiry (negative once expired)."""
        return (self.not_after - now) // dt.timedelta(days=1)

    @property
    def subject_text(self) -> str:
        parts = [f"O={o}" for o in self.organizations] + [f"CN={self.common_name}"]
        return ", ".join(parts)


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in name.get_attributes_for_oid(oid)]


def describe(cert: x509.Certificate) -> CertInfo:
    """The comparable facts of ``cert``."""
    sans: set[str] = set()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans |= {f"DNS:{d.lower()}" for d in san.get_values_for_type(x509.DNSName)}
        sans |= {f"IP:{ip}" for ip in san.get_values_for_type(x509.IPAddress)}
    except x509.ExtensionNotFound:
        pass
    usages: set[Usage] = set()
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        usages = {_USAGE_OF[oid.dotted_string] for oid in eku if oid.dotted_string in _USAGE_OF}
    except x509.ExtensionNotFound:
        pass
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    common_names = _attr(cert.subject, NameOID.COMMON_NAME)
    issuer = _attr(cert.issuer, NameOID.COMMON_NAME)
    return CertInfo(
        common_name=common_names[0] if common_names else "",
        organizations=tuple(_attr(cert.subject, NameOID.ORGANIZATION_NAME)),
        sans=frozenset(sans),
        usages=frozenset(usages),
        is_ca=is_ca,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        issuer_common_name=issuer[0] if issuer else "",
        serial=cert.serial_number,
    )


def key_matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def is_p256(key: PrivateKey) -> bool:
    return isinstance(key.curve, ec.SECP256R1)


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether ``ca`` directly issued ``cert`` (names and signature)."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
