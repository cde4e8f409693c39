"""The upstream Kubernetes v1.32 schemas of every built-in kind, loaded once.

Source: the PyPI package ``kubernetes-validate``, which ships upstream's OpenAPI v2
definitions (with their descriptions, ``x-kubernetes-group-version-kind`` and the list-type /
merge-key extensions) converted to JSON Schema, all in one file per Kubernetes release
(``kubernetes-json-schema/v1.32.0-local/_definitions.json``, a ``$defs`` mapping). Writing
these schemas by hand would be thousands of lines that drift from upstream.

Where the file comes from:

- in a development checkout (and on the operator's machine) the installed
  ``kubernetes_validate`` package, found without importing it (its import pulls in
  ``jsonschema``);
- on a host, a gzip-compressed copy that the bundle build puts next to this module
  (:data:`BUNDLED_NAME`): the whole package is 72 MB of schemas for every release, the hosts
  need this one file (1.3 MB, 0.2 MB compressed).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path
from typing import Any

import orjson

KUBERNETES_VERSION = "v1.32.0"
"""The release whose schemas are served (the version ``/version`` reports)."""
SOURCE_PACKAGE = "kubernetes_validate"
SOURCE_RELATIVE = f"kubernetes-json-schema/{KUBERNETES_VERSION}-local/_definitions.json"
"""The definitions file inside the ``kubernetes_validate`` package."""
BUNDLED_NAME = f"k8s-definitions-{KUBERNETES_VERSION}.json.gz"
"""The compressed copy the host bundle carries beside this module."""


class DefinitionsMissing(RuntimeError):
    """Neither the bundled copy nor the ``kubernetes-validate`` package is there."""


def bundled_path() -> Path:
    return Path(__file__).with_name(BUNDLED_NAME)


def package_path() -> Path | None:
    """The definitions file of the installed ``kubernetes_validate``, if any."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / SOURCE_RELATIVE
        if candidate.is_file():
            return candidate
    return None


def source_path() -> Path:
    """Where the definitions are read from: the bundled copy first (hosts), else the package."""
    bundled = bundled_path()
    if bundled.is_file():
        return bundled
    found = package_path()
    if found is None:
        raise DefinitionsMissing(
            f"the Kubernetes schemas are missing: neither {bundled} nor the"
            f" {SOURCE_PACKAGE} package ({SOURCE_RELATIVE}) is installed"
        )
    return found


def read_definitions(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    document = orjson.loads(raw)
    defs = document.get("$defs") if isinstance(document, dict) else None
    if not isinstance(defs, dict):
        raise DefinitionsMissing(f"{path} holds no $defs mapping")
    return defs


@functools.cache
def load_definitions() -> dict[str, Any]:
    """The ``$defs`` mapping (definition name -> JSON Schema), read once per process.

    Shared: callers must not modify it."""
    return read_definitions(source_path())


def compressed_definitions() -> bytes:
    """The definitions file gzip-compressed, as the bundle build ships it."""
    path = package_path()
    if path is None:
        raise DefinitionsMissing(f"the {SOURCE_PACKAGE} package is not installed")
    return gzip.compress(path.read_bytes(), compresslevel=9, mtime=0)
