"""Feedback from recipients, as plain functions: check who sent it, read it into a
``Notice`` (what the feedback topic carries), and judge it against the lead's state.

The worker's web endpoint (``POST /feedback/<destination>``) checks and reads; a notice goes
to the feedback topic (upstream systems may write notices there themselves, as JSON);
the judgement happens in the lead's partition, where its state is (streams/handlers.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode
from xml.parsers.expat import ExpatError

import defusedxml.ElementTree as SafeET
import orjson
import xmltodict

from streams.auth import AuthConfig
from streams.auth import sign as with_credentials
from streams.config.feedback import (
    FEEDBACK_KINDS,
    POLL_PLACEHOLDERS,
    FeedbackConfig,
    PollConfig,
)
from streams.config.response_rules import first_json
from streams.model import HttpRequest, json_loads
from streams.outcome import LARGEST_PRICE, to_price

REASON_LIMIT = 500
ID_LIMIT = 200
# Notices in one request: a JSON list of them (HubSpot's webhooks send up to 100 events
# a request).
MAX_NOTICES = 100
# Salesforce's outbound messages (SOAP) are resent for 24 hours until they are answered
# with this acknowledgement (Salesforce's outbound messaging WSDL: notificationsResponse).
SALESFORCE_OUTBOUND = b"http://soap.sforce.com/2005/09/outbound"
SALESFORCE_ACK = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    b'<soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    b"<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"
)
# A time given as a number this large is in milliseconds (HubSpot's ``occurredAt``,
# JavaScript's ``Date.now()``): in seconds it would be past the year 5000.
EPOCH_MS_FROM = 10**11
FEEDBACK_IDS = uuid.UUID("0b7f3c51-9d8e-4a62-b1f4-5c2e7a9d3f18")
LATEST_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z

# Refusals: the event's ``refusal``.
UNKNOWN_LEAD = "Unknown lead"  # never seen, or longer ago than leads are remembered
NOT_ACCEPTED = "Not accepted by this destination"
WINDOW_CLOSED = "Return window closed"
ALREADY_RETURNED = "Already returned"
UNKNOWN_REFERENCE = "Unknown reference"
STILL_IN_PROGRESS = "Lead still in progress"


class FeedbackError(ValueError):
    """A notice we cannot take: ``field`` and ``reason`` say why (answered 400)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


@dataclass(frozen=True, slots=True)
class Notice:
    """One piece of feedback, read: the feedback topic's record (JSON)."""

    destination_id: str
    kind: str
    lead_id: str | None = None
    reference_id: str | None = None
    reason: str = ""
    raw_reason: str | None = None
    status_text: str | None = None
    amount: str | None = None  # a decimal, as text
    at_ms: int = 0
    received_at_ms: int = 0

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes | None, received_at_ms: int = 0) -> Notice:
        """A record of the feedback topic; FeedbackError naming the field that is wrong.
        ``received_at_ms``: when it came, if the record does not say."""
        try:
            doc = orjson.loads(data or b"")
        except orjson.JSONDecodeError:
            raise FeedbackError("value", "not JSON") from None
        if not isinstance(doc, dict):
            raise FeedbackError("value", "not a JSON object")
        text = {"destination_id", "kind", "lead_id", "reference_id", "reason"}
        text |= {"raw_reason", "status_text", "amount"}
        for name in text & doc.keys():
            if doc[name] is not None and not isinstance(doc[name], str):
                raise FeedbackError(name, "must be a string")
        for name in ("at_ms", "received_at_ms"):
            if not isinstance(doc.get(name, 0), int) or isinstance(doc.get(name), bool):
                raise FeedbackError(name, "must be milliseconds since 1970 (an integer)")
        if not doc.get("destination_id"):
            raise FeedbackError("destination_id", "missing")
        if doc.get("kind") not in FEEDBACK_KINDS:
            raise FeedbackError("kind", f"must be one of {', '.join(FEEDBACK_KINDS)}")
        if not doc.get("lead_id") and not doc.get("reference_id"):
            raise FeedbackError("lead_id", "missing (give lead_id or reference_id)")
        if doc.get("amount") is not None:
            _amount(doc["amount"])
        for name in ("at_ms", "received_at_ms"):
            if not 0 <= doc.get(name, 0) <= LATEST_MS:
                raise FeedbackError(name, "out of range")
        known = {name: doc[name] for name in cls.__dataclass_fields__ if name in doc}
        for name, limit in (("lead_id", ID_LIMIT), ("reference_id", ID_LIMIT)):
            if known.get(name):
                known[name] = known[name][:limit]
        for name in ("reason", "raw_reason", "status_text"):
            if known.get(name):
                known[name] = known[name][:REASON_LIMIT]
        received = known.get("received_at_ms") or received_at_ms
        return cls(**{**known, "received_at_ms": received, "at_ms": known.get("at_ms") or received})

    @property
    def key(self) -> str:
        """Where it is judged: the lead's partition, or its reference's to find the lead."""
        if self.lead_id:
            return self.lead_id
        return reference_key(self.destination_id, self.reference_id or "")

    @property
    def event_id(self) -> str:
        what = f"{self.destination_id}|{self.lead_id or ''}|{self.reference_id or ''}"
        return str(uuid.uuid5(FEEDBACK_IDS, f"{what}|{self.kind}|{self.at_ms}"))


