"""Which TLS Secrets berth's ingress controller may read: the graph behind its authorizer.

An Ingress served by berth (its class, or the default class when it names none, is an
IngressClass whose ``spec.controller`` is :data:`berth.api.ingress.CONTROLLER`) links the
ingress identity to each Secret its ``spec.tls[].secretName`` names, in the Ingress's own
namespace. Nothing else: the controller needs no other Secret, so a node whose
``ingress.conf`` is stolen gives away only the certificates the node serves anyway.

Fed from the watch hub like :class:`~berth.apiserver.nodegraph.NodeGraph`. A decision looks up
the Ingresses naming one Secret and resolves each one's class against the IngressClasses kept
here, so changing a class (or which class is the default) needs no recomputation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from berth.api import ingress as ing
from berth.api.meta import Obj

INGRESSES_PREFIX = "/registry/networking.k8s.io/ingresses/"
CLASSES_PREFIX = "/registry/networking.k8s.io/ingressclasses/"

IngressKey = tuple[str, str]
"""(namespace, name) of an Ingress."""


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def tls_secret_names(ingress: Obj) -> frozenset[str]:
    """The Secrets (in the Ingress's namespace) its TLS section names."""
    tls = _dict(ingress.get("spec")).get("tls")
    if not isinstance(tls, list):
        return frozenset()
    return frozenset(n for t in tls if (n := _str(_dict(t).get("secretName"))))


@dataclass(frozen=True, slots=True)
class _Ingress:
    class_name: str | None
    secrets: frozenset[str]


class IngressGraph:
    """TLS Secrets named by the Ingresses berth's ingress controller serves."""

    def __init__(self, controller: str = ing.CONTROLLER) -> None:
        self.controller = controller
        self._ingresses: dict[IngressKey, _Ingress] = {}
        # (namespace, secret) -> the Ingresses (names, same namespace) naming it
        self._named_by: dict[tuple[str, str], set[str]] = {}
        self._classes: dict[str, Obj] = {}
        self._ours: set[str] = set()
        self._default: str | None = None

    # -- feeding -----------------------------------------------------------------------------

    def observe(self, key: str, obj: Obj, *, deleted: bool) -> None:
        """Apply one watch-hub event (other kinds cost a prefix test)."""
        if key.startswith(INGRESSES_PREFIX):
            self.apply_ingress(obj, deleted=deleted)
        elif key.startswith(CLASSES_PREFIX):
            self.apply_class(obj, deleted=deleted)

    def apply_ingress(self, obj: Obj, *, deleted: bool) -> None:
        meta = _dict(obj.get("metadata"))
        ns, name = _str(meta.get("namespace")), _str(meta.get("name"))
        old = self._ingresses.pop((ns, name), None)
        if old is not None:
            for secret in old.secrets:
                names = self._named_by.get((ns, secret))
                if names is not None:
                    names.discard(name)
                    if not names:
                        del self._named_by[(ns, secret)]
        if deleted:
            return
        entry = _Ingress(ing.class_name(obj), tls_secret_names(obj))
        if not entry.secrets:
            return
        self._ingresses[(ns, name)] = entry
        for secret in entry.secrets:
            self._named_by.setdefault((ns, secret), set()).add(name)

    def apply_class(self, obj: Obj, *, deleted: bool) -> None:
        name = _str(_dict(obj.get("metadata")).get("name"))
        if deleted:
            self._classes.pop(name, None)
        else:
            self._classes[name] = obj
        # IngressClasses are few (one per controller): recompute the two derived facts
        self._ours = {
            n
            for n, c in self._classes.items()
            if _dict(c.get("spec")).get("controller") == self.controller
        }
        self._default = ing.default_class(self._classes.values())

    # -- queries -----------------------------------------------------------------------------

    def _served(self, entry: _Ingress) -> bool:
        name = entry.class_name if entry.class_name is not None else self._default
        return name is not None and name in self._ours

    def names_secret(self, namespace: str, secret: str) -> bool:
        """Whether an Ingress berth serves names Secret ``namespace/secret`` for TLS."""
        for name in self._named_by.get((namespace, secret), ()):
            entry = self._ingresses.get((namespace, name))
            if entry is not None and self._served(entry):
                return True
        return False

    def __len__(self) -> int:
        """Ingresses naming at least one TLS Secret."""
        return len(self._ingresses)
