"""Helpers for spec tests: build small spec documents with predictable line numbers."""

from __future__ import annotations

import textwrap

HEAD = "apiVersion: berth.dev/v1alpha1\nkind: Cluster\nmetadata: {name: t}\nspec:\n"
"""Four lines; a body given to :func:`doc` starts on line 5, indented by two spaces."""

ONE_HOST = "hosts:\n  - {name: n1, address: 10.0.0.1, roles: [control-plane, worker]}\n"


def doc(body: str) -> str:
    """A whole spec document whose ``spec:`` section is ``body``."""
    return HEAD + textwrap.indent(textwrap.dedent(body).strip("\n"), "  ") + "\n"
