"""The values that travel between stages: a lead, a request, a response, an outcome.

Plain frozen dataclasses so every stage can be tested with literals and no Kafka.
"""

from __future__ import annotations

import ast
import codecs
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
import orjson

# Top-level sections of a lead envelope; a bare path like ``email`` resolves inside ``lead``.
ENVELOPE_SECTIONS = ("lead", "appended", "source", "submission")


@dataclass(frozen=True, slots=True)
class Lead:
    """A parsed lead envelope: ``id`` plus the sections ``lead``, ``appended``, ``source``, ..."""

    id: str
    envelope: dict[str, Any]

    def section(self, name: str) -> dict[str, Any]:
        value = self.envelope.get(name)
        return value if isinstance(value, dict) else {}

    def get(self, name: str, default: Any = None) -> Any:
        """A field of the ``lead`` section (the common case for validation)."""
        return self.section("lead").get(name, default)

    @property
    def source_name(self) -> str | None:
        """``source.name``, for reports per source (the first 200 characters)."""
        name = self.section("source").get("name")
        return str(name)[:200] if isinstance(name, str | int) and name != "" else None


@dataclass(frozen=True, slots=True)
class Target:
    """Where an integration's request goes: the destination's method and resolved URL."""

    method: str
    url: str
    # This lead to this destination: the same on every try (the Idempotency-Key).
    message_id: str = ""
    # The host an OAuth 2.0 token answer named for the API (Salesforce's ``instance_url``).
    instance_url: str | None = None


JSON_FIRST = "application/json, text/plain;q=0.9, application/xml;q=0.8, text/xml;q=0.8"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What an integration asks the core to send; built without I/O."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # Header names whose values are secrets: masked in every summary, event and log.
    secret_headers: frozenset[str] = frozenset()

    @classmethod
    def json(
        cls,
        method: str,
        url: str,
        payload: Any,
        headers: dict[str, str] | None = None,
        secret_headers: frozenset[str] = frozenset(),
    ) -> HttpRequest:
        # Accept: web frameworks answer by it. Laravel and Rails send a refusal as a 422 with
        # the errors in JSON only to a client that asks for JSON first; to one that does
        # not, a redirect back to the form (read as "Redirected (HTTP 302)") or an HTML page.
        # Text and XML too, for strict servers (JAX-RS) that would answer 406 to JSON alone;
        # no */*, which Rails takes for a browser's header and answers with HTML.
        all_headers = {"Content-Type": "application/json", "Accept": JSON_FIRST, **(headers or {})}
        # A GET carries no body: its fields belong in the query (see get_query).
        body = b"" if method == "GET" else orjson.dumps(payload)
        return cls(method, url, all_headers, body, secret_headers)


def text_codec(name: str) -> str | None:
    """Python's name for the text encoding called ``name`` (``windows-1252`` → ``cp1252``),
    or None when it is no text encoding Python knows (``klingon``, ``base64``)."""
    try:
        codec = codecs.lookup(name).name
        b"a".decode(codec, errors="replace")  # a text encoding, not base64
    except (LookupError, TypeError, ValueError):  # ValueError: a name with a NUL in it
        return None
    return codec


_NOT_PARSED = object()