def reference_key(destination_id: str, reference_id: str) -> str:
    return f"{destination_id}|{reference_id}"


def signed_by(
    config: FeedbackConfig,
    headers: Any,
    body: bytes,
    query: Mapping[str, str] | None = None,
    method: str = "POST",
    raw_query: str = "",
    now: datetime | None = None,
) -> bool:
    """Did the destination's recipient send this (its HMAC of the body, its token, or its
    token in the url)? ``raw_query``: the url's query as sent (HubSpot signs the url)."""
    if config.secret is None:
        return False
    secret = config.secret.get_secret_value().encode()
    if config.auth == "hubspot":
        return _hubspot_signed(config, headers, body, secret, method, raw_query, now)
    if config.auth == "token":
        given = str(headers.get("Authorization") or "")
        return hmac.compare_digest(given.encode(), b"Bearer " + secret)
    if config.auth == "query_token":
        given = str((query or {}).get(config.token_parameter) or "")
        return hmac.compare_digest(given.encode(), secret)
    if config.auth == "api_key":
        given = str(headers.get(config.key_header) or "")
        return hmac.compare_digest(given.encode(), secret)
    if config.auth == "basic":
        given = str(headers.get("Authorization") or "")
        return _basic_matches(given, (config.username or "").encode(), secret)
    given = str(headers.get(config.signature_header) or "")
    expected = hmac.new(secret, body, hashlib.sha256).digest()
    return hmac.compare_digest(_signature_bytes(given), expected)


HUBSPOT_LATEST_MS = 5 * 60 * 1000  # a v3 signature's timestamp, at most this old
# Characters HubSpot decodes in the url before it signs it (its request-validation guide).
_HUBSPOT_DECODED = re.compile(r"%(3A|2F|3F|40|21|24|27|28|29|2A|2C|3B)", re.IGNORECASE)


