"""The cluster PKI: a declared table of certificates, made to match the spec.

Public API::

    ensure(spec, state, *, now=None, renew_leaves=False, dry_run=False, scratch_dir=None)
        -> PkiReport            # create / verify / re-issue, plus SA keys, encryption key and
                                # kubeconfigs; the caller holds state.lock()
    status(spec, state, *, now=None) -> list[CertStatus]     # read-only
    expiry_warnings(spec, state, *, now=None) -> list[str]   # print these in every command
    files_for_host(spec, state, host) -> list[HostFile]      # what to copy where on a host
    expand(spec) -> list[CertRequest]                        # what the cluster needs
    PkiFiles(state).cert(id) / .key(id) / .sa_key / .sa_pub / .encryption_key / .kubeconfig(f)

File layout: see :mod:`provisioner.pki.files`.
"""

from __future__ import annotations

from provisioner.pki.certlist import CERTS, CertId, CertRequest, CertSpec, Usage, expand
from provisioner.pki.distribution import REMOTE_KUBECONFIGS, REMOTE_PKI, HostFile, files_for_host
from provisioner.pki.ensure import PkiAction, PkiReport, ensure
from provisioner.pki.files import PkiFiles
from provisioner.pki.status import CertStatus, expiry_warnings, status

__all__ = [
    "CERTS",
    "REMOTE_KUBECONFIGS",
    "REMOTE_PKI",
    "CertId",
    "CertRequest",
    "CertSpec",
    "CertStatus",
    "HostFile",
    "PkiAction",
    "PkiFiles",
    "PkiReport",
    "Usage",
    "ensure",
    "expand",
    "expiry_warnings",
    "files_for_host",
    "status",
]
