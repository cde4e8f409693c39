"""The PKI seam for API server tests.

Today the certificates come from :mod:`tests.harness.apiserver` (a throwaway CA written with
``cryptography``). When ``provisioner.pki`` is the source of truth, only this module changes.
"""

from __future__ import annotations

from tests.harness.apiserver import TestPKI, write_kubeconfig

__all__ = ["TestPKI", "write_kubeconfig"]
