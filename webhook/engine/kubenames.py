"""Kubernetes' name rules, in one place: a DNS label (RFC 1123: container names, annotation-prefix parts), a DNS
subdomain (an annotation key's prefix), a label value (devices and partitions become node label values).

Patterns are plain ASCII classes (never `\\w` or `\\d`, which match other scripts too) and RE2-compatible, so the
chart's schema and templates use the same text (`make generate`).
"""

from __future__ import annotations

import re
from typing import Final

DNS_LABEL_PATTERN: Final = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
DNS_SUBDOMAIN_PATTERN: Final = rf"{DNS_LABEL_PATTERN}(\.{DNS_LABEL_PATTERN})*"
DNS_SUBDOMAIN_MAX: Final = 253
LABEL_VALUE_PATTERN: Final = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"

_DNS_LABEL: Final = re.compile(DNS_LABEL_PATTERN)
_DNS_SUBDOMAIN: Final = re.compile(DNS_SUBDOMAIN_PATTERN)
_LABEL_VALUE: Final = re.compile(LABEL_VALUE_PATTERN)


def is_dns_label(text: str) -> bool:
    """1 to 63 lower-case ASCII letters, digits and `-`, alphanumeric at both ends."""
    return _DNS_LABEL.fullmatch(text) is not None


def is_dns_subdomain(text: str) -> bool:
    """DNS labels joined by `.`, at most 253 characters."""
    return len(text) <= DNS_SUBDOMAIN_MAX and _DNS_SUBDOMAIN.fullmatch(text) is not None


def is_label_value(text: str) -> bool:
    """A non-empty label value: 1 to 63 ASCII letters, digits, `-`, `_`, `.`, alphanumeric at both ends."""
    return _LABEL_VALUE.fullmatch(text) is not None
