"""The name syntaxes Kubernetes validation shares (upstream's ``k8s.io/apimachinery``
``util/validation``): DNS-1123 labels and subdomains, label values and IANA service (port)
names. Each predicate takes any value and is true only for a string of the syntax.
"""

from __future__ import annotations

import re
from typing import Any

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
# At most 15 characters, at least one letter, '-' neither at an end nor doubled.
_IANA_SVC_NAME = re.compile(r"(?=.{1,15}\Z)(?=.*[a-z])[a-z0-9]([a-z0-9]|-(?=[a-z0-9]))*")

LABEL_HELP = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
SUBDOMAIN_HELP = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character"
)


def is_dns_label(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 63 and bool(_DNS1123_LABEL.fullmatch(value))


def is_dns_subdomain(value: Any) -> bool:
    return (
        isinstance(value, str) and len(value) <= 253 and bool(_DNS1123_SUBDOMAIN.fullmatch(value))
    )


def is_label_value(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 63 and bool(_LABEL_VALUE.fullmatch(value))


def is_iana_svc_name(value: Any) -> bool:
    return isinstance(value, str) and bool(_IANA_SVC_NAME.fullmatch(value))