# XML as APIs write it by hand (HttpResponse._written_by_hand), up to this size: tag names,
# an & that opens no entity; a page is not read that way; a declaration is not read from text.
_TAG_NAME = re.compile(r"(</?)([A-Za-z_][\w.\-]*(?::[\w.\-]+)?)")
_BARE_AMPERSAND = re.compile(r"&(?!#?\w{1,32};)")
_HAND_WRITTEN_LIMIT = 65_536
_HTML_OPENING = re.compile(
    r"\ufeff?\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype|html)\b", re.I | re.S
)
_DECLARATION = re.compile(r"\ufeff?\s*<\?xml[^>]*\?>")


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    _charset: str | None = field(default=None, init=False, repr=False, compare=False)
    # The answer as XML and as JSON, once parsed (``xml()``, ``json()``); _NOT_PARSED
    # until asked.
    _xml: Any = field(default=_NOT_PARSED, init=False, repr=False, compare=False)
    _json: Any = field(default=_NOT_PARSED, init=False, repr=False, compare=False)

    def header(self, name: str) -> str | None:
        """A header's value, whatever the case of its name."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    @property
    def charset(self) -> str:
        """The charset its Content-Type names (``text/plain; charset=iso-8859-1``) when it is
        one Python knows, else UTF-8: JSON's only encoding, and most answers' without one.
        Found once: an answer is read as text several times (its raw, rules, verdict)."""
        charset = self._charset
        if charset is None:
            charset = self._named_charset()
            object.__setattr__(self, "_charset", charset)
        return charset

    def _named_charset(self) -> str:
        head = self.body[:4]
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            # A byte order mark decides, whatever the header says (as browsers read one):
            # .NET's Encoding.Unicode answers in UTF-16 with its mark, often with no charset
            # or "utf-8" named, and every such answer was a sale whatever it said.
            return "utf-16"
        _, _, params = (self.header("Content-Type") or "").partition(";")
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset":
                # A name nobody knows: UTF-8, as without one.
                return text_codec(value.strip().strip('"')) or "utf-8"
        # None named: UTF-16 without a mark by its zero bytes, as RFC 4627 told JSON's
        # readers to (an ASCII character's other byte is zero; UTF-8 has no zero byte).
        if len(head) == 4 and head[1] == head[3] == 0 and head[0] and head[2]:
            return "utf-16-le"
        if len(head) == 4 and head[0] == head[2] == 0 and head[1] and head[3]:
            return "utf-16-be"
        return "utf-8"

    def decoded(self, limit: int | None = None) -> str:
        """The body (its first ``limit`` bytes) as text, in its charset; a byte that is not
        of it is shown as U+FFFD rather than refusing the whole answer."""
        body = self.body if limit is None else self.body[:limit]
        charset = self.charset
        # utf-8-sig: a byte order mark (.NET writes one) is not part of the text.
        return body.decode("utf-8-sig" if charset == "utf-8" else charset, errors="replace")

    @property
    def text(self) -> str:
        return self.decoded()

    def xml(self) -> Element | None:
        """The answer as XML (defusedxml: no entity expansion, no external references), or
        None when it is not XML. Parsed once: a fault, the verdict, a refusal's reason and
        a destination's rules and captures all read it."""
        return self._once("_xml", self._parsed_xml)  # type: ignore[no-any-return]

    @property
    def opens_with_markup(self) -> bool:
        """Whether the answer opens with ``<`` past its blanks and any byte order mark, in
        UTF-8 or UTF-16: .NET's XmlWriter writes a mark before ``<?xml``, and
        ``Encoding.Unicode`` writes UTF-16. Such an answer was no XML to read (a sale
        whatever it said)."""
        return _markup_opening(self.body[:_OPENING]).lstrip()[:1] == "<"

    def _parsed_xml(self) -> Element | None:
        if not self.opens_with_markup:
            return None
        start = self.body.removeprefix(codecs.BOM_UTF8).lstrip()[:5]
        # Without a declaration of its own, XML is read in the charset its header names;
        # expat reads a declaration's encoding, and UTF-16 by its mark or its zero bytes.
        in_bytes = start == b"<?xml" or self.charset == "utf-8" or b"\x00" in start
        try:
            root: Element = SafeET.fromstring(self.body if in_bytes else self.decoded())
        except Exception:  # not XML, truncated XML, or entity tricks defusedxml refuses
            read = self._as_utf8_text() if in_bytes else None
            return read if read is not None else self._written_by_hand()
        return root

    def _written_by_hand(self) -> Element | None:
        """XML as APIs write it by hand, lead buyers' among them, which expat refuses:
        closing tags that differ from their opening ones only in case (``<Code>OK</code>``),
        a bare ``&`` in a text (``<message>Lead received & queued</message>``). Read with
        every tag's name in lower case and such an ``&`` escaped; such a refusal was a
        sale. None when it is not that either (a page, truncated XML)."""
        text = self.decoded(_HAND_WRITTEN_LIMIT)
        if len(self.body) > _HAND_WRITTEN_LIMIT or _HTML_OPENING.match(text[:1024]):
            return None
        escaped = _BARE_AMPERSAND.sub("&amp;", _DECLARATION.sub("", text, count=1))
        # The names as written when they need no mending (a rule's path names them so).
        lowered = _TAG_NAME.sub(lambda tag: tag.group(1) + tag.group(2).lower(), escaped)
        for mended in dict.fromkeys((escaped, lowered)):
            try:
                root: Element = SafeET.fromstring(mended)
            except Exception:  # not XML in this reading
                continue
            return root
        return None

    def _as_utf8_text(self) -> Element | None:
        """XML whose declaration names an encoding its bytes are not in, read as UTF-8
        text (a declaration in text is not read): .NET's StringWriter declares
        ``encoding="utf-16"`` on what the server then sends in UTF-8, which expat refuses.
        None when it is not that either."""
        try:
            root: Element = SafeET.fromstring(self.body.decode("utf-8-sig"))
        except Exception:  # not UTF-8, or not XML in any reading
            return None
        return root

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON (an HTML error page, say). JSON is
        UTF-8 by its RFC, but older APIs answer in the charset their header names. Parsed
        once, as ``xml()``: the verdict, a destination's rules, defaults and captures and
        its integration all read it; what it returns is shared, so it is only read."""
        return self._once("_json", self._parsed_json)

    def _once(self, name: str, parse: Callable[[], Any]) -> Any:
        """The body as ``parse`` reads it, parsed at the first ask and kept in ``name``."""
        parsed = getattr(self, name)
        if parsed is _NOT_PARSED:
            parsed = parse()
            object.__setattr__(self, name, parsed)
        return parsed

    def _parsed_json(self) -> Any:
        body = self.body
        if body.startswith(codecs.BOM_UTF8):  # .NET writes one; RFC 8259 lets readers skip it
            body = body[len(codecs.BOM_UTF8) :]
        try:
            return json_in_a_string(json_loads(body))
        except orjson.JSONDecodeError:
            pass
        # Each reading keeps an integer past 64 bits as its digits (``json_loads``).
        if self.charset != "utf-8":
            try:
                return json_loads(self.decoded().encode())
            except orjson.JSONDecodeError:
                pass
        notices = _PHP_NOTICES.match(body)
        if notices is not None and notices.end() < len(body):
            try:  # the answer after PHP's notices
                return json_loads(body[notices.end() :])
            except orjson.JSONDecodeError:
                pass
        wrapped = _script_wrapped(body)
        if wrapped is not None:
            return wrapped
        return _lenient_json(self.decoded()) if looks_like_json(body) else None


# How much of an answer is looked at to see how it opens.
_OPENING = 64


def _markup_opening(head: bytes) -> str:
    """An answer's first bytes as text enough to see whether it opens with markup."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return head.decode("utf-16", errors="replace")
    if head.lstrip()[:2] == b"<\x00":  # UTF-16 little-endian with no mark
        return head.decode("utf-16-le", errors="replace")
    if head.lstrip()[:2] == b"\x00<":
        return head.decode("utf-16-be", errors="replace")
    return head.removeprefix(codecs.BOM_UTF8).decode("latin-1")


