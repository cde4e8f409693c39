"""Cache keys of API objects, as client-go's ``MetaNamespaceKeyFunc`` makes them: informers,
work queues and the fake client index objects by them."""

from __future__ import annotations

from typing import NewType

ObjectKey = NewType("ObjectKey", str)
"""``namespace/name`` for namespaced objects, ``name`` for cluster-scoped ones."""


def make_key(namespace: str | None, name: str) -> ObjectKey:
    return ObjectKey(f"{namespace}/{name}" if namespace else name)


def split_key(key: ObjectKey | str) -> tuple[str | None, str]:
    """``(namespace, name)``; namespace is None for cluster-scoped keys."""
    namespace, sep, name = key.partition("/")
    return (namespace, name) if sep else (None, namespace)
