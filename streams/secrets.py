"""Credentials by reference only: ``${env:NAME}`` and ``${file:/path}``, and their masking.

A literal credential in configuration is refused; resolved values live in memory only and
every summary, event and log line shows them masked.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REFERENCE = re.compile(r"\$\{(env|file):([^}]+)\}")
MASK = "****"

# Header and query names that carry credentials whatever their value looks like.
_SENSITIVE_NAME = re.compile(
    r"(authorization|api[-_]?key|apikey|token|secret|password|passwd|signature|cookie|session)",
    re.IGNORECASE,
)


def is_sensitive_name(name: str) -> bool:
    return bool(_SENSITIVE_NAME.search(name))


def has_reference(value: str) -> bool:
    return bool(REFERENCE.search(value))


def resolve_references(value: str) -> str:
    """Replace every reference in ``value``; raise ValueError naming the one that cannot be."""

    def replace(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2).strip()
        if kind == "env":
            resolved = os.environ.get(name)
            if resolved is None:
                raise ValueError(f"${{env:{name}}} is not set")
            return resolved
        path = Path(name)
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"${{file:{name}}} cannot be read ({exc.strerror})") from None

    return REFERENCE.sub(replace, value)


def mask_header(name: str, value: str) -> str:
    """``Authorization: Basic abc`` → ``Basic ****``: keep the scheme, hide the credential."""
    scheme, _, rest = value.partition(" ")
    if rest and name.lower() in ("authorization", "proxy-authorization"):
        return f"{scheme} {MASK}"
    return MASK


def mask_url(url: str) -> str:
    """Hide user info and every query value: they carry credentials or lead data (PII)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK) for k, _ in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
