"""paramiko, imported without invoke: berth's modules import ``paramiko`` from here.

paramiko's ``config`` module imports invoke when it is installed (paramiko depends on it), only
to run the ``Match exec`` commands of an OpenSSH client config, which berth never reads. invoke
in turn imports unittest.mock and asyncio: together about a tenth of the CPU ``berth apply``
spends starting. While paramiko loads, ``invoke`` is marked missing (paramiko handles that, as it
does for an install without it), then unmarked, so a later ``import invoke`` elsewhere works.
"""

from __future__ import annotations

import sys

if "paramiko" not in sys.modules and "invoke" not in sys.modules:
    sys.modules["invoke"] = None  # type: ignore[assignment]  # None = "not installed"
    try:
        import paramiko
    finally:
        if sys.modules.get("invoke") is None:  # still our marker, not a real import
            sys.modules.pop("invoke", None)

import paramiko  # the module itself, loaded above or earlier

__all__ = ["paramiko"]
