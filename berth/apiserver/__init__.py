"""berth's Kubernetes-compatible API server (aiohttp over mTLS, backed by a revisioned store).

Start it with ``python -m berth.apiserver --config FILE``; embed it with
:class:`berth.apiserver.app.ApiServer`; tests use :mod:`tests.harness.apiserver`.
"""