def json_in_a_string(value: Any) -> Any:
    """A JSON answer encoded twice (a JSON string that holds an object or array: ASP.NET
    actions that return ``JsonConvert.SerializeObject(…)``, ASMX's ``{"d": "{…}"}``) as
    what it holds; any other value as it is. Read as a line of text, such an answer was a
    sale whatever it said."""
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        try:
            inner = json_loads(value.encode())
        except orjson.JSONDecodeError:
            return value
        if isinstance(inner, dict | list):
            return inner
    return value


def json_loads(data: bytes) -> Any:
    """``orjson.loads``, except that an integer past 64 bits keeps its digits, as text:
    orjson reads it as a float, so a buyer's 24-digit lead id became
    1.2345678901234569e+23 (its reference lost), two leads numbered so upstream one id,
    and a 27-digit account number was sent rounded. Raises orjson.JSONDecodeError as
    ``orjson.loads`` does."""
    if _TWENTY_DIGITS in data.translate(_DIGITS_AS_ONES):
        exact = _with_long_integers(data)
        if exact is not None:
            return exact
    return orjson.loads(data)


# A run of 20 digits: perhaps an integer past 64 bits (only then is Python's reader used).
# Found with two passes in C (every digit made "1", then a search), a seventh of a regular
# expression's time: this is asked of every lead.
_DIGITS_AS_ONES = bytes(0x31 if 0x30 <= byte <= 0x39 else 0x30 for byte in range(256))
_TWENTY_DIGITS = b"1" * 20


def _with_long_integers(body: bytes) -> Any:
    """The answer as JSON with every integer past 64 bits kept as its digits (text), the
    rest as orjson reads it; None when it is not JSON to Python either, or holds what no
    event could encode (a lone surrogate): then it is read as before."""
    try:
        value = json.loads(body, parse_int=_json_integer)
        return orjson.loads(orjson.dumps(value))
    except (ValueError, RecursionError, orjson.JSONEncodeError):
        return None


