"""Files a spec points at on the operator's machine, checked when the spec is loaded: a
registry CA bundle that is missing or holds no certificate is reported with the other spec
problems, before any host is contacted (an identity file is checked when SSH uses it)."""

from __future__ import annotations

from collections.abc import Iterator

from cryptography import x509

from provisioner.spec.model import ClusterSpec
from provisioner.spec.problems import Problem


def local_file_problems(spec: ClusterSpec) -> Iterator[Problem]:
    for index, registry in enumerate(spec.spec.registries):
        path = spec.resolve_path(registry.ca_file)
        if path is None:
            continue
        where = ("spec", "registries", index, "caFile")
        try:
            data = path.read_bytes()
        except OSError as error:
            yield Problem(
                where,
                f"cannot read the CA bundle {path}: {error.strerror}",
                registry.ca_file,
                hint="relative paths resolve against the spec file's directory",
            )
            continue
        try:
            certificates = x509.load_pem_x509_certificates(data)
        except ValueError:
            certificates = []
        if not certificates:
            yield Problem(
                where,
                f"{path} holds no PEM certificate",
                registry.ca_file,
                hint="give the CA certificate(s) that signed the registry's certificate, PEM",
            )
