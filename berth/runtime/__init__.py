"""Node-side container runtime: OCI images (pull, verify, store, unpack), OCI bundles and runc.

Everything in this package runs on the node with the standard library only (plus ``runc`` and
the CNI plugins on the host), so it can be shipped to a bare host without extra wheels.
"""