def _hubspot_signed(
    config: FeedbackConfig,
    headers: Any,
    body: bytes,
    secret: bytes,
    method: str,
    raw_query: str,
    now: datetime | None,
) -> bool:
    """HubSpot's signatures: v3 alone when the url it calls is known (``public_url``),
    which refuses a request replayed more than 5 minutes later (the older ones HubSpot
    sends beside it do not expire, so they are not taken then: a captured request
    stripped of its v3 header would pass); else v1, its webhooks API's (SHA-256 of the
    client secret and the body)."""
    if config.public_url is None:
        given = str(headers.get("X-HubSpot-Signature") or "").strip().lower()
        expected = hashlib.sha256(secret + body).hexdigest()
        v1 = str(headers.get("X-HubSpot-Signature-Version") or "v1").strip().lower() == "v1"
        return v1 and hmac.compare_digest(given.encode(), expected.encode())
    called = config.public_url + (f"?{raw_query}" if raw_query else "")
    url = _HUBSPOT_DECODED.sub(lambda m: chr(int(m.group(1), 16)), called).encode()
    v3 = str(headers.get("X-HubSpot-Signature-v3") or "").strip()
    stamp = str(headers.get("X-HubSpot-Request-Timestamp") or "").strip()
    now_ms = _ms(now or datetime.now(UTC))
    # ASCII digits: a header is read as Latin-1, where "¹" passes str.isdigit and int()
    # refuses it (an exception, where an unsigned request is a 401)
    digits = stamp.isascii() and stamp.isdigit()
    if not v3 or not digits or abs(now_ms - int(stamp)) > HUBSPOT_LATEST_MS:
        return False
    signed = method.encode() + url + body + stamp.encode()
    expected_v3 = base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest())
    return hmac.compare_digest(v3.encode(), expected_v3)


