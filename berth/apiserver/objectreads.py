"""The one rule the node and ingress authorizers share for reading Secrets (and ConfigMaps):
a read may touch exactly one named object in one namespace.

A ``get`` names its object in the path; a ``list`` or ``watch`` must be pinned to one object
by the field selector ``metadata.name=<name>`` (how a kubelet, or the ingress controller's
per-Secret informer, watches one object). Listing or watching a namespace or the whole
cluster, a subresource, or any write is refused: the caller then asks whether the reader is
related to that one object (its pods reference it, an Ingress names it).
"""

from __future__ import annotations

from berth.api.selectors import pinned_field_value

from .rbac import Attributes

READ_VERBS = ("get", "list", "watch")


def single_object_read(attrs: Attributes, reader: str) -> tuple[str, str]:
    """``(name, "")``: the request reads only the namespaced object ``name``; else
    ``("", why not)``. ``reader`` names the requester in the refusal ("node 'n1'")."""
    if attrs.verb not in READ_VERBS:
        return "", "can only read resources of this type"
    if attrs.subresource:
        return "", "cannot read subresource"
    if not attrs.namespace:
        return "", "can only read namespaced object of this type"
    name = attrs.name
    if not name and attrs.verb != "get":
        name = pinned_field_value(attrs.field_selector, "metadata.name") or ""
        if not name:
            return "", f"{reader} can only get individual {attrs.resource}"
    if not name:
        return "", "no object name found"
    return name, ""
