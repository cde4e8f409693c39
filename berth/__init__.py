"""berth's host side: API server, store, scheduler, controllers, node agent and proxy.

This package runs on the cluster's hosts and never imports :mod:`provisioner`.
"""


def __getattr__(name: str) -> str:
    """``berth.__version__``, looked up on first use. Every component imports this package, but
    only the agent and the API server ask for the version: importing :mod:`importlib.metadata`
    (email, zipfile, csv, ... come with it) and searching ``sys.path`` for the distribution cost
    each process ~3 MiB and ~25 ms of start-up (bench/footprint.py)."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415 - see above

    try:
        found = version("berth")
    except PackageNotFoundError:  # running from a shipped tree without dist-info
        found = "0.0.0+unknown"
    globals()["__version__"] = found  # later lookups find the attribute itself
    return found