def _signature_bytes(given: str) -> bytes:
    """A signature header's HMAC as bytes, in hex or base64 (standard or url-safe), with
    or without "sha256=" before it; b"" when it is neither. Senders spell it differently
    (ours, GitHub's and Meta's ``sha256=<hex>``, Shopify's bare base64): the right HMAC
    spelled another way was refused 401, every notice."""
    text = given.strip()
    if text[:7].lower() == "sha256=":
        text = text[7:]
    if len(text) == 64:  # hex of 32 bytes (as base64 it would not be 32 bytes anyway)
        try:
            return bytes.fromhex(text)
        except ValueError:
            return b""
    padded = text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _basic_matches(given: str, username: bytes, password: bytes) -> bool:
    """``Authorization: Basic <base64 of user:password>`` for this user and password."""
    scheme, _, encoded = given.strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, colon, word = base64.b64decode(encoded.strip(), validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return False
    # Both compared whichever is wrong, so the time taken does not tell which.
    same_user = hmac.compare_digest(user, username)
    same_password = hmac.compare_digest(word, password)
    return bool(colon) and same_user and same_password


def sign(secret: str, body: bytes) -> str:
    """The signature header's value a recipient sends (for docs and tests)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _document(body: bytes) -> dict[str, Any] | list[Any]:
    """What a recipient sent, as JSON or as a form (``lead_id=L-1&status=returned``: the
    way many buyers' return postbacks are sent), whose fields the same paths read
    (``$.lead_id``). Before, a form was refused as "not JSON" and the return never
    counted. A JSON list is returned as it is (a batch of notices). XML (Salesforce's
    outbound messages) is read as JSON would be (``_xml_document``)."""
    if body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<":
        return _xml_document(body)
    try:
        doc = json_loads(body)
    except orjson.JSONDecodeError:
        try:
            fields = parse_qsl(
                body.decode(), keep_blank_values=True, strict_parsing=True, max_num_fields=100
            )
        except ValueError:  # not UTF-8, not name=value pairs, or too many of them
            raise FeedbackError("body", "not JSON nor a form (name=value&…)") from None
        return dict(fields)
    if not isinstance(doc, dict | list):
        raise FeedbackError("body", "not a JSON object (nor a list of them)")
    return doc


def _xml_document(body: bytes) -> dict[str, Any]:
    """XML as the JSON paths read it: elements by their local names (no prefixes), an
    element given twice a list, attributes as ``@name``; namespace declarations left out.
    A SOAP message is then ``$.Envelope.Body.…``. Before, XML was refused "not JSON nor a
    form", and Salesforce's outbound messages (its no-code way to say a lead converted)
    could not be received."""
    try:
        SafeET.fromstring(body)  # refuses entity declarations and external references
        doc: dict[str, Any] = xmltodict.parse(body, postprocessor=_local_name)
    except (SyntaxError, ValueError, ExpatError):
        raise FeedbackError("body", "not well-formed XML (or it declares entities)") from None
    return doc


def _local_name(path: Any, key: str, value: Any) -> tuple[str, Any] | None:
    if key == "@xmlns" or key.startswith("@xmlns:"):
        return None
    attribute = "@" if key.startswith("@") else ""
    return attribute + key.removeprefix("@").rsplit(":", 1)[-1], value


def read_notice(
    destination_id: str,
    config: FeedbackConfig,
    body: bytes,
    received: datetime,
    lead_id: str | None = None,
    reference_id: str | None = None,
) -> Notice:
    """What a recipient sent → a ``Notice``; FeedbackError naming the field and reason.
    ``lead_id``, ``reference_id``: known already (a poll about that lead), used when the
    answer does not say."""
    return _notice_of(destination_id, config, _document(body), received, lead_id, reference_id)


def _notice_of(
    destination_id: str,
    config: FeedbackConfig,
    doc: dict[str, Any] | list[Any],
    received: datetime,
    lead_id: str | None = None,
    reference_id: str | None = None,
) -> Notice:
    if not isinstance(doc, dict):
        raise FeedbackError("body", "not a JSON object")

    def text(name: str, limit: int) -> str | None:
        path = config.path(name)
        value = None if path is None else first_json(path, doc)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise FeedbackError(name, f"{getattr(config, name)} is not a string or number")
        return str(value)[:limit]

    known_lead, known_reference = lead_id, reference_id
    lead_id = text("lead_id", ID_LIMIT) or known_lead
    reference_id = text("reference_id", ID_LIMIT) or known_reference
    if lead_id is None and reference_id is None:
        paths = [p for p in (config.lead_id, config.reference_id) if p is not None]
        raise FeedbackError("lead_id", f"nothing at {' or '.join(paths)}")
    word = text("kind", 100)
    if word is None:
        raise FeedbackError("kind", f"nothing at {config.kind}")
    raw_reason = text("reason", REASON_LIMIT)
    amount = text("amount", 40)
    if amount is not None:
        amount = _amount(amount)
    at = text("at", 40)
    kind = config.kind_of(word)
    return Notice(
        destination_id=destination_id,
        kind=kind,
        lead_id=lead_id,
        reference_id=reference_id,
        reason=(config.reason_of(raw_reason) or raw_reason[:100]) if raw_reason else "",
        raw_reason=raw_reason,
        status_text=(text("status", 100) or word) if kind == "status" else None,
        amount=amount,
        at_ms=_in_range(_moment(at, "at"), "at") if at is not None else _ms(received),
        received_at_ms=_ms(received),
    )


@dataclass(frozen=True, slots=True)
class Unread:
    """A notice of a list that could not be read, whole (as JSON), for the dead-letter
    topic: the rest of its list was taken (202), so its sender will not send it again."""

    index: int
    field: str
    error: str
    document: bytes


@dataclass(frozen=True, slots=True)
class Received:
    """The endpoint's answer, and the notice to write (None when refused)."""

    answer: dict[str, Any]
    status: int
    notices: tuple[Notice, ...] = ()
    xml: bytes | None = None  # answered instead of ``answer`` (a SOAP acknowledgement)
    unread: tuple[Unread, ...] = ()  # a list's notices that could not be read


def receive_feedback(
    destination_id: str,
    config: FeedbackConfig | None,
    headers: Any,
    declared_bytes: int | None,
    body: bytes,
    now: datetime | None = None,
    query: Mapping[str, str] | None = None,
    postback: bool = False,
    raw_query: str = "",
) -> Received:
    """``POST /feedback/<destination>``: 202 with the notices to write; 404 no such
    destination or no feedback block; 413 too large; 401 not signed by its recipient; 400
    naming the field that could not be read. ``body``: at most ``max_body_bytes`` + 1.
    A ``postback`` (``GET /feedback/<destination>?lead_id=…&kind=…``: no body) is read from
    its url's ``query`` as a form is, its token parameter left out; one that says nothing
    else is a check that the url answers (200, nothing written). A JSON list is a batch of
    notices (``_batch``)."""
    if config is None or config.secret is None:  # none, or it is only polled
        return Received({"error": "no feedback is taken for this destination"}, 404)
    limit = config.max_body_bytes
    if (declared_bytes is not None and declared_bytes > limit) or len(body) > limit:
        return Received({"error": f"larger than {limit} bytes"}, 413)
    method = "GET" if postback else "POST"
    if not signed_by(config, headers, body, query, method, raw_query, now):
        how = {
            "hmac": config.signature_header,
            "token": "Authorization",
            "basic": "Authorization",
            "api_key": config.key_header,
            "hubspot": "X-HubSpot-Signature-v3" if config.public_url else "X-HubSpot-Signature",
        }.get(config.auth, f"the url's {config.token_parameter} parameter")
        return Received({"error": f"not signed by this destination's recipient ({how})"}, 401)
    if postback:
        # A postback: affiliate and lead platforms send conversions and returns as a GET
        # to a url with their macros filled in; it was refused (405) and never counted.
        told = [
            (k, v)
            for k, v in (query or {}).items()
            if config.auth != "query_token" or k != config.token_parameter
        ]
        if not told:
            # Mailchimp checks a webhook's url with a bare GET before saving it, and saves
            # none that answers otherwise: it was answered 400 (no lead_id), so Mailchimp's
            # webhooks could not be set up.
            return Received({"ok": True, "destination": destination_id}, 200)
        body = urlencode(told).encode()
        if len(body) > limit:
            return Received({"error": f"larger than {limit} bytes"}, 413)
    received = now or datetime.now(UTC)
    try:
        doc = _document(body)
        if config.organization_id is not None and not _from_org(doc, config.organization_id):
            return Received({"error": "not from this destination's Salesforce org"}, 403)
        listed = _listed(config, doc)
        if listed is not None:
            batch = _batch(destination_id, config, listed, received)
            if batch.notices and SALESFORCE_OUTBOUND in body:
                return replace(batch, status=200, xml=SALESFORCE_ACK)
            return batch
        notice = _notice_of(destination_id, config, doc, received)
    except FeedbackError as exc:
        return Received({"error": exc.reason, "field": exc.field}, 400)
    answer = {"accepted": True, "event_id": notice.event_id, "kind": notice.kind}
    return Received(answer, 202, (notice,))


def _from_org(doc: dict[str, Any] | list[Any], organization_id: str) -> bool:
    """Whether a Salesforce outbound message names ``organization_id`` as its sender's, by
    its first 15 characters (the 18-character form adds a case-proof suffix)."""
    said: Any = doc
    for name in ("Envelope", "Body", "notifications", "OrganizationId"):
        said = said.get(name) if isinstance(said, dict) else None
    return isinstance(said, str) and said.strip()[:15] == organization_id[:15]


def _listed(config: FeedbackConfig, doc: dict[str, Any] | list[Any]) -> list[Any] | None:
    """The notices in what was sent when it holds several (at the ``notices`` path, or a
    JSON list); None when it is one notice."""
    path = config.path("notices")
    if path is None:
        return doc if isinstance(doc, list) else None
    found: list[Any] = []
    for match in path.find(doc):
        found += match.value if isinstance(match.value, list) else [match.value]
    if not found:
        raise FeedbackError("notices", f"nothing at {config.notices}")
    return found


def _batch(
    destination_id: str, config: FeedbackConfig, docs: list[Any], received: datetime
) -> Received:
    """A JSON list of notices (HubSpot's webhooks send events in lists of up to 100): each
    read as a notice of its own. Those that cannot be read are listed in the answer, by
    their index, field and reason; the rest are taken (202), since a sender retries a whole
    request it was refused, sending the readable ones again and again. 400 when none can
    be read. Before, a list was refused "not a JSON object", and every event in it lost."""
    if not docs:
        raise FeedbackError("body", "an empty list")
    if len(docs) > MAX_NOTICES:
        raise FeedbackError("body", f"a list of more than {MAX_NOTICES} notices")
    notices: list[Notice] = []
    taken: list[dict[str, Any]] = []
    unread: list[Unread] = []
    for index, doc in enumerate(docs):
        try:
            if not isinstance(doc, dict):
                raise FeedbackError("body", "not an object (fields by name)")
            notice = _notice_of(destination_id, config, doc, received)
        except FeedbackError as exc:
            unread.append(Unread(index, exc.field, exc.reason, _as_json(doc)))
            continue
        notices.append(notice)
        taken.append({"index": index, "event_id": notice.event_id, "kind": notice.kind})
    refused = [{"index": u.index, "error": u.error, "field": u.field} for u in unread]
    if not notices:  # the sender keeps it all, and may send it again
        return Received({"error": "no notice in the list could be read", "refused": refused}, 400)
    answer = {"accepted": True, "notices": taken, "refused": refused}
    return Received(answer, 202, tuple(notices), unread=tuple(unread))


def _as_json(doc: Any) -> bytes:
    """A notice as it was read (a JSON value, or XML read into one), as JSON; as Python
    writes it when JSON cannot hold it (nested past orjson's 254 levels)."""
    try:
        return orjson.dumps(doc, default=str)
    except (TypeError, orjson.JSONEncodeError):
        try:
            return repr(doc).encode(errors="replace")
        except RecursionError:
            return b""


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    refusal: str | None = None
    credit: Decimal | None = None
    sold_at_ms: int | None = None


def judge(notice: Notice, state: dict[str, Any] | None, return_window_days: float) -> Verdict:
    """Does ``notice`` stand against the lead's state (None: not remembered)? A lead's
    feedback comes only from a destination that accepted it; a return only inside the
    destination's window after the sale, once, and it credits the sale's price."""
    if state is None:
        return Verdict(False, UNKNOWN_LEAD)
    sale = state.get("accepted", {}).get(notice.destination_id)
    if sale is None:
        return Verdict(False, NOT_ACCEPTED)
    sold_at = datetime.fromisoformat(sale["finished_at"])
    sold_ms = _ms(sold_at)
    if notice.kind != "returned":
        return Verdict(True, sold_at_ms=sold_ms)
    if state.get("finished") is None:
        return Verdict(False, STILL_IN_PROGRESS, sold_at_ms=sold_ms)
    if notice.destination_id in state.get("returned", {}):
        return Verdict(False, ALREADY_RETURNED, sold_at_ms=sold_ms)
    window_ends = sold_at + timedelta(days=return_window_days)
    if datetime.fromtimestamp(notice.at_ms / 1000, UTC) > window_ends:
        return Verdict(False, WINDOW_CLOSED, sold_at_ms=sold_ms)
    price = sale.get("price")
    return Verdict(True, credit=Decimal(price) if price is not None else None, sold_at_ms=sold_ms)


def _amount(value: str) -> str:
    amount = to_price(value)
    if amount is None:
        raise FeedbackError("amount", f"{value!r} is not a number up to {LARGEST_PRICE}")
    return str(amount)


def _moment(value: str, field: str) -> int:
    """An ISO 8601 or RFC 2822 time (a zone assumed UTC when none is given), epoch seconds
    or epoch milliseconds (from ``EPOCH_MS_FROM``) → ms."""
    if _EPOCH_NUMBER.fullmatch(value):
        number = Decimal(value)
        return _in_range(int(number if number >= EPOCH_MS_FROM else number * 1000), field)
    moment: datetime | None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        moment = _mail_time(value)
    if moment is None:
        raise FeedbackError(
            field, f"{value!r} is not a time (ISO 8601, RFC 2822 or epoch seconds)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _ms(moment)


# Epoch seconds or milliseconds in ASCII digits: "¹" passed str.isdigit() and Decimal
# refused it, an exception that was no 400 (and "٣٤٥" was read as 345 seconds).
_EPOCH_NUMBER = re.compile(r"(?=\.?[0-9])[0-9]*\.?[0-9]*")


def _mail_time(value: str) -> datetime | None:
    """An RFC 2822 time, as PHP's ``date('r')`` and HTTP dates write it (``Mon, 30 Nov
    2026 10:00:00 +0000``, ``… GMT``), a postback's time macro among them: such a notice
    was refused; None when it is not one."""
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None


def _in_range(ms: int, field: str) -> int:
    if not 0 <= ms <= LATEST_MS:
        raise FeedbackError(field, "is not between 1970 and 9999")
    return ms


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# ── polling: asking a recipient that only offers a status API ─────────────────
POLL_FINAL_KINDS = frozenset({"returned", "converted", "disqualified"})


def poll_entry(
    destination_id: str, lead_id: str, reference_id: str | None, poll: PollConfig, now: float
) -> dict[str, Any]:
    """The ``polls`` table's entry for a sale to a polled recipient: its first ask is one
    interval after the sale, its last ``for_days`` after."""
    return {
        "destination_id": destination_id,
        "lead_id": lead_id,
        "reference_id": reference_id,
        "next_at": now + poll.every_minutes * 60,
        "until": now + poll.for_days * 86400,
        "seen": None,  # what the last answer said (kind|status|reason), to report changes
    }


def poll_request(url: str, auth: AuthConfig | None, token: str | None = None) -> HttpRequest:
    """The GET that asks a recipient about one lead, with the destination's credentials."""
    # JSON preferred; XML is read by the same paths (``_xml_document``)
    accept = "application/json, application/xml;q=0.9, text/xml;q=0.9"
    asked = HttpRequest("GET", url, headers={"Accept": accept})
    return with_credentials(asked, auth, token)


def poll_url(poll: PollConfig, entry: dict[str, Any]) -> str:
    """The status URL for one lead, its ids filled in (escaped)."""
    url = poll.url
    for placeholder, name in zip(POLL_PLACEHOLDERS, ("reference_id", "lead_id"), strict=True):
        url = url.replace(placeholder, quote(str(entry.get(name) or ""), safe=""))
    return url


def read_poll(
    config: FeedbackConfig, entry: dict[str, Any], status: int | None, body: bytes, now: float
) -> tuple[Notice | None, dict[str, Any] | None]:
    """A poll's answer (``status`` None: no answer) → a notice when it says something new,
    and the entry to keep (None: stop: a final kind, or its time is over). An error or an
    answer we cannot read is asked again at the next interval."""
    notice = None
    seen = entry.get("seen")
    if status is not None and 200 <= status < 300:
        received = datetime.fromtimestamp(now, UTC)
        try:
            notice = read_notice(
                entry["destination_id"], config, body, received,
                lead_id=entry["lead_id"], reference_id=entry.get("reference_id"),
            )  # fmt: skip
        except FeedbackError:
            notice = None
        if notice is not None:
            said = f"{notice.kind}|{notice.status_text or ''}|{notice.reason}"
            notice = None if said == seen else replace(notice, lead_id=entry["lead_id"])
            seen = said
    poll = config.poll
    final = notice is not None and notice.kind in POLL_FINAL_KINDS
    if poll is None or final or now >= entry["until"]:
        return notice, None
    return notice, {**entry, "seen": seen, "next_at": now + poll.every_minutes * 60}
