"""berth's host side: API server, store, scheduler, controllers, node agent and proxy.

This package runs on the cluster's hosts and never imports :mod:`provisioner`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("berth")
except PackageNotFoundError:  # running from a shipped tree without dist-info
    __version__ = "0.0.0+unknown"