def _json_integer(digits: str) -> int | str:
    if len(digits) <= 18:
        return int(digits)
    value = int(digits) if len(digits) <= 21 else None
    return value if value is not None and -(2**63) <= value < 2**64 else digits


def looks_like_json(body: bytes) -> bool:
    """Whether a body opens as a JSON object or array does (a byte order mark and blanks
    before it skipped)."""
    return body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"[")


def _lenient_json(text: str) -> Any:
    """An answer that opens as JSON and is not JSON to orjson, read as its writer meant it:
    what Python's json writes for a float that is no number (``NaN``, ``Infinity``); JSON
    followed by something else (a free host's injected ``<script>``, a debug comment),
    read up to its end; a short Python literal (``{'status': 'rejected'}``: an endpoint that
    answers ``str(result)``). None when none of them reads it."""
    text = text.lstrip("\ufeff \t\r\n")
    try:
        value = _JSON_DECODER.raw_decode(text)[0]
    except (ValueError, RecursionError):
        if len(text) > _PYTHON_LITERAL_LIMIT:
            return None
        try:
            value = ast.literal_eval(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None
    if not isinstance(value, dict | list):
        return None
    # As JSON has it, so every reader meets what orjson gives: text keys, no set or bytes,
    # no lone surrogate (which no event could encode), NaN as null.
    try:
        return orjson.loads(orjson.dumps(value))
    except orjson.JSONEncodeError:
        return None


_JSON_DECODER = json.JSONDecoder(parse_int=_json_integer)  # orjson refuses to write a longer one
_PYTHON_LITERAL_LIMIT = 2000  # characters: a verdict, not a document


# JSON made a script: JSONP (``callback({…});``, Express's ``/**/ typeof cb ===
# 'function' && cb({…});``), or behind a guard against its being run as one (Google's and
# Angular's ``)]}\',``, ``while(1);``, ``for(;;);``). An older buyer's API that answers JSONP
# to its own web forms does so to every caller: its refusal was a sale.
_CALLBACK_OPENING = re.compile(
    rb"\s*(?:/\*\*/\s*)?(?:typeof\s+[\w$.]{1,100}\s*===?\s*[\'\"]function[\'\"]\s*&&\s*)?"
    rb"[A-Za-z_$][\w$.]{0,100}\s*\(\s*"
)
_SCRIPT_GUARD = re.compile(
    rb"\s*(?:\)\]\}\',?|while\s*\(\s*1\s*\)\s*;|for\s*\(\s*;\s*;\s*\)\s*;)\s*"
)


def _script_wrapped(body: bytes) -> Any:
    """The JSON object or array inside JSONP's call or after a script guard, else None."""
    guard = _SCRIPT_GUARD.match(body)
    if guard is not None:
        inner = body[guard.end() :]
    else:
        opening = _CALLBACK_OPENING.match(body)
        if opening is None:
            return None
        # The call's end, by stripping (a pattern searched for it took time in the square
        # of a hostile answer's blanks).
        call = body.rstrip().removesuffix(b";").rstrip()
        if not call.endswith(b")"):
            return None
        inner = call[opening.end() : -1]
    if not looks_like_json(inner):
        return None
    try:
        return json_loads(inner)
    except orjson.JSONDecodeError:
        return None


# PHP with display_errors on prints its notices before the answer, as HTML
# ("<br />\n<b>Warning</b>:  Undefined array key "zip" in <b>/var/www/lead.php</b> on line
# <b>12</b><br />\n{"status":"rejected"}") or as text ("Warning: … on line 12\n{…}"): the
# answer was unreadable, and whatever it said, a sale.
_PHP_NOTICES = re.compile(
    rb"(?:\s*(?:<br\s*/?>\s*<b>(?:Warning|Notice|Deprecated|Strict Standards)</b>:.{0,2000}?"
    rb"<br\s*/?>|(?:PHP )?(?:Warning|Notice|Deprecated|Strict Standards): .{0,2000}?"
    rb" on line \d+))+\s*",
    re.DOTALL,
)


# StrEnums: a member is a str equal to its value, and the hot paths use it as one
# (``.value`` is a Python-level property in 3.11: two calls each, ~100 a lead).
class OutcomeKind(StrEnum):
    SUCCESS = "success"  # the recipient accepted the lead
    FAILURE = "failure"  # the recipient said no and would say no again: never retried
    ERROR = "error"  # might work if retried: 5xx, 429, network, timeout
    SKIP = "skip"  # we did not send: validation refused, cap reached, circuit open, ...


class OutcomeCategory(StrEnum):
    """The finer kind routing and billing act on."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # the recipient has it already: a failure, never resent
    HARD_REJECT = "hard_reject"  # does not want it: try the next destination
    SOFT_REJECT = "soft_reject"  # not now (rate limit, busy): may retry later
    INVALID_DATA = "invalid_data"  # the lead lacks or breaks a field
    RECIPIENT_ERROR = "recipient_error"  # 5xx, unreadable answer, connection failed
    TIMEOUT = "timeout"  # it may have been processed: resend only with the same key
    AUTH_ERROR = "auth_error"  # our credentials were refused
    NOT_SENT = "not_sent"  # skipped before any request
    INTERNAL = "internal_error"  # our own code failed on this lead: never retried


DEFAULT_CATEGORY = {
    "success": OutcomeCategory.ACCEPTED,
    "failure": OutcomeCategory.HARD_REJECT,
    "error": OutcomeCategory.RECIPIENT_ERROR,
    "skip": OutcomeCategory.NOT_SENT,
}


REFERENCE_LIMIT = 200  # characters of a recipient's id for a lead


@dataclass(frozen=True, slots=True)
class Retirement:
    """What an answer's ``Deprecation`` (RFC 9745) and ``Sunset`` (RFC 8594) headers say of
    the endpoint: deprecated (since when, in Unix seconds, when it says), and when it stops
    answering; ``link``: its ``rel="deprecation"`` or ``"sunset"`` page (scheme, host and
    path only)."""

    deprecated: bool
    deprecated_at: float | None
    sunset_at: float | None
    link: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt amounted to. ``reason`` is short and countable; ``raw`` is the detail."""

    kind: OutcomeKind
    reason: str = ""
    raw: str | None = None
    retryable: bool = False
    reference_id: str | None = None
    price: Decimal | None = None
    # Values captured from the response; they become ``appended.<destination>.*`` on the lead.
    appended: dict[str, str] = field(default_factory=dict)
    category_given: OutcomeCategory | None = None
    # The recipient's Retry-After, in seconds: the earliest it wants to hear from us again.
    retry_after_s: float | None = None
    # The vendor's quota for this destination is spent (a daily allowance): nothing goes to
    # it for this many seconds, and the lead waits without spending one of its attempts.
    quota_s: float | None = None
    # What the vendor's limit headers said of its allowance: (requests left, out of; None
    # when the vendor does not say), a metric per destination.
    quota_left: tuple[int, int | None] | None = None
    # The recipient said this endpoint is deprecated or will stop answering (its Deprecation
    # or Sunset header): a warning and a metric per destination.
    retiring: Retirement | None = None

    def __post_init__(self) -> None:
        # A recipient's "id" goes into every event, the lead's state and the key that finds
        # the lead by it (feedback): one of 500 KB (a page, an echo of the lead) is no id.
        if self.reference_id is not None and len(self.reference_id) > REFERENCE_LIMIT:
            object.__setattr__(self, "reference_id", None)

    @property
    def category(self) -> OutcomeCategory:
        return self.category_given or DEFAULT_CATEGORY[self.kind]

    @classmethod
    def success(
        cls,
        reason: str = "Accepted",
        *,
        reference_id: str | None = None,
        price: Decimal | None = None,
        appended: dict[str, str] | None = None,
        raw: str | None = None,
    ) -> Outcome:
        return cls(
            OutcomeKind.SUCCESS, reason, raw, False, reference_id, price, dict(appended or {})
        )

    @classmethod
    def failure(
        cls, reason: str, *, raw: str | None = None, category: OutcomeCategory | None = None
    ) -> Outcome:
        return cls(OutcomeKind.FAILURE, reason, raw, category_given=category)

    @classmethod
    def error(
        cls,
        reason: str,
        *,
        retryable: bool,
        raw: str | None = None,
        category: OutcomeCategory | None = None,
    ) -> Outcome:
        return cls(OutcomeKind.ERROR, reason, raw, retryable, category_given=category)

    @classmethod
    def skip(
        cls, reason: str, *, raw: str | None = None, category: OutcomeCategory | None = None
    ) -> Outcome:
        return cls(OutcomeKind.SKIP, reason, raw, category_given=category)


CircuitStateName = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class CircuitChange:
    """A circuit's state change, for an event: from, to, and why."""

    before: CircuitStateName
    after: CircuitStateName
    reason: str
