"""Credentials by reference only: ``${env:NAME}`` and ``${file:/path}``, and their masking.

A literal credential in configuration is refused; resolved values live in memory only.
Every resolved value is also known to ``SCRUBBER``, which replaces it (and the encodings
it travels in: percent-encoded, Base64, inside Basic credentials) by ``****`` in whatever
leaves the process: events, outcomes, dead letters, table values, logs and CLI output. So
a recipient that echoes our headers, or an HTTP library quoting the URL in an error, can
no longer carry a credential into a topic.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

REFERENCE = re.compile(r"\$\{(env|file):([^}]+)\}")
MASK = "****"

# Header and query names that carry credentials whatever their value looks like
# (X-Access-Key, Ocp-Apim-Subscription-Key, X-Auth, Private-Key, Session-Id, ...).
_SENSITIVE_NAME = re.compile(
    r"(auth|key|token|secret|password|passwd|credential|signature|session|cookie)",
    re.IGNORECASE,
)
# Headers whose names match but carry no credential: the value is ours, per request.
_NOT_CREDENTIALS = frozenset({"idempotency-key", "x-idempotency-key"})


def is_sensitive_name(name: str) -> bool:
    return name.lower() not in _NOT_CREDENTIALS and bool(_SENSITIVE_NAME.search(name))


def has_reference(value: str) -> bool:
    return bool(REFERENCE.search(value))


# ``courier check --no-secrets``: references that cannot be resolved here (a CI job without
# the production secrets) stand for this, and checks of a secret's own value are skipped.
UNRESOLVED = "unresolved-secret"
_unresolved_allowed: ContextVar[bool] = ContextVar("unresolved_allowed", default=False)


@contextmanager
def without_secret_values() -> Iterator[None]:
    """Inside, a reference that cannot be resolved stands as ``UNRESOLVED``."""
    token = _unresolved_allowed.set(True)
    try:
        yield
    finally:
        _unresolved_allowed.reset(token)


def secrets_at_hand() -> bool:
    """False inside ``without_secret_values``: a file checked where the workers' secrets and
    mounted files are not (``courier check --no-secrets``, ``courier admin``)."""
    return not _unresolved_allowed.get()


def is_unresolved(value: str) -> bool:
    return UNRESOLVED in value


def resolve_references(value: str) -> str:
    """Replace every reference in ``value``; raise ValueError naming the one that cannot be.

    Every value resolved is a credential from then on: the scrubber knows it."""

    def replace(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2).strip()
        if kind == "env":
            resolved = os.environ.get(name)
            if resolved is None:
                if _unresolved_allowed.get():
                    return UNRESOLVED
                raise ValueError(f"${{env:{name}}} is not set")
        else:
            try:
                resolved = Path(name).read_text(encoding="utf-8").strip()
            except OSError as exc:
                if _unresolved_allowed.get():
                    return UNRESOLVED
                raise ValueError(f"${{file:{name}}} cannot be read ({exc.strerror})") from None
        SCRUBBER.keep_secret(resolved)
        return resolved

    resolved = REFERENCE.sub(replace, value)
    if not is_unresolved(resolved):
        SCRUBBER.keep_secret(resolved)
    return resolved


def single_line(value: str, where: str) -> str:
    """A credential that goes into a header or URL: one line, no control characters."""
    if any(c < " " or c == "\x7f" for c in value):
        raise ValueError(
            f"{where}: the resolved value has a line break or control character "
            "(a ${file:} with more than one line?)"
        )
    return value


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


# Shorter values are not scrubbed: four characters would blank half of every text.
_SHORTEST_SECRET = 6
# Tokens made while running (OAuth access tokens, our JWTs): the newest are kept.
_RUNTIME_SECRETS = 256


class Scrubber:
    """Known secret values → ``****`` in any text; one regex over every form they take."""

    def __init__(self, shortest: int = _SHORTEST_SECRET) -> None:
        self._shortest = shortest
        self._configured: set[str] = set()
        self._runtime: OrderedDict[str, None] = OrderedDict()
        self._pattern: re.Pattern[str] | None = None

    def keep_secret(self, value: str, *, runtime: bool = False) -> None:
        """Know ``value`` as a secret (``runtime``: a token made while running, of which
        only the newest few hundred are remembered)."""
        value = value.strip()
        if len(value) < self._shortest or value in self._configured:
            return
        if runtime:
            self._runtime[value] = None
            self._runtime.move_to_end(value)
            while len(self._runtime) > _RUNTIME_SECRETS:
                self._runtime.popitem(last=False)
        else:
            self._configured.add(value)
        self._pattern = None

    def keep_basic(self, username: str, password: str) -> None:
        """HTTP Basic credentials travel as one Base64 text of ``user:password``."""
        pair = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.keep_secret(pair)

    def scrub(self, text: str) -> str:
        pattern = self._compiled()
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def scrub_any(self, value: Any) -> Any:
        """``scrub`` through strings, dicts (keys and values), lists and tuples (new ones;
        the strings themselves when nothing in them is secret)."""
        pattern = self._compiled()
        return _scrubbed(value, str if pattern is None else partial(pattern.sub, MASK))

    def _compiled(self) -> re.Pattern[str] | None:
        if self._pattern is None:
            values = [*self._configured, *self._runtime]
            if not values:
                return None
            forms = sorted(set(_forms(values, self._shortest)), key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(form) for form in forms))
        return self._pattern


def _scrubbed(value: Any, sub: Callable[[str], str]) -> Any:
    # Strings in a dict or list are scrubbed in place of a call each (a request's headers,
    # an answer's captured values: every delivery has some).
    if isinstance(value, str):
        return sub(value)
    if isinstance(value, dict):
        return {
            (sub(k) if type(k) is str else _scrubbed(k, sub)): (
                sub(v) if type(v) is str else _scrubbed(v, sub)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(sub(v) if type(v) is str else _scrubbed(v, sub) for v in value)
    return value


def _forms(values: Iterable[str], shortest: int) -> Iterable[str]:
    for value in values:
        raw = value.encode()
        for form in (
            value,
            quote(value, safe=""),
            quote_plus(value),
            base64.b64encode(raw).decode().rstrip("="),
            base64.urlsafe_b64encode(raw).decode().rstrip("="),
        ):
            if len(form) >= shortest:
                yield form


# Secrets are resolved once per process, at start: one scrubber for the process.
SCRUBBER = Scrubber()


def scrub_log_records() -> None:
    """Scrub every log record as it is made, message and traceback, whatever the handler:
    Faust, aiohttp and aiokafka log through their own loggers and handlers."""
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "scrubs", False):
        return

    def scrubbed_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the record as it is, for its handler
            return record
        # args=(): mode's formatter turns None into (None,) and formats the text with it.
        record.msg, record.args = SCRUBBER.scrub(message), ()
        if record.exc_info and record.exc_info[0] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = SCRUBBER.scrub(text)
        return record

    scrubbed_record.scrubs = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(scrubbed_record)
