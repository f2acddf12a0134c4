"""HTTP response (or a failed exchange) → Outcome, by the defaults every integration starts from.

2xx success; 408, 429 and 5xx retryable errors; 401/403 an authentication error; other 4xx a
failure whose reason is the recipient's own message, normalised to a known reason when it is
one ("Duplicate lead", "Outside service area", ...). Integrations refine this in
``response()``; a destination's response rules (response_rules.py) come before both.
"""

from __future__ import annotations

import csv
import html
import itertools
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlsplit
from xml.etree.ElementTree import Element

from streams.errors import DeliveryConnectionError, DeliveryError, DeliveryTimeout
from streams.model import (
    HttpResponse,
    Outcome,
    OutcomeCategory,
    Retirement,
    json_in_a_string,
    looks_like_json,
)
from streams.template.conversions import ConversionError, to_number

RAW_LIMIT = 1000  # characters of the recipient's text kept beside the reason
REASON_LIMIT = 80
# A 2xx whose body says the lead was not taken: lead buyers' APIs often answer 200 and
# say no in the body, and counting that as a sale would bill it. Top-level, any case
# (.NET APIs write "Success": false, "Status": "Rejected").
# false: not taken; with .NET's and Java's "is" (LeadExec's "isValidPost": false, with its
# reason in "ResponseDetail", was billed as a sale), and a validation's "valid".
_NO_FLAGS = frozenset(
    {"success", "accepted", "ok", "sold", "succeeded", "issuccess", "is_success", "isaccepted",
     "is_accepted", "valid", "isvalid", "is_valid", "isvalidpost", "is_valid_post",
     "interested"}
)  # fmt: skip
# LeadConduit answers its verdict as "outcome" ({"outcome": "failure", "reason": …}, its
# documented answer, was billed as a sale); lenders' and buyers' APIs as a "decision" or
# a "disposition".
_STATE_KEYS = frozenset(
    {"status", "result", "outcome", "decision", "disposition", "leadstatus", "lead_status",
     "poststatus", "post_status", "responsestatus", "response_status", "responsetype",
     "response_type", "bid_status", "bidstatus", "ping_status", "pingstatus",
     # a code in words: {"ResponseCode": "REJECT", "ResponseMessage": "Out of area"}
     "responsecode", "response_code", "resultcode", "result_code"}
)  # fmt: skip
_NO_WORDS = frozenset(
    {"error", "fail", "failed", "failure", "rejected", "reject", "declined", "denied",
     "refused", "duplicate", "invalid", "unmatched", "unsold",
     # lead buyers' statuses for a lead not taken, each billed as a sale before
     "dupe", "duplicated", "exists", "unaccepted", "unsuccessful", "ineligible",
     "disqualified", "blocked", "suppressed", "filtered", "dnc", "fraud", "spam", "cap",
     "capped", "expired", "cancelled", "canceled",
     # Marketo's for a lead it neither created nor updated, its reasons beside it
     "skipped",
     # a known TCPA litigator's number, as lead buyers' scrubs call it
     "litigator",
     # "not OK" (European APIs' status and text answers: "NOK", "status": "NOK")
     "nok"}
)  # fmt: skip
# A line of text that opens with these refuses ("Sorry, duplicate contact found",
# "Unfortunately we cannot accept this lead", "Err: 104 Missing phone", "Missing required
# field: zip"); inside a status's words they say nothing ("Lead saved. Missing fields
# defaulted.").
_REFUSING_OPENERS = frozenset({"sorry", "unfortunately", "err", "missing"})
# Older lead APIs answer in a line of text ("REJECTED: Duplicate lead", "FAILURE|Zip not
# covered", "SUCCESS|B-77") or form-encoded ("status=rejected&reason=Duplicate"): the
# verdict is its first word, then its reason (a refusal) or its reference (a sale).
_YES_WORDS = frozenset(
    {"success", "successful", "successfully", "accepted", "ok", "sold", "matched", "approved"}
)
_STATUS_CODE = re.compile(r"[A-Za-z]+(?:_[A-Za-z]+){1,5}")
_SEPARATORS = frozenset(":|;=")  # after a verdict's word, before its reason ("No: Duplicate")
_TEXT_VERDICT = re.compile(r"([A-Za-z]+)(?:\s*[:|,;=\-]+\s*|\s+|$)(.*)", re.DOTALL)
# An id has a digit: "Accepted successfully" named no reference "successfully".
_REFERENCE_TOKEN = re.compile(r"(?=[^\d]{0,99}\d)[\w.\-]{1,100}")
_FORM_ANSWER = re.compile(r"[\w.\-\[\]]+=[^\s&]*(?:&[\w.\-\[\]]+=[^\s&]*)*")
_NOT_ERRORS = frozenset({"", "none", "null", "false", "0", "ok", "no"})  # "error": "none"
TEXT_VERDICT_LIMIT = 1000  # a longer text is a page, not a verdict
# "odata.error": OData 3's JSON (SAP Gateway, older Dynamics and SharePoint); an
# "error_description" before its "error", which is then a code (OAuth's, Bitrix24's:
# {"error": "ERROR_CORE", "error_description": "…"} was refused as "ERROR_CORE").
_REASON_KEYS = (
    "reason", "message", "error_description", "error", "error_message", "detail", "msg",
    "odata.error", "response_detail", "responsedetail",
    # buyers' own names ("ErrorMessage", "error_msg", "rejectReason"), then the generic
    # words: a refusal's reason was its status's word ("rejected", "fail")
    "errormessage", "error_msg", "errordescription", "reject_reason", "rejectreason",
    "rejection_reason", "description", "details",
    "result_message", "resultmessage", "status_message", "statusmessage",
    "response_message", "responsemessage",
)  # fmt: skip
_REFERENCE_KEYS = ("reference_id", "id", "lead_id", "leadId", "record_id", "LeadIdentifier")
RETRYABLE_STATUSES = frozenset({408, 425, 429})


# A database's unique key said in an error (Postgres, SQLite, SQL Server, Oracle) too.
_DUPLICATE_WORDS = (
    r"duplicate|already[\s_-]+(exists|registered|on[\s_-]file|in[\s_-]+(the[\s_-]+)?system"
    r"|been[\s_-]taken|(been[\s_-]+)?(submitted|received|posted|subscribed)"
    r"|an?[\s_-]+(list[\s_-]+)?member)|member exists"
    # "Lead Exists", "Email exists already": a buyer's text answer
    r"|\b(lead|record|contact|customer|email|phone([\s_-]+number)?)[\s_-]+(already[\s_-]+)?exists?\b"
    r"|already[\s_-]+have[\s_-]+(this|that|the|your)[\s_-]+(lead|contact|record|customer)"
    r"|\bdupe|unique (key )?constraint"
)
# A buyer full for now: "Cap reached", "OVER_CAP" (a status's words joined by "_" too);
# "Capped", "OverCap", "Lead limit reached", "Budget exhausted", "No capacity" (each was a
# sale, or a refusal whose reason was not counted as a cap's).
_CAP_WORDS = (
    r"(?<![a-z])cap(?![a-z]).*(reached|exceeded|met|full|hit)|over[\s_-]*(the[\s_-]+)?cap\b"
    r"|(daily|hourly) (rate )?limit|quota|(?<![a-z])(?<!not )(?<!n't )capped\b"
    r"|\bleads?[\s_-]+limit|\blimit[\s_-]+(of[\s_-]+)?leads\b"
    r"|\bmax(imum)?[\s_-]+(number[\s_-]+of[\s_-]+)?leads[\s_-]+(reached|exceeded|met)"
    r"|\bbudget[\s_-]+(is[\s_-]+|has[\s_-]+been[\s_-]+)?(reached|exceeded|exhausted|spent|met|depleted|used)"
    r"|\bout[\s_-]+of[\s_-]+budget|\bno[\s_-]+(more[\s_-]+)?(budget|capacity)\b(?![\s_-]+(issue|problem|concern|constraint)s?)"
    r"|\b(at|over)[\s_-]+capacity\b|\bcapacity[\s_-]+(is[\s_-]+)?(reached|full|exceeded)"
)
# The reasons billing and routing count, and the texts recipients say them with.
KNOWN_REASONS: tuple[tuple[str, re.Pattern[str], OutcomeCategory], ...] = tuple(
    (reason, re.compile(pattern, re.IGNORECASE), category)
    for reason, pattern, category in (
        (
            "Duplicate lead",
            _DUPLICATE_WORDS,
            OutcomeCategory.DUPLICATE,
        ),
        (
            "Outside service area",
            # "Out of area" too, not an area code
            r"(outside|out of|not in) (of )?(the |our )?((service|coverage|serviceable) )?area\b(?! code)"
            r"|(zip|postal code|state)\b.*\bnot (covered|serviced|supported)",
            OutcomeCategory.HARD_REJECT,
        ),
        (
            "Cap exceeded",
            _CAP_WORDS,
            OutcomeCategory.HARD_REJECT,
        ),
        (
            "System unavailable",
            r"unavailable|maintenance|try again later|temporarily|overloaded",
            OutcomeCategory.SOFT_REJECT,
        ),
        (
            "Invalid data",
            r"invalid|required|missing|malformed|validation|must be|is not (a )?valid",
            OutcomeCategory.INVALID_DATA,
        ),
    )
)


_DUPLICATE = re.compile(_DUPLICATE_WORDS, re.IGNORECASE)
_CAP_SAID = re.compile(_CAP_WORDS, re.IGNORECASE)


def normalize_reason(text: str) -> tuple[str, OutcomeCategory] | None:
    """A recipient's words → one of our countable reasons, or None when none fits."""
    for reason, pattern, category in KNOWN_REASONS:
        if pattern.search(text):
            return reason, category
    return None


def default_outcome(res: HttpResponse) -> Outcome:
    body = one_answer(res.json())
    raw = res.text[:RAW_LIMIT] or None
    if (res.header("cf-mitigated") or "").strip().lower() == "challenge":
        # Cloudflare's challenge page (its documented mark), with a 403, a 429 or even a 200:
        # a browser check a server cannot pass, so every lead would meet it.
        return firewall_blocked("Cloudflare challenge", raw)
    fault = soap_fault(res)
    if fault is not None:
        return fault
    query_refused = graphql_query_refused(body)
    if query_refused is not None:
        # A 200 (Hasura's, older servers') or a 400 (Apollo's): our query, not this lead.
        return configuration_refused(
            f"GraphQL query refused: {query_refused}; check the integration's query", raw
        )
    if 200 <= res.status < 300:
        if body is None and looks_like_json(res.body):
            # JSON that cannot be read even leniently (HttpResponse.json): cut short, or
            # written by hand with a stray quote. Whether it said yes is unknown: it is not
            # billed as a sale, nor resent to this recipient (which might have taken it).
            return Outcome.error(
                f"Unreadable response (HTTP {res.status}: not JSON)",
                retryable=False,
                raw=raw,
                category=OutcomeCategory.RECIPIENT_ERROR,
            )
        if body is None and res.xml() is None and _DECLARED_XML.match(res.body, 0, 1024):
            # Declared XML that cannot be read even as APIs write it by hand (cut short, a
            # stray "<"): as unreadable JSON, whether it said yes is unknown. It was a sale.
            return Outcome.error(
                f"Unreadable response (HTTP {res.status}: not XML)",
                retryable=False,
                raw=raw,
                category=OutcomeCategory.RECIPIENT_ERROR,
            )
        verdict, capturable = (body, True) if isinstance(body, dict) else _text_verdict(res, body)
        verdict_fields = _lowered(verdict)  # once: both readings below go through them
        status = _status_said(verdict_fields)
        if status is not None:
            # Read as if it had come with that status: a 409 a duplicate, a 5xx retried.
            return default_outcome(replace(res, status=status))
        said_no, said_in, said_fields = _said_no(verdict_fields), verdict, verdict_fields
        inner = _enveloped(verdict_fields) if said_no is None else None
        # Its own id and price, read once: they also name the sale's below.
        own_reference = _reference_id(verdict) if said_no is None else None
        own_price = _price(verdict) if said_no is None else None
        if inner is not None:
            # {"success": true, "data": {"accepted": false, "reason": "Duplicate"}}: the call
            # went through, the lead was refused (it was billed as a sale). After a yes at
            # the top, only a no said outright: a duplicate flag or an errors list beside
            # it may be a CRM's note on a lead it took.
            said_in, said_fields = inner, _lowered(inner)
            yes = _said_yes(verdict_fields)
            said_no = _said_no_outright(said_fields) if yes else _said_no(said_fields)
        # The envelope's id and price, read once likewise (None without one).
        inner_reference = _reference_id(inner) if said_no is None else None
        inner_price = _price(inner) if said_no is None else None
        if (
            said_no is None
            and own_reference is None
            and own_price is None
            and inner_reference is None
            and inner_price is None
            and (inner is None or not _said_yes(said_fields))
        ):
            # Only words ({"data": {"id": null}, "message": "Lead already exists"} too: an
            # envelope with no id, no price and no yes was taken for a sale's)
            said_no = _message_said_no(verdict_fields)
            said_in, said_fields = verdict, verdict_fields
        if said_no is not None:
            # The recipient's reason when it gives one, else what its errors list says
            # ({"status": "error", "errors": {"email": ["is invalid"]}}), else its own word.
            # An envelope's no with the top's why ({"data": {"accepted": false}, "message":
            # "Duplicate lead"}: it was "Rejected").
            top = _reason(verdict) if said_in is not verdict else None
            texts = (_reason(said_in), _listed_error(said_fields), top, said_no)
            envelope = (
                _enveloped(verdict_fields) if inner is None and texts[:2] == (None, None) else None
            )
            if envelope is not None:
                # No at the top, why in the envelope ({"code": -1, "records": [{"errors":
                # ["Phone invalid"]}]}): the reason was the top's word, "Rejected".
                texts = (_reason(envelope), _listed_error(_lowered(envelope)), None, said_no)
            for text in (*texts, _code_said(said_fields)):
                # The first that names a known reason: {"result": "Duplicate", "message":
                # "Lead exists"} is a duplicate, where it was a refusal "Lead exists"; an
                # error's code last ("errorCode": "DUPLICATES_DETECTED"), never the reason.
                known = recognised_refusal(text, None, raw) if text else None
                if known is not None:
                    return known
            return rejection(next(text for text in texts if text), None, raw)
        page = error_page(res, raw)
        if page is not None:
            return page
        # An XML or form answer's id, price and fields (<lead_id>, <Price>, <redirect_url>)
        # as a JSON one's: its verdict fields become appended.<destination>.*.
        # An envelope's id and price when the top has none ({"success": true, "data":
        # {"id": "L-9"}}).
        return Outcome.success(
            reference_id=own_reference or inner_reference or _header_reference(res),
            price=own_price if own_price is not None else inner_price,
            appended=_captured(verdict) if capturable else {},
            raw=raw,
        )
    if res.status in (401, 403):
        if _says_rate_limited(_reason(body) or raw or ""):  # GitHub's 403 "rate limit exceeded"
            return rate_limited(raw)
        return Outcome.error(
            f"Authentication failed (HTTP {res.status})",
            retryable=False,
            raw=raw,
            category=OutcomeCategory.AUTH_ERROR,
        )
    if res.status in RETRYABLE_STATUSES:
        return Outcome.error(
            f"Recipient busy (HTTP {res.status})",
            retryable=True,
            raw=raw,
            category=OutcomeCategory.SOFT_REJECT,
        )
    if res.status >= 500:
        return server_error(res, _refusal_fields(res, body), raw)
    if 400 <= res.status < 500:
        # A 422's {"errors": {"email": ["has already been taken"]}} says why as well.
        fields = _refusal_fields(res, body)
        errors = _error_said(_lowered(fields)) if fields else None
        said = _reason(fields) or errors or _problem_title(res, body)
        line = _first_line(res, body)
        if res.status in (406, 415):
            # Our request's format (415) or the answer's we ask for (406) is not one the
            # recipient speaks: every lead would meet it.
            phrase = HTTPStatus(res.status).phrase
            return configuration_refused(
                f"HTTP {res.status} {phrase}: check the integration or headers", raw
            )
        if res.status == 400 and _PLAIN_TO_TLS.search(raw or ""):
            # nginx's, Go's and Apache's answer to plain HTTP on a port that takes TLS: the
            # url says http:// where it means https://, and every lead would meet it.
            return configuration_refused(
                "HTTP 400: the recipient's port takes https; check the url", raw
            )
        if res.status == 419:
            # Laravel's "Page Expired": the url is a web form's, which refuses a post that
            # did not come from its own page (CSRF): every lead would meet it.
            return configuration_refused(
                "HTTP 419 Page Expired: a web form's url, closed to other senders (CSRF); "
                "ask the recipient for its API url",
                raw,
            )
        if res.status == 421:
            # Misdirected Request: the server does not serve the host the request names
            # on the connection it came by (Apache since 2.4.64 when the TLS name and the
            # Host header differ; Cloudflare and nginx likewise). Our connections are one
            # per host, so a new one meets the same: every lead would.
            return configuration_refused(
                "HTTP 421 Misdirected Request: the server does not serve this host name "
                "here; check the url and any Host header",
                raw,
            )
        if res.status == 451:
            # Unavailable For Legal Reasons (RFC 7725): a legal block of the requester, most
            # often by the region its address is in (a CDN's geo-block): every lead from here
            # would meet it, where each was "System unavailable" (its phrase's "unavailable").
            return configuration_refused(
                "HTTP 451 Unavailable For Legal Reasons: the recipient refuses requests "
                "from here (a legal or regional block)",
                raw,
            )
        if res.status == 426:
            # Its Upgrade header names what (RFC 9110 §15.5.22: "TLS/1.2, HTTP/1.1"), in the
            # recipient's words: only a protocol name's characters are kept.
            named = _PROTOCOL_NAME.sub("", res.header("Upgrade") or "")[:40].strip()
            upgrade = named or "another protocol"
            return configuration_refused(
                f"HTTP 426 Upgrade Required: the recipient asks for {upgrade}; check the url",
                raw,
            )
        if res.status == 402:
            # Payment Required: the recipient's account (a buyer's prepaid balance, its
            # plan) takes no lead until it is paid, so every lead would meet it.
            return payment_required(said or line, raw)
        nowhere = res.status == 404 and (_no_route(said or line) or _names_nothing(fields))
        if res.status in (405, 410) or nowhere:
            # No endpoint there for this request (a wrong url or method, a retired API
            # version): every lead would meet it, where each was "Rejected (HTTP 404)".
            phrase = HTTPStatus(res.status).phrase
            return configuration_refused(f"HTTP {res.status} {phrase}: check the url", raw)
        if said:
            # Its words, else its code when the code names a known reason and the words
            # do not (Salesforce's "Use one of these records?" with DUPLICATES_DETECTED).
            code = _code_said(fields) if fields else None
            known = recognised_refusal(code, res.status, raw) if code else None
            if known is not None and recognised_refusal(said, res.status, raw) is None:
                return known
            return rejection(said, res.status, raw)
        # A plain-text answer's words are read for what they say, not kept as the reason
        # ("Bad Request" would be one more reason to count): "Duplicate", "Invalid API key".
        recognised = recognised_refusal(line, res.status, raw) if line else None
        return recognised or rejection("", res.status, raw)
    if 300 <= res.status < 400:
        return redirected(res, raw)
    return Outcome.error(f"Unexpected HTTP status {res.status}", retryable=False, raw=raw)


# "Fault" in UTF-16, either byte order (.NET services answering in Encoding.Unicode).
_FAULT_UTF16 = "Fault".encode("utf-16-le")


def one_answer(body: Any) -> Any:
    """A JSON array of one object (``[{"status": "rejected", …}]``: APIs that answer every
    request as a batch) is that object; so is an object that only wraps another under a
    wrapper's name (``{"response": {"status": "error", …}}``, ASP.NET's ``{"d": …}``, up to
    two deep), and a GraphQL answer its operation's result (``graphql_result``). A 2xx one
    was a sale whatever it said, a 4xx's reason was not read. Any other body as it is:
    ``{"error": {…}}`` is an error's object, not a wrapper."""
    body = graphql_result(body)
    if isinstance(body, list) and len(body) == 1 and isinstance(body[0], dict):
        body = body[0]
    for _ in range(2):
        if not isinstance(body, dict) or len(body) != 1:
            break
        name, inner = next(iter(body.items()))
        if isinstance(inner, list) and len(inner) == 1 and isinstance(inner[0], dict):
            inner = inner[0]  # a batch of one in its wrapper: Zoho CRM's {"data": [{…}]}
        if str(name).lower() not in _WRAPPERS or not isinstance(inner, dict | str):
            break
        if isinstance(inner, str) and str(name).lower() != "d":
            break  # {"result": "rejected"} is a verdict, not a wrapper
        body = json_in_a_string(inner)
    return body


# The names APIs wrap their answer in: ASP.NET AJAX's "d", and the usual envelopes.
# Airtable's "records" and batch APIs' "results" (HubSpot's, a 207 Multi-Status's: a batch
# of one, read inside as any wrapper's).
_ENVELOPES = (
    "data", "result", "response", "lead", "body", "payload", "return", "d", "records", "results"
)  # fmt: skip
_WRAPPERS = frozenset(_ENVELOPES)
# A GraphQL answer's own members (the GraphQL over HTTP specification's response), and
# the names a mutation's payload lists the errors of the input it refused under
# (Shopify's ``userErrors``, Saleor's ``errors``).
_GRAPHQL_KEYS = frozenset({"data", "errors", "extensions"})
_USER_ERRORS = ("userErrors", "user_errors", "errors")
_PAYLOAD_OWN = frozenset({"usererrors", "user_errors", "errors", "clientmutationid"})


def graphql_result(body: Any) -> Any:
    """A GraphQL answer (``data`` beside only ``errors`` and ``extensions``) as the verdict
    of its one operation: the operation's payload (``{"data": {"createLead": {"success":
    false, …}}}`` says no as ``{"success": false, …}`` would), with the object it made read
    as the payload's own fields when the payload names no id (Shopify's ``{"customer":
    {"id": …}, "userErrors": []}``); its user errors, or the answer's errors when no field
    has data (``{"data": {"createLead": null}, "errors": […]}``), as ``{"errors": […]}``.
    Each was billed as a sale: the payload is one level below the envelope. Any other body
    as it is, and an answer of several operations too."""
    if not isinstance(body, dict) or not _is_graphql(body):
        return body
    data, errors = body.get("data"), body.get("errors")
    if data == []:
        data = None  # monday.com's "data": [] beside its errors
    if not isinstance(data, dict | None):
        return body
    if errors and all(value is None for value in (data or {}).values()):
        # The operation failed: its field is null, or no data. An error's own status
        # (monday.com's extensions.status_code 403 or 429) is the answer's, as in
        # {"status_code": 403, …} (its HTTP status is 200 for every error).
        status = _graphql_error_status(errors)
        return {"errors": errors} if status is None else {"errors": errors, "status_code": status}
    if data is None or len(data) != 1 or not isinstance(payload := next(iter(data.values())), dict):
        return body
    refused = next((found for found in values_named(payload, _USER_ERRORS) if found), None)
    if refused is not None:
        return {"errors": refused}
    made = [name for name, value in payload.items() if isinstance(value, dict)]
    if len(made) == 1 and {k.lower() for k in payload if k != made[0]} <= _PAYLOAD_OWN:
        # {"customer": {"id": …}, "userErrors": []}: the payload holds what it made, and
        # only its errors and the client's mutation id beside it (not a lead's object
        # whose own fields hold another: {"status": "new", "owner": {"id": 3}}).
        return {**payload[made[0]], **{k: v for k, v in payload.items() if k != made[0]}}
    return payload


def _is_graphql(body: dict[str, Any]) -> bool:
    """``data`` beside only ``errors`` and ``extensions``, or errors that say where in the
    query they arose (``locations``, or a ``path`` with ``extensions``: GraphQL's alone; a
    validator's ``path`` alone is a field's), whatever else is beside them (monday.com's
    ``account_id``: its refusals were billed as sales)."""
    if "data" in body and body.keys() <= _GRAPHQL_KEYS:
        return True
    errors = body.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else None
    return isinstance(first, dict) and (
        "locations" in first or ("path" in first and "extensions" in first)
    )


def _graphql_error_status(errors: Any) -> int | None:
    """The HTTP status a GraphQL answer's first error names in its extensions (monday.com's
    ``status_code``, Fireflies' ``status``), if a number; whether it is an error's is
    ``_status_said``'s to judge, as for any answer's status field."""
    first = errors[0] if isinstance(errors, list) and errors else None
    extensions = first.get("extensions") if isinstance(first, dict) else None
    if not isinstance(extensions, dict):
        return None
    status = next(values_named(extensions, ("status_code", "status")), None)
    return status if isinstance(status, int) and not isinstance(status, bool) else None


# The codes GraphQL servers give a query they could not parse or that their schema does
# not take (Apollo's, Hasura's, lower case with dashes), and graphql-java's classification.
_QUERY_REFUSED = frozenset(
    {"graphql-parse-failed", "graphql-validation-failed", "parse-failed", "validation-failed",
     "invalidsyntax", "validationerror"}
)  # fmt: skip


def graphql_query_refused(body: Any) -> str | None:
    """What a GraphQL answer's first error says when the server could not parse our query
    or its schema does not take it (``extensions.code`` ``GRAPHQL_VALIDATION_FAILED``,
    Hasura's ``validation-failed``): the query is the destination's, the same for every
    lead. None for any other answer."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None
    first = errors[0]
    extensions = first.get("extensions")
    said_message = first.get("message")
    message = said_message if isinstance(said_message, str) else ""
    said = [first.get("classification")]
    if isinstance(extensions, dict):
        said += [extensions.get("code"), extensions.get("classification")]
    coded = any(
        isinstance(code, str) and code.lower().replace("_", "-") in _QUERY_REFUSED for code in said
    )
    # graphql-js's own words for a query it could not parse, with where in it (its
    # servers without codes: express-graphql's).
    unparsed = message.startswith("Syntax Error: ") and "locations" in first
    if not coded and not unparsed:
        return None
    return " ".join(message.split())[:REASON_LIMIT] or "refused"


# What servers answer to plain HTTP sent to their TLS port: nginx's 400 page ("The plain
# HTTP request was sent to HTTPS port"), Go's net/http, Apache httpd's mod_ssl.
_PLAIN_TO_TLS = re.compile(
    r"plain HTTP request was sent to HTTPS port|sent an HTTP request to an HTTPS server"
    r"|speaking plain HTTP to an SSL-enabled server port",
    re.IGNORECASE,
)
# A 426's Upgrade header is the recipient's words: only a protocol name's characters.
_PROTOCOL_NAME = re.compile(r"[^\w./, -]")

# A 404 that says only that there is nothing at the url: nothing at all, an HTML page, a
# web framework's own words (Go's "404 page not found", Express's "Cannot POST /leads",
# Spring's "error": "Not Found", Pipedrive's "Unknown method"). A 404 that says something
# else ("No buyer for this lead") is the recipient's answer about the lead.
_NO_ROUTE = re.compile(
    r"(?:404\b.*|(?:page |resource |route |endpoint )?not found\W*|cannot (?:post|put|patch|get)\b.*"
    r"|no route\b.*|unknown (?:method|endpoint|route)\b.*"
    # Slack's incoming webhooks: a webhook removed, its workspace or channel gone
    r"|no_service|no_team|channel_not_found)",
    re.IGNORECASE | re.DOTALL,
)


def _no_route(said: str) -> bool:
    return not said or _NO_ROUTE.fullmatch(said.strip()) is not None


# A 404's error code that says the table, base or endpoint addressed is not there
# (Airtable's "NOT_FOUND", "TABLE_NOT_FOUND"; "Could not find table Leads…" was a refusal
# of each lead).
_NOT_FOUND_CODES = frozenset(
    {"not_found", "table_not_found", "model_not_found", "resource_not_found",
     "route_not_found", "endpoint_not_found", "base_not_found"}
)  # fmt: skip


def _names_nothing(fields: dict[str, Any] | None) -> bool:
    """Whether a 404's fields say by an error code that what the url names is not there."""
    if not fields:
        return False
    errors = fields.get("errors")
    places = [
        fields,
        fields.get("error"),
        errors[0] if isinstance(errors, list) and errors else None,
    ]
    for place in places:
        if isinstance(place, str):
            place = {"error": place}
        if isinstance(place, dict):
            for code in values_named(place, ("error", "code", "type")):
                if isinstance(code, str) and code.strip().lower() in _NOT_FOUND_CODES:
                    return True
    return False


def _refusal_fields(res: HttpResponse, body: Any) -> dict[str, Any] | None:
    """Where a 4xx or 5xx says why: its JSON object, or its XML answer's verdict fields
    (``<error><message>Duplicate lead</message></error>``, an ASMX ``<string>``): an XML
    refusal's words were not read before, and it was ``Rejected (HTTP 400)``."""
    if isinstance(body, dict):
        return body
    if isinstance(body, str):  # a JSON string (ASP.NET's {"d": "REJECTED: Duplicate"})
        return _line_verdict(body.strip()) or None
    root = res.xml()
    if root is None:
        # A form's pairs, or lines of them (``Status=Rejected`` / ``Reason=Invalid zip``):
        # two or more, where a line of text alone is read for its words (``_first_line``).
        text = _short_text(res)
        fields = dict(parse_qsl(text)) if _FORM_ANSWER.fullmatch(text) else _field_lines(text)
        return fields if len(fields) > 1 else None
    fields = _verdict_of(root)[0]
    if _reason(fields) is None:  # deeper: <Response><Errors><Error><Message>, AWS's way
        deep = next(
            (
                text
                for element in itertools.islice(root.iter(), 200)
                if isinstance(element.tag, str)
                and len(element) == 0
                and _local(element.tag).lower() in _REASON_KEYS
                and (text := (element.text or "").strip())
            ),
            None,
        )
        fields = {**fields, "message": deep} if deep else fields
    return fields or None


def server_error(res: HttpResponse, fields: dict[str, Any] | None, raw: str | None) -> Outcome:
    """A 5xx: the recipient's error, retried; unless its words say the lead is a duplicate
    (a home-grown API's unique key answers 500: "duplicate key value violates unique
    constraint", "UNIQUE constraint failed", "Duplicate entry … for key"; retried, it met
    the same wall each time and was never counted as a duplicate) or rate limited (retried
    when the limit resets, as a 429). Other words are not read: "invalid" in a server's
    error is more often its own state than the lead's."""
    said = _reason(fields) or _first_line(res)
    if said and _DUPLICATE.search(said):
        return Outcome.failure("Duplicate lead", raw=raw, category=OutcomeCategory.DUPLICATE)
    if said and _says_rate_limited(said):
        return rate_limited(raw)
    cloudflare = res.header("CF-RAY") is not None  # on every answer Cloudflare sends
    if res.status == 504 or (res.status == 524 and cloudflare):
        # A gateway in front of the recipient gave up waiting for its answer: the request
        # reached it, so it may have taken the lead, as after our own timeout (a resend
        # carries the same Idempotency-Key). Counted as a timeout, not a server's error.
        by = "Cloudflare" if cloudflare else "a gateway"
        return Outcome.error(
            f"Timeout (HTTP {res.status}: {by} waited for the recipient)",
            retryable=True,
            raw=raw,
            category=OutcomeCategory.TIMEOUT,
        )
    if cloudflare and (what := _CLOUDFLARE_ORIGIN.get(res.status)) is not None:
        # Cloudflare's own 52x: it could not get an answer from the recipient's server.
        return Outcome.error(
            f"Recipient unreachable (HTTP {res.status}: Cloudflare {what})",
            retryable=True,
            raw=raw,
            category=OutcomeCategory.RECIPIENT_ERROR,
        )
    return Outcome.error(f"Recipient error (HTTP {res.status})", retryable=True, raw=raw)


# What each of Cloudflare's own statuses says of the recipient's (origin) server, in its
# documentation's words.
_CLOUDFLARE_ORIGIN = {
    520: "got an empty or unexpected answer from its server",
    521: "found its server refusing connections",
    522: "timed out connecting to its server",
    523: "could not reach its server",
    525: "failed the TLS handshake with its server",
    526: "found its server's certificate invalid",
    530: "could not resolve or reach its server",
}


# RFC 9745's Deprecation is a structured-field date ("@1688169599"); drafts before it sent
# "true" or an HTTP-date, which APIs still send. RFC 8594's Sunset is an HTTP-date.
_AT_SECONDS = re.compile(r"@(-?\d{1,15})")
_RETIREMENT_LINK = re.compile(
    r"<([^>]{1,2000})>[^,]*?\brel=\"?(?:[^\",]*\s)?(?:deprecation|sunset)\b", re.IGNORECASE
)


def endpoint_retirement(res: HttpResponse) -> Retirement | None:
    """What the answer's ``Deprecation`` and ``Sunset`` headers say, or None when it has
    neither (or they say nothing readable)."""
    deprecation = sunset = link = None
    for name, value in res.headers.items():
        lowered = name.lower()
        if lowered == "deprecation":
            deprecation = value.strip()
        elif lowered == "sunset":
            sunset = value.strip()
        elif lowered == "link":
            link = value
    if deprecation is None and sunset is None:
        return None
    deprecated_at = _header_time(deprecation) if deprecation else None
    deprecated = deprecated_at is not None or (deprecation or "").lower() == "true"
    sunset_at = _header_time(sunset) if sunset else None
    if not deprecated and sunset_at is None:
        return None
    found = _RETIREMENT_LINK.search(link or "")
    where = _split_url(found.group(1).strip()) if found else None
    page = f"{where.scheme}://{where.hostname}{where.path}" if where and where.hostname else None
    return Retirement(deprecated, deprecated_at, sunset_at, page)


def _header_time(value: str) -> float | None:
    """``@<seconds>`` (a structured-field date) or an HTTP-date, as Unix seconds."""
    at = _AT_SECONDS.fullmatch(value)
    if at is not None:
        seconds = float(at.group(1))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        seconds = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    # 1970 to year 5138: a date a log line and a gauge can show.
    return seconds if 0 <= seconds < 1e11 else None


# A SOAP fault's code says whose fault it is (SOAP 1.1 §4.4.1, 1.2 §5.4.6): the sender's
# (Client, Sender: "should not be resent without change") or the receiver's (Server,
# Receiver: may succeed later); VersionMismatch and MustUnderstand, our envelope's.
_SENDERS_FAULT = frozenset({"client", "sender"})
_ENVELOPES_FAULT = frozenset({"versionmismatch", "mustunderstand", "dataencodingunknown"})


def soap_fault(res: HttpResponse) -> Outcome | None:
    """A SOAP 1.1 or 1.2 fault, with whatever status (500 as SOAP 1.1's HTTP binding says,
    400 for a 1.2 Sender fault, a 200 from servers that always answer 200): the sender's
    fault a refusal by its words (``rejection``: "Duplicate record" a duplicate, "Zip is
    not valid" invalid data), the receiver's a recipient error retried unless its words say
    duplicate, rate limited or refused credentials (Axis-style servers say everything with
    Server faults), the envelope's a configuration refused. Before, a 2xx fault was a sale
    and any 4xx/5xx one read by its status alone. None when the answer is not a fault."""
    if (b"Fault" not in res.body and _FAULT_UTF16 not in res.body) or not res.opens_with_markup:
        return None
    root = res.xml()
    if root is None or _local(root.tag) != "Envelope":
        return None
    body = next((child for child in root if _local(child.tag) == "Body"), None)
    fault = next((c for c in body if _local(c.tag) == "Fault"), None) if body is not None else None
    if fault is None:
        return None
    parts = {_local(child.tag): child for child in fault if isinstance(child.tag, str)}
    if "Code" in parts:  # SOAP 1.2: Code/Value, Reason/Text
        value = next((c for c in parts["Code"] if _local(c.tag) == "Value"), None)
        code = value.text if value is not None else ""
        reason = parts.get("Reason")
        said = (
            next((c.text for c in reason if _local(c.tag) == "Text"), "")
            if reason is not None
            else ""
        )
    else:  # SOAP 1.1: faultcode, faultstring
        code = parts["faultcode"].text if "faultcode" in parts else ""
        said = parts["faultstring"].text if "faultstring" in parts else ""
    code = (code or "").strip()
    whose = code.rpartition(":")[2].partition(".")[0].lower()
    said = " ".join((said or "").split())
    raw = res.text[:RAW_LIMIT] or None
    if whose in _SENDERS_FAULT:
        return rejection(said, None, raw)
    if whose in _ENVELOPES_FAULT:
        return configuration_refused(f"SOAP {code[:40]}", raw)
    recognised = recognised_refusal(said, None, raw) if said else None
    if recognised is not None and (
        recognised.category in (OutcomeCategory.DUPLICATE, OutcomeCategory.AUTH_ERROR)
        or recognised.reason == RATE_LIMITED
    ):
        return recognised
    return Outcome.error("Recipient error (SOAP fault)", retryable=True, raw=raw)


def _text_verdict(res: HttpResponse, body: Any) -> tuple[dict[str, Any], bool]:
    """The verdict fields of a 2xx answer that is not a JSON object, and whether they are
    captured into ``appended.<destination>.*`` as a JSON answer's (an XML or form-encoded
    answer's are, a line of text's words are not): an XML answer's
    (``_xml_verdict_fields``), a form-encoded one's, or a line of text's (``_line_verdict``),
    a JSON string's among them (ASP.NET Web API's action that returns a string answers
    ``"REJECTED: Duplicate"``); JSON ``false`` says no."""
    if isinstance(body, str):
        return _line_verdict(body.strip()), False
    if body is False:
        return {"success": False}, False
    if res.opens_with_markup:
        return _xml_verdict_fields(res)
    text = _short_text(res)
    if not text:
        return {}, False
    if _FORM_ANSWER.fullmatch(text):
        return dict(parse_qsl(text)), True
    row = _csv_row(text)
    if row is not None:
        return row, True
    said = _line_verdict(text)
    if said:
        return said, False
    fields = _field_lines(text)
    return fields, bool(fields)


_CSV_NAME = re.compile(r"[A-Za-z_][\w.\- ]{0,63}")


def _csv_row(text: str) -> dict[str, str] | None:
    """A CSV answer of a header and one row (``status,reason`` / ``rejected,Duplicate``,
    as older lead APIs and exports answer) as its fields, when its header names a verdict
    (a status's or a flag's name); else None ("Rejected,Duplicate" alone is a line of text). Such a
    refusal was a sale, and a sale's id and price unread."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 2 or "," not in lines[0]:
        return None
    try:
        header, row = csv.reader(lines)
    except (csv.Error, ValueError):
        return None
    names = [name.strip() for name in header]
    if len(names) < 2 or len(names) != len(row) or not all(map(_CSV_NAME.fullmatch, names)):
        return None
    lowered = {name.lower() for name in names}
    if lowered.isdisjoint(_STATE_KEYS) and lowered.isdisjoint(_NO_FLAGS):
        return None
    return {name: value.strip() for name, value in zip(names, row, strict=True)}


_FIELD_LINE = re.compile(r"([A-Za-z_][\w.\-]{0,63})[ \t]*[=:][ \t]*(.*)")


def _field_lines(text: str) -> dict[str, str]:
    """An answer of ``name=value`` or ``name: value`` lines (older APIs' way:
    ``Status=Rejected`` / ``Reason=Duplicate``) as its fields, read as a form's; {} when
    any line is not one. Before, such a refusal was a sale."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            found = _FIELD_LINE.fullmatch(line.strip())
            if found is None:
                return {}
            fields.setdefault(found.group(1), found.group(2).strip())
    return fields


# An HTTP error's phrase, the whole of a 2xx answer ("Unauthorized", "Service Unavailable",
# "503 Service Unavailable"): a script that wrote its error with the status left at 200.
_ERROR_PHRASES = {status.phrase.lower(): status.value for status in HTTPStatus if status >= 400}
_PHRASED_STATUS = re.compile(
    r"(?:HTTP(?:/[\d.]+)?\s+)?(?:(\d{3})\s+)?([A-Za-z][A-Za-z' -]{2,40}?)\.?"
)


def _phrased_status(text: str) -> int | None:
    """The status a line that is only an HTTP error's phrase names (its code before it, if
    any, the same), else None."""
    found = _PHRASED_STATUS.fullmatch(text)
    if found is None:
        return None
    status = _ERROR_PHRASES.get(found.group(2).lower())
    said = found.group(1)
    return status if said is None or said == str(status) else None


# A no-word naming a figure, then the figure: "Fraud score 12", "Error count: 0",
# "Failed attempts: 0" (each refused once a lone message was read as a line).
_MEASURE = re.compile(
    r"[A-Za-z]+[\s_-]+(?:score|count|attempts|rate|level|total)s?\s*[:=]?\s*-?\d[\d.,%]*\s*",
    re.IGNORECASE,
)
_DUPLICATE_OPENERS = frozenset({"duplicate", "duplicated", "dupe"})
_UPDATED = re.compile(r"\b(?:updated|merged)\b", re.IGNORECASE)
# A text answer's subject before its verdict: "Lead Rejected", "The lead was rejected",
# "Lead not accepted" (each was a sale: its first word, "Lead", said nothing).
_LEAD_SUBJECT = re.compile(
    r"(?:the\s+|your\s+|this\s+)?"
    r"(?:lead|post|posting|submission|request|record|contact|application)"
    r"(?:\s+(?:was|is|has\s+been)(?:\s+an?(?=\s))?)?"
    # "Lead posted: rejected", "Lead: Duplicate": its verdict after a separator
    r"(?:(?:\s+(?:posted|received|submitted|processed))?\s*[:\-]\s*|\s+)",
    re.I,
)  # "Lead is a duplicate", "This lead was rejected", "Submission rejected: Duplicate"
# Thanks before the verdict: "Thank you, but this lead is a duplicate", "Thanks! Lead
# rejected: Duplicate" (each was a sale); not "Thank you for your submission" alone.
_COURTESY = re.compile(
    r"(?:thank\s+you|thanks)(?:\s+for\s+[^,.!;:\n]{1,60})?\s*[,.!;:\-]+\s*(?:but\s+)?", re.I
)
# A buyer that takes no leads now, or not this one: "We are not accepting leads at this
# time", "No longer buying leads in your state", "Cannot accept lead: duplicate" (each was
# a sale).
_NOT_BUYING = re.compile(
    r"(?:(?:we\s+are|we're|we|buyer\s+is|currently)\s+)?(?:currently\s+)?"
    r"(?:not|no\s+longer)\s+(?:currently\s+)?(?:accepting|taking|buying|purchasing)\b"
    # "Unable to accept lead: Duplicate", "(Your lead) could not be processed: invalid phone"
    r"|(?:we\s+)?(?:could\s+not|couldn't|cannot|can't|can\s+not|unable\s+to)\s+(?:be\s+)?"
    r"(?:accept|process|take|buy|sell|place|post|deliver)(?:ed)?\b",
    re.I,
)
# What the recipient left out of the lead it took: "Invalid fields ignored: fax".
_IGNORED = re.compile(
    r"\b(?:fields?|values?|param(?:eter)?s?|keys?|columns?)\s+(?:(?:was|were)\s+)?ignored\b", re.I
)
# A line that says the lead's number is on a do-not-call list ("Phone number is on the
# National DNC registry"), not that it is not ("… is not on the DNC list").
_ON_DNC_LIST = re.compile(
    r"(?<!not )(?<!n't )\bon\s+(?:the|our|a|an|your)\s+(?:[a-z]+\s+){0,2}"
    r"(?:dnc|do[\s-]+not[\s-]+(?:call|contact))\s+(?:list|registry)\b(?!\s*check)",
    re.I,
)
_ERROR_CODE = r"-[1-9]\d{0,5}"  # an error's code below zero: "-1", "-105"
_NEGATIVE_CODE = re.compile(_ERROR_CODE)
_DIGIT_FLAG = re.compile(rf"({_ERROR_CODE}|[01])[ \t]*\|[ \t]*(.{{1,200}})")
# A pipe-delimited sale's id, then its price: "OK|12345|15.00", "1|A-77|$12.50".
_PIPED_SALE = re.compile(
    r"((?=[^\d|]{0,99}\d)[\w.\-]{1,100})[ \t]*\|[ \t]*\$?(\d{1,10}(?:\.\d{1,4})?)"
)
_LETTER = re.compile(r"[A-Za-z]")
# A sale's id named in its words: "Lead ID: 12345", "ref #A-77".
_LABELLED_ID = re.compile(
    r"\b(?:lead[\s_-]*)?(?:id|ref(?:erence)?)\b\s*(?:[:=#]|no\.?)?\s*#?((?=[\w.\-]*\d)[\w.\-]{1,100})",
    re.I,
)
# A sale's price: right after its verdict or an "@", "for" or a separator ("Sold - $12.50",
# "Lead sold for $12.50", "77 @ $12.50"), or named ("price 12.50", "payout: 9"); not any
# amount in its words ("OK, cap $500/day").
_LABELLED_PRICE = re.compile(
    r"(?:^|[-|:,@]\s*|\bfor\s+)\$\s?(\d{1,10}(?:\.\d{1,4})?)\b"
    r"|\b(?:price|payout|bid|amount)\b\s*[:=]?\s*\$?(\d{1,10}(?:\.\d{1,4})?)\b",
    re.I,
)
_CLAUSE_END = re.compile(r"[,.;!(]")
# A rate limit said hit, not only named ("Rate limit exceeded", "Throttled")
_LIMIT_HIT = re.compile(
    r"(?<!not )(?<!n't )(?:\brate[\s_-]?limit(?:ed|[\s_-]+(?:exceeded|reached|hit))|\bthrottled\b)",
    re.I,
)
# Who says it has the lead already: "We already have this lead".
_WE = re.compile(r"(?:we|i)\s+(?:have\s+)?(?=already\b)", re.I)


def _line_verdict(text: str, *, named: bool = False) -> dict[str, str]:
    """A line of text's first word with its reason (``REJECTED: Duplicate lead``) or its
    reference (``SUCCESS|B-77``) as verdict fields, after thanks and a subject (``Thank
    you. Lead Rejected: Duplicate``); {} when it opens with neither. Each opening is read
    once (``named`` after the subject): "Lead Lead …" or "Thanks, thanks, …" as a JSON
    string, unbounded, recursed past Python's limit, an internal error for that lead."""
    thanked = None if named else _COURTESY.match(text)
    if thanked is not None and thanked.end() < len(text):
        text = text[thanked.end() :]
    phrased = _phrased_status(text)
    if phrased is not None:
        return {"status_code": str(phrased)}
    first_line = text.splitlines()[0] if text else ""
    subject = None if named else _LEAD_SUBJECT.match(text)
    if subject is not None:
        after = text[subject.end() :]
        verdict = _line_verdict(after, named=True)
        if verdict and not verdict.get("id") and verdict.get("message") in (None, "", after):
            # Its words are the reason when nothing follows the verdict ("Lead Exists", "The
            # lead could not be accepted").
            verdict = {**verdict, "message": first_line}
        if verdict:
            return verdict
    flagged = _DIGIT_FLAG.fullmatch(first_line)
    if flagged is not None:
        # "0|Duplicate", "1|48213": a pipe-delimited answer's flag in digits, as older lead
        # APIs write it; each refusal was a sale, and each sale's id was unread.
        flag, said = flagged.group(1), flagged.group(2).strip()
        if flag != "1" and _LETTER.search(said):  # "-1|Duplicate": an error's code
            return {"success": "false", "message": said}
        if flag == "1":
            sold = _sale_said("success", said)
            if sold is not None:
                return sold
    if _NEGATIVE_CODE.fullmatch(text):
        # "-1", "-105": an error's code alone, as older lead APIs answer a refusal (their
        # sale is the lead's id); each was a sale
        return {"success": "false", "message": f"Error code {text}"}
    found = _TEXT_VERDICT.fullmatch(text) if len(text) <= TEXT_VERDICT_LIMIT else None
    if found is None:
        # A status's code alone ("NOT_SOLD", "DUPLICATE_LEAD", "LEAD_ACCEPTED"): read as
        # a status field is.
        coded = _STATUS_CODE.fullmatch(text) is not None and _state_says(text) is not None
        return {"status": text} if coded else {}
    word, rest = found.group(1).lower(), found.group(2).strip()
    following = next(_WORDS.finditer(rest), None)
    if word in _NO_WORDS and _MEASURE.fullmatch(first_line):
        return {}  # "Fraud score 12", "Error count: 0": a figure, not a verdict
    if word in _DUPLICATE_OPENERS and _UPDATED.search(first_line):
        return {}  # "Duplicate lead updated": the record it had, taken in (a CRM's upsert)
    if word in _NO_WORDS and _IGNORED.search(first_line):
        return {}  # "Invalid fields ignored: fax": the lead taken without them
    if word in _NEGATIONS:
        # "NO", "No: Duplicate", "NO|Over cap", "Not interested", "No buyer found", "No
        # coverage": each was a sale. Only the word after the negation decides ("Not a
        # duplicate - accepted" is a sale).
        if not rest:
            return {"success": "false"}
        if following is not None and following.group().lower() in _SOLD_WORDS:
            return {"status": first_line}
    separated = text[len(found.group(1)) :].lstrip()[:1] in _SEPARATORS
    if word in _YES_OR_NO and separated and rest:
        # "No: Duplicate", "false|Duplicate lead", "true|48213": a flag and what follows it
        if not _YES_OR_NO[word]:
            return {"success": "false", "message": rest.splitlines()[0]}
        word = "success"
    if word in _NO_WORDS and following is not None and following.group().lower() in _CHECK_WORDS:
        # "Duplicate check passed", "DNC scrub: clean": a check, read as a status's words
        # ("Duplicate check failed" says no); each was refused.
        failed = _state_says(first_line) is False
        return {"status": "Rejected", "message": first_line} if failed else {}
    if word in _NO_WORDS or word in _REFUSING_OPENERS:
        # A word that is itself a reason ("Duplicate lead", "Invalid zip code") keeps the
        # whole line: its rest alone ("lead") was the reason before.
        said = text if normalize_reason(word) is not None else rest
        status = word.capitalize() if word in _NO_WORDS else "Rejected"  # "Sorry, …"
        status = "Not OK" if word == "nok" else status
        return {"status": status, "message": said.splitlines()[0] if said else ""}
    sold = _sale_said(word, rest) if word in _YES_WORDS else None
    if sold is not None:
        return sold
    we = _WE.match(first_line)
    if _DUPLICATE.match(first_line, we.end() if we else 0):
        # "Already exists", "Email already exists", "We already have this lead": each a sale
        return {"status": "Duplicate", "message": first_line}
    if _ON_DNC_LIST.search(first_line) and _state_says(first_line) is not True:
        return {"status": "Rejected", "message": first_line}  # each was a sale
    not_buying = _NOT_BUYING.match(first_line)
    if not_buying is not None and _state_says(first_line[not_buying.end() :]) is not True:
        # each was a sale; not with a yes after it ("We couldn't process the fax field,
        # lead accepted")
        return {"status": "Rejected", "message": first_line}
    clause = _CLAUSE_END.split(first_line[:TEXT_VERDICT_LIMIT], maxsplit=1)[0]
    full = _CAP_SAID.search(clause) or _LIMIT_HIT.search(clause)
    if full and _state_says(first_line) is not True:
        # "OverCap", "Lead limit reached", "No capacity": a buyer full for now; "Rate limit
        # exceeded": a 429 in words. Each was a sale; in its first clause only ("Lead
        # received, 5 leads left before cap reached" is a sale).
        return {"status": "Rejected", "message": first_line}
    return {}


def _sale_said(status: str, rest: str) -> dict[str, str] | None:
    """A sale's id after its yes (``SUCCESS|B-77``), and its price after that
    (``OK|12345|15.00``: the id and price were unread, a sale at nothing); None when the
    rest is neither."""
    if _REFERENCE_TOKEN.fullmatch(rest):
        return {"status": status, "id": rest}
    piped = _PIPED_SALE.fullmatch(rest)
    if piped is not None:
        return {"status": status, "id": piped[1], "price": piped[2]}
    # In words: "Success: Lead ID 12345", "Sold - $12.50 - ID 99", "Lead sold for $12.50"
    # (each id and price unread: a sale at nothing); not beside a no.
    said_id = _LABELLED_ID.search(rest[:TEXT_VERDICT_LIMIT])
    said_price = _LABELLED_PRICE.search(rest[:TEXT_VERDICT_LIMIT])
    if (said_id is None and said_price is None) or _state_says(rest) is False:
        return None
    sale = {"status": status}
    if said_id is not None:
        sale["id"] = said_id[1]
    if said_price is not None:
        sale["price"] = said_price[1] or said_price[2]
    return sale


def _xml_verdict_fields(res: HttpResponse) -> tuple[dict[str, Any], bool]:
    """The leaf elements an XML answer gives its verdict in, by local name: the root's
    children (``<response><status>Rejected</status>…``), or a SOAP answer's response
    element's (``<soap:Envelope><soap:Body><addLeadResponse><status>…``); and whether they
    are captured. An answer that is one line of text in XML, .NET web services' way (an
    ASMX ``<string>REJECTED: Duplicate</string>``, a SOAP ``<AddLeadResult>`` alone in its
    response), is read as that line (``_line_verdict``): it was a sale whatever it said."""
    root = res.xml()
    return _verdict_of(root) if root is not None else ({}, False)


# A page's markup (<p>Error</p>, <html><body>…</body></html>) is not a line of text in XML.
_HTML_TAGS = frozenset(
    {"html", "head", "body", "title", "p", "div", "span", "pre", "h1", "h2", "h3", "b", "center"}
)


def _verdict_of(root: Element) -> tuple[dict[str, Any], bool]:
    if _local(root.tag).lower() in _HTML_TAGS:
        return {}, False
    answer = root
    if _local(root.tag) == "Envelope":
        body = next((child for child in root if _local(child.tag) == "Body"), None)
        answer = next(iter(body), root) if body is not None else root
    attributes = _attributes(answer)
    if len(answer) == 0:
        text = (answer.text or "").strip()
        said = _line_verdict(text) or ({_local(answer.tag): text} if text else {})
        return ({**attributes, **said}, True) if attributes else (said, False)
    fields: dict[str, Any] = {
        _local(child.tag): (child.text or "").strip()
        for child in itertools.islice(answer, 50)
        if len(child) == 0 and isinstance(child.tag, str)
    }
    for child in itertools.islice(answer, 50):
        name = _local(child.tag) if isinstance(child.tag, str) else ""
        if len(child) and name.lower() in _WRAPPERS and name not in fields:
            # An envelope's leaf elements as JSON's envelope object, read alike (the lead's
            # id in LeadConduit's <result>…<lead><id>…</id></lead>, a refusal inside).
            fields[name] = _leaves(child)
        elif len(child) and name.lower() in _ERRORS_NAMED and name not in fields:
            # <errors><error>Invalid phone</error></errors>, .NET's <Errors><string>…</string>,
            # <Errors><Error><Message>…: a list, read as JSON's errors list (a refusal said
            # only there was a sale; its reason was "Failure", "Rejected").
            listed = (
                _leaves(error) if len(error) else (error.text or "").strip()
                for error in itertools.islice(child, 50)
                if isinstance(error.tag, str)
            )
            fields[name] = [error for error in listed if error]  # <error/>: none
    lone = answer[0] if len(answer) == 1 and len(answer[0]) == 0 else None
    lone_attributes = _attributes(lone) if lone is not None else {}
    if lone is not None and lone_attributes:
        # <response><result status="rejected" reason="Duplicate"/></response>
        attributes = {**attributes, **lone_attributes}
        if not fields.get(_local(lone.tag)):
            fields = {}
    if (
        len(answer) == 1
        and len(fields) == 1
        and isinstance(line := next(iter(fields.values())), str)
    ):
        return {**attributes, **fields, **_line_verdict(line)}, True
    return {**attributes, **fields}, True


def _leaves(element: Element) -> dict[str, str]:
    """An element's leaf children (at most 50) by local name, with their text."""
    return {
        _local(leaf.tag): (leaf.text or "").strip()
        for leaf in itertools.islice(element, 50)
        if len(leaf) == 0 and isinstance(leaf.tag, str)
    }


def _attributes(element: Element) -> dict[str, str]:
    """An element's attributes by name, as fields: answers in "XML with attributes"
    (``<response status="Rejected" reason="Duplicate"/>``, Pingtree's buyers among them)
    said everything there, and were sales. Not a schema's own (``xsi:type``, namespaced)."""
    return {
        name: value.strip()
        for name, value in itertools.islice(element.attrib.items(), 50)
        if not name.startswith("{")
    }


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _split_url(text: str) -> SplitResult:
    """A URL a recipient wrote (a Location, a Link), in parts; nothing for one urllib cannot
    split ("http://[::1": "Invalid IPv6 URL"), which made its answer "Unreadable response"."""
    try:
        return urlsplit(text)
    except ValueError:
        return urlsplit("")


def redirected(res: HttpResponse, raw: str | None) -> Outcome:
    """A recipient that moved: not followed (a redirect could send the lead to plain http
    or another host, past the egress policy, and a 301 or 302 turns a POST into a GET
    without its body), so the reason says where to, for the destination's url to change.
    Only scheme, host and path: a query or user info could carry a credential."""
    where = _split_url(res.header("Location") or "")
    to = (
        f" to {where.scheme}://{where.netloc.rpartition('@')[2]}{where.path}"
        if where.hostname
        else f" to {where.path}"  # relative: on the same host
        if where.path
        else ""
    )
    return Outcome.error(
        f"Redirected (HTTP {res.status}){to}: redirects are not followed; update the url",
        retryable=False,
        raw=raw,
    )


# A refusal of our credentials said in words, not by a 401 (lead buyers' APIs answer 200 or
# 400 "Invalid API key"): read as "Invalid data", the lead was blamed, the destination's
# circuit stayed closed and every lead after it was refused the same way.
_CREDENTIALS_REFUSED = re.compile(
    r"\b(?:invalid|wrong|bad|missing|expired|unknown|incorrect|revoked)\s+"
    r"(?:api[\s_-]?key|apikey|api[\s_-]?token|access[\s_-]?token|auth(?:entication|orization)?"
    r"(?:[\s_-]?(?:token|key|header))?|credentials?|signature)\b"
    r"|\b(?:api[\s_-]?key|(?:access|api|auth)[\s_-]?token|credentials?)\s+(?:is\s+|are\s+|has\s+)?"
    r"(?:invalid|not valid|revoked|expired)\b"
    r"|\bauthentication\s+(?:failed|required)\b",
    re.IGNORECASE,
)
# "Unauthorized" alone; in a sentence ("lead unauthorized for this campaign") it may be the
# lead's own refusal.
_UNAUTHORIZED = frozenset({"unauthorized", "unauthorised", "not authorized", "401 unauthorized"})


# "Too many requests" said in words with a 200, 400 or 403, not a 429: a refusal, before,
# so the lead was never sent to that buyer again. A daily or hourly limit is a cap.
_RATE_LIMITED = re.compile(r"\brate[\s_-]?limit|\btoo many requests\b|\bthrottl", re.IGNORECASE)
_QUOTA = re.compile(r"\b(?:daily|hourly|per day|quota)\b", re.IGNORECASE)
RATE_LIMITED = "Rate limited"


def _says_rate_limited(text: str) -> bool:
    return _RATE_LIMITED.search(text) is not None and _QUOTA.search(text) is None


def rejection(text: str, status: int | None, raw: str | None) -> Outcome:
    """A refusal: a known reason when the text says one (``recognised``), else the text
    itself, bounded."""
    recognised = recognised_refusal(text, status, raw) if text else None
    if recognised is not None:
        return recognised
    if status == 409:
        return Outcome.failure("Duplicate lead", raw=raw, category=OutcomeCategory.DUPLICATE)
    fallback = f"Rejected (HTTP {status})" if status else "Rejected"
    return Outcome.failure(
        text[:REASON_LIMIT] or fallback, raw=raw, category=OutcomeCategory.HARD_REJECT
    )


def recognised_refusal(text: str, status: int | None, raw: str | None) -> Outcome | None:
    """What a refusal's words say, when they say something known: "too many requests",
    rate limited (retried); our credentials refused, an authentication error
    (``auth_failed``); a reason billing counts (``KNOWN_REASONS``). Else None."""
    if _says_rate_limited(text):
        return rate_limited(raw)
    refused = _CREDENTIALS_REFUSED.search(text)
    if refused is not None or text.strip().rstrip(".!").lower() in _UNAUTHORIZED:
        said = " ".join((refused.group(0) if refused else text.strip().rstrip(".!")).split())
        said = "" if said.lower() == "authentication failed" else said.lower()
        if status is not None:
            said = f"HTTP {status}: {said}".rstrip(": ")
        return auth_failed(said or "said in the answer", raw)
    known = normalize_reason(text)
    if known is None:
        return None
    reason, category = known
    return Outcome.failure(reason, raw=raw, category=category)


def _short_text(res: HttpResponse) -> str:
    """A short answer as text when it is plain text (not JSON, XML or HTML), else "": a
    verdict or a reason, where a longer text is a page."""
    if not res.body or len(res.body) > TEXT_VERDICT_LIMIT or res.body.lstrip()[:1] in b"<{[":
        return ""
    return res.decoded().strip()


# An XML declaration that no page follows (an XHTML page is read as a page).
_DECLARED_XML = re.compile(
    rb"(?:\xef\xbb\xbf)?\s*<\?xml\b[^>]*>(?!\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html)\b)",
    re.I | re.S,
)


# A 2xx HTML page that is not the recipient's answer: a page something else put in its
# place (a maintenance page, a web firewall's block page, a login form, a "not found" page
# served with 200) or the application's own error page. Counted as a sale, it was billed,
# and a waterfall stopped at a buyer that never saw the lead. Read by its <title> (a
# form's "Thank you" page stays a sale); F5's and Imperva's block pages by their marks.
_HTML_START = re.compile(
    rb"(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*"
    rb"<(?:!doctype\s+html|html|head|body|title)\b",
    re.I | re.S,
)
_PHP_FAILED = re.compile(
    rb"<b>(?:Fatal error|Parse error)</b>:|(?:^|\n)\s*(?:PHP )?(?:Fatal error|Parse error):\s"
)
# At most 300 characters between the tags: a page of unclosed <title>s (a hostile answer)
# made each search go to the end from every one, 0.17 s of CPU for 16 KiB.
_TITLE = re.compile(r"<title\b[^>]*>(.{0,300}?)</title\s*>", re.I | re.S)
_HEADING = re.compile(r"<h1\b[^>]*>(.{0,300}?)</h1\s*>", re.I | re.S)
_TAG = re.compile(r"<[^>]*>")
HTML_SEARCHED = 16_384  # characters of a page looked at for its title and marks
PAGE_TITLE_LIMIT = 60
_PAGE_BLOCKED = re.compile(
    r"\b(?:access denied|web page blocked|request blocked|attention required)\b", re.I
)
_PAGE_LOGIN = re.compile(r"\b(?:log[\s-]?in|sign[\s-]?in|sign[\s-]?on|session expired)\b", re.I)
_PAGE_NOT_FOUND = re.compile(
    r"\b(?:404|not found|page (?:does not|doesn't) exist|no such app|domain (?:is )?"
    r"(?:parked|for sale)|default (?:web )?(?:site )?page|welcome to nginx|index of /)",
    re.I,
)
_PAGE_FAILED = re.compile(
    r"\b(?:5\d\d|bad gateway|gateway time-?out|unavailable|maintenance|be (?:right )?back"
    r"|down for|error|exception|something went wrong|oops)\b",
    re.I,
)


def error_page(res: HttpResponse, raw: str | None) -> Outcome | None:
    """A 2xx HTML page that is not the recipient's answer, by its title (``_PAGE_*``) or a
    firewall's mark: an error (or a known refusal, "Duplicate Entry") naming the page.
    None for any other answer, a "Thank you" page among them."""
    if _PHP_FAILED.search(res.body, 0, 4096):
        # PHP with display_errors on answers its fatal error with a 200 and no page.
        return Outcome.error(
            f"Recipient error page: PHP error (HTTP {res.status})", retryable=True, raw=raw
        )
    if not _HTML_START.match(res.body, 0, 1024):
        return None
    text = res.decoded()[:HTML_SEARCHED]
    # Its <title>, else its first heading: a page written by hand or by a framework's
    # bare error handler (<h1>500 Internal Server Error</h1>) often has no title.
    found = _TITLE.search(text) or _HEADING.search(text)
    named = _TAG.sub(" ", found.group(1)) if found else ""
    title = " ".join(html.unescape(named).split())[:PAGE_TITLE_LIMIT]
    lowered = text.lower()
    if "incapsula incident id" in lowered:
        return firewall_blocked("Imperva", raw)
    if title.lower() == "request rejected" and "support id" in lowered:
        return firewall_blocked("F5", raw)  # F5 BIG-IP ASM's block page, served with a 200
    page = f"'{title}' page (HTTP {res.status})"
    if not title:
        return _page_said_no(text, raw)
    if _PAGE_BLOCKED.search(title):
        return firewall_blocked(f"an {page}", raw)
    if _PAGE_LOGIN.search(title):
        return auth_failed(f"a login page: {page}", raw)
    if _PAGE_NOT_FOUND.search(title):
        return configuration_refused(f"a {page}: check the url", raw)  # every lead meets it
    known = recognised_refusal(title, None, raw)
    if known is not None and known.reason != "System unavailable":
        return known  # "Duplicate Entry", "Invalid Request"
    if known is not None or _PAGE_FAILED.search(title):
        return Outcome.error(f"Recipient error page: {page}", retryable=True, raw=raw)
    if _state_says(title) is False:
        # A form handler's own answer page that says no ("Lead Rejected", "Not Accepted"):
        # it was a sale.
        return rejection(title, None, raw)
    return _page_said_no(text, raw)


# What a page shows, not what it runs or declares.
_UNSHOWN = re.compile(r"<(head|script|style)\b[^>]*>.*?</\1\s*>", re.I | re.S)
PAGE_WORDS_LIMIT = 300  # a page that shows more is a page, not a verdict
PAGE_READ_LIMIT = 4096  # characters: a form handler's answer page is small


def _page_said_no(text: str, raw: str | None) -> Outcome | None:
    """A small page whose words refuse as a line of text would (``<html><body><h1>Lead
    Form</h1><p>Lead Rejected: Duplicate</p></body></html>``), each of its blocks read as
    a line: a form handler's answer, each billed as a sale. None for any other page, and
    for one with a line that says yes beside it."""
    if len(text) > PAGE_READ_LIMIT:
        return None
    shown = html.unescape(_TAG.sub("\n", _UNSHOWN.sub(" ", text)))
    lines = [" ".join(line.split()) for line in shown.splitlines() if line.strip()]
    if not lines or sum(map(len, lines)) > PAGE_WORDS_LIMIT:
        return None
    refused = None
    for line in lines:
        verdict = _line_verdict(line)
        if verdict.get("id") or _said_yes(verdict) or _state_says(line) is True:
            return None  # "Success", "Lead accepted": a yes beside it
        if refused is None and _said_no_outright(verdict) is not None:
            refused = line
    if refused is None:
        return None
    return recognised_refusal(refused, None, raw) or rejection(refused, None, raw)


def _first_line(res: HttpResponse, body: Any = None) -> str:
    """A short plain-text answer's first line (``_short_text``), or a JSON string answer's
    (ASP.NET's ``{"d": "REJECTED: Duplicate"}``), where a refusal's words are."""
    text = body if isinstance(body, str) else _short_text(res)
    return next(iter(text.strip().splitlines()), "").strip()


def rate_limited(raw: str | None) -> Outcome:
    """The recipient's "not so fast": retryable, and not the recipient's fault."""
    return Outcome.error(
        RATE_LIMITED, retryable=True, raw=raw, category=OutcomeCategory.SOFT_REJECT
    )


def turn_not_in_time(wait_s: float) -> Outcome:
    """Not sent (an auction's ping or post): the buyer's rate-limit window is spent (it said
    so, or this worker's own allowance is) until after the ping's timeout or the bid's
    validity; the auction goes on without it."""
    return Outcome.skip(
        RATE_LIMITED, raw=f"next request in {wait_s:.1f} s", category=OutcomeCategory.NOT_SENT
    )


def auth_failed(what: str, raw: str | None) -> Outcome:
    """Our credentials were refused (``what``: "API key", "token expired", ...)."""
    return Outcome.error(
        f"Authentication failed ({what})",
        retryable=False,
        raw=raw,
        category=OutcomeCategory.AUTH_ERROR,
    )


def firewall_blocked(by: str, raw: str | None) -> Outcome:
    """The recipient's web firewall stopped the request before the recipient saw it (our
    address or our client is not let through): not the lead's fault, nor our credentials'.
    Category auth_error, so the destination's circuit opens at once and says why; its
    half-open probe finds when the block is lifted."""
    return Outcome.error(
        f"Blocked by the recipient's firewall ({by})",
        retryable=False,
        raw=raw,
        category=OutcomeCategory.AUTH_ERROR,
    )


def configuration_refused(why: str, raw: str | None) -> Outcome:
    """An answer that will be the same for every lead (no permission, API disabled, wrong
    object): not this lead's fault. Category auth_error, so the destination's circuit
    opens at once and says why, and the leads wait or move on as for an open circuit."""
    return Outcome.error(
        f"Configuration refused ({why})",
        retryable=False,
        raw=raw,
        category=OutcomeCategory.AUTH_ERROR,
    )


def payment_required(said: str | None, raw: str | None) -> Outcome:
    """A 402: the recipient's account is out of funds or its plan does not cover this
    (a lead buyer's prepaid balance spent). Not this lead's fault: category auth_error, so
    the circuit opens at once (a buyer that cannot pay is not pinged or posted to) and its
    half-open probe finds when the account is paid; a waterfall moves on. Before, each
    lead was refused as if for itself, and a lone buyer's leads were lost as rejected."""
    words = " ".join((said or "").split())[:100].rstrip(".!")
    why = f"HTTP 402: {words}" if words else "HTTP 402"
    return Outcome.error(
        f"Payment required ({why})",
        retryable=False,
        raw=raw,
        category=OutcomeCategory.AUTH_ERROR,
    )


def quota_spent(what: str, raw: str | None, wait_s: float) -> Outcome:
    """The vendor's daily (or hourly) allowance is spent: every lead would get the same
    answer until it resets. The destination's circuit opens for ``wait_s`` (until the
    reset, or until it is worth asking again), its leads wait for it (or move on in a
    waterfall), and the attempt is not counted against the lead's ``max_attempts``."""
    return replace(
        Outcome.error(
            f"Quota spent ({what})", retryable=True, raw=raw, category=OutcomeCategory.SOFT_REJECT
        ),
        quota_s=wait_s,
    )


def internal_error(exc: BaseException) -> Outcome:
    """Our own code failed on this lead: an error named by the exception's type only (its
    message may quote lead values), never retried (it would fail the same way)."""
    name = type(exc).__name__
    return Outcome.error(
        f"Internal error: {name}", retryable=False, raw=name, category=OutcomeCategory.INTERNAL
    )


def outcome_for_error(exc: DeliveryError) -> Outcome:
    category = (
        OutcomeCategory.TIMEOUT
        if isinstance(exc, DeliveryTimeout)
        else OutcomeCategory.RECIPIENT_ERROR
        if isinstance(exc, DeliveryConnectionError)
        else None
    )
    if exc.credentials_refused or exc.every_lead:
        category = OutcomeCategory.AUTH_ERROR
    return Outcome.error(
        exc.reason, retryable=exc.retryable, raw=str(exc)[:RAW_LIMIT] or None, category=category
    )


def _said_no(fields: dict[str, Any]) -> str | None:
    """What a 2xx answer says when it says no ("rejected", "success: false") at the top of
    its JSON (or in its XML's verdict fields; ``_lowered``: only the first 50 are looked
    at, the verdict comes first), else None."""
    said = _said_no_outright(fields)
    if said is not None:
        return said
    if _said_yes(fields):
        return None
    if any(str(fields.get(flag)).strip().lower() in _TRUE_WORDS for flag in _DUPLICATE_FLAGS):
        return "Duplicate lead"  # {"duplicate": true}, unless it also said it took the lead
    return _error_said(fields)


# A 2xx answer's words when it gives nothing else to read (``_message_said_no``).
_MESSAGE_KEYS = (
    "message", "msg", "reason", "detail", "description", "result_message", "resultmessage",
    "status_message", "statusmessage", "response_detail", "responsedetail",
    "response_message", "responsemessage",
)  # fmt: skip


def _message_said_no(fields: dict[str, Any]) -> str | None:
    """A 2xx answer whose only say is a message, with no yes, and (the caller's check) no
    id or price: ``{"code": 200, "message": "Duplicate lead"}``, ``{"status": 0, "msg":
    "lead refused"}``, ``<code>1</code><msg>Lead rejected: Duplicate</msg>``. Its first
    message is read as a line of text answering alone is ("Duplicate check passed" says
    nothing); each such refusal was a sale."""
    if _said_yes(fields):
        return None
    text = next((fields[k] for k in _MESSAGE_KEYS if isinstance(fields.get(k), str)), "")
    line = text.strip()[:TEXT_VERDICT_LIMIT]
    return _said_no_outright(_line_verdict(line)) if line else None


def _said_no_outright(fields: dict[str, Any]) -> str | None:
    """A no said by a flag (``accepted: false``) or a status's words, whatever else the
    fields say."""
    for name, value in fields.items():
        # "false" too: XML's text, and PHP APIs that write JSON booleans as strings; 0 and
        # "no" as PHP and MySQL's flags write it ({"accepted": 0} was billed as a sale).
        if name in _NO_FLAGS and str(value).strip().lower() in _FALSE_WORDS:
            return "Rejected"
        if isinstance(value, str) and name in _STATE_KEYS and _state_says(value) is False:
            said = value.strip()
            return "Rejected" if said.lower() in _YES_OR_NO else said[:REASON_LIMIT]
        if name in _RESULT_CODES and _NEGATIVE_CODE.fullmatch(str(value).strip()):
            return "Rejected"  # {"ResultCode": -1, …}, <code>-1</code>: an error's code
    return None


# A result's code below zero is an error's (JSON-RPC's -32602, "ResultCode": -1), where 0
# or 1 may say yes: each was a sale.
_RESULT_CODES = frozenset(
    {"code", "result", "resultcode", "result_code", "status", "statuscode", "status_code",
     "returncode", "return_code"}
)  # fmt: skip
_NEGATIVE_CODE = re.compile(r"-[1-9]\d{0,5}")


def _enveloped(fields: dict[str, Any]) -> dict[str, Any] | None:
    """The object a 2xx answer wraps the lead's verdict in beside the call's own fields
    (``{"status": "success", "data": {"status": "rejected", …}}``), if any; a list of one
    object is that object (``"data": [{"status": "rejected"}]``: APIs that answer every
    call as a batch, whose refusal was billed as a sale)."""
    for name in _ENVELOPES:
        inner = fields.get(name)
        if isinstance(inner, list) and len(inner) == 1:
            inner = inner[0]
        if isinstance(inner, dict) and inner:
            return inner
    return None


def _said_yes(fields: dict[str, Any]) -> bool:
    """Whether a verdict's fields (``_lowered``) say yes: ``success``/``accepted``/``ok``
    true, or a status or result whose words say so."""
    return any(str(fields.get(flag)).strip().lower() in _TRUE_WORDS for flag in _NO_FLAGS) or any(
        isinstance(fields.get(key), str) and _state_says(fields[key]) is True for key in _STATE_KEYS
    )


# An "always 200" API's real status, in its body: {"status": 409, "message": "Duplicate"},
# {"code": 400, "msg": "Invalid phone"}, <response><statusCode>500</statusCode>…
_STATUS_KEYS = frozenset(
    {"status", "code", "statuscode", "status_code", "httpcode", "http_code", "httpstatus",
     "http_status", "httpstatuscode"}
)  # fmt: skip


# An error's status by name, as a status or result word: an HTTP phrase in code's spelling
# ({"result": "bad_request", "message": "email is required"}), or Google's canonical codes
# (gRPC gateways' {"status": "RESOURCE_EXHAUSTED"}); each on a 200 was a sale. Not the
# words a lead's own status may be ("unavailable", "conflict", "not_found").
_NAMED_STATUSES = {
    "bad_request": 400, "invalid_argument": 400, "unauthorized": 401, "unauthenticated": 401,
    "forbidden": 403, "permission_denied": 403, "unprocessable_entity": 422,
    "too_many_requests": 429, "resource_exhausted": 429, "internal_server_error": 500,
    "bad_gateway": 502, "service_unavailable": 503, "gateway_timeout": 504,
    "deadline_exceeded": 504,
}  # fmt: skip
_NAMED_STATUS_KEYS = frozenset({"status", "result", "code", "status_code", "statuscode"})
_BLANKS_OR_HYPHENS = re.compile(r"[\s-]+")  # "Service Unavailable" as "service_unavailable"


def _status_said(fields: dict[str, Any]) -> int | None:
    """The HTTP status a 2xx answer's verdict fields (``_lowered``) say it stands for, when
    they say an error's (400 to 599, or ``_NAMED_STATUSES``) and do not also say yes; else
    None."""
    for name, value in fields.items():
        if isinstance(value, str) and name in _NAMED_STATUS_KEYS and len(value) <= 40:
            named = _NAMED_STATUSES.get(_BLANKS_OR_HYPHENS.sub("_", value.strip().lower()))
            if named is not None:
                return None if _said_yes(fields) else named
        if name not in _STATUS_KEYS or isinstance(value, bool):
            continue
        if isinstance(value, str) and len(value) == 3 and value.isascii() and value.isdigit():
            # A text "code" may be anything three digits long (an offer's, an area's) unless
            # words say why beside it ({"code": "409", "msg": "Lead exists"}, XML's <code>).
            if name == "code" and not any(key in fields for key in _REASON_KEYS):
                continue
            value = int(value)
        if isinstance(value, int) and 400 <= value <= 599:
            return None if _said_yes(fields) else value
    return None


_DUPLICATE_FLAGS = ("duplicate", "is_duplicate", "isduplicate", "dupe")
_TRUE_WORDS = frozenset({"true", "yes", "1"})
_FALSE_WORDS = frozenset({"false", "no", "0"})
_YES_OR_NO = {"yes": True, "true": True, "no": False, "false": False}  # a status that is one
_NEGATIONS = frozenset({"no", "not", "non"})
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")  # "NotAccepted", "DUPLICATE_LEAD"
# "no_sale", "no match", "not_interested", "No Coverage"
_SOLD_WORDS = _YES_WORDS | {
    "sale", "match", "buyer", "buyers", "bought", "interested", "eligible", "qualified", "coverage",
    "covered",
    # a ping's "no_bid", "NoBid", "NO_BID": its price beside it (a floor, an echo) was bid
    "bid",
}  # fmt: skip


# A no-word that names a check, not a verdict: "Duplicate check passed", "DNC scrub: OK".
_CHECK_WORDS = frozenset({"check", "checks", "scrub"})


def _state_says(value: str) -> bool | None:
    """What a status or result says, by its first word that decides: "DUPLICATE_LEAD",
    "Lead Rejected - Duplicate", "not_sold", "no_match" say no (False); "Accepted",
    "lead_accepted", "no_error" say yes (True); "queued", "pending" say neither (None)."""
    words = [found.group().lower() for found in itertools.islice(_WORDS.finditer(value), 12)]
    if len(words) == 1 and words[0] in _YES_OR_NO:  # {"result": "false"}, {"status": "No"}
        return _YES_OR_NO[words[0]]
    for at, word in enumerate(words):
        negated = at > 0 and words[at - 1] in _NEGATIONS
        next_word = words[at + 1] if at + 1 < len(words) else None
        if word in _NO_WORDS and next_word not in _CHECK_WORDS:
            return negated  # "no_error": a yes
        if word in _SOLD_WORDS and (negated or word in _YES_WORDS):
            return not negated
    # "LIMIT_REACHED"-like words that name no verdict but a buyer full for now
    # ("budget_exceeded", "NO_CAPACITY"): each was a sale
    return False if _CAP_SAID.search(value[:TEXT_VERDICT_LIMIT]) else None


def _lowered(body: dict[str, Any]) -> dict[str, Any]:
    """The first 50 fields, their names in lower case: a verdict comes first."""
    return dict(itertools.islice(((str(k).lower(), v) for k, v in body.items()), 50))


def _error_said(fields: dict[str, Any]) -> str | None:
    """A 2xx that carries only an error (``{"error": "Invalid zip"}``, a PHP API's), or a
    GraphQL answer's ``errors`` with no ``data``: what the error says, else None."""
    error = fields.get("error")
    if error is None:
        # An error said by its message or code alone: monday.com's older answers and PHP
        # buyers' ({"error_code": "ColumnValueException", "error_message": "…"}, a 200
        # billed as a sale).
        error = next((fields[name] for name in _ERROR_NAMES if fields.get(name)), None)
    if error is True:
        return "Rejected"
    # {"error": "Invalid zip"}, or an error object: {"error": {"message": "…"}}, JSON-RPC's.
    said = _reason(error, nested=False) if isinstance(error, dict) else error
    if isinstance(said, str) and _is_an_error(said):
        return said.strip()[:REASON_LIMIT]
    if fields.get("data") is not None:
        return None
    return _listed_error(fields)


_ERROR_NAMES = ("error_message", "errormessage", "error_msg", "error_code", "errorcode")
_ERRORS_NAMED = (
    "errors", "reasons", "field-errors", "field_errors", "fielderrors",
    # Jira-style and buyers' own names: a refusal's reason was its status's word
    # ({"success": false, "errorMessages": ["Duplicate"]} was "Rejected")
    "errormessages", "error_messages", "validationerrors", "validation_errors", "errorlist",
    "error_list", "rejectionreasons", "rejection_reasons", "rejectreasons", "reject_reasons",
    "failures",
)  # fmt: skip


def _listed_error(fields: dict[str, Any]) -> str | None:
    """What the first of an answer's ``errors`` (``_lowered``) says, "Rejected" when it
    says nothing; None without errors."""
    # Marketo lists a skipped lead's "reasons" as others list their errors; Close its
    # fields' errors apart ({"errors": [], "field-errors": {"email": "Invalid email"}}).
    errors = next((fields[name] for name in _ERRORS_NAMED if fields.get(name)), None)
    if not errors or not isinstance(errors, list | dict):
        return None
    if isinstance(errors, dict):
        # An error object rather than fields' errors: Freshsales' {"errors": {"code": 400,
        # "message": ["Email has already been taken"]}} was "code 400".
        told = next(values_named(errors, _REASON_KEYS), None)
        told = told[0] if isinstance(told, list) and told else told
        if isinstance(told, str) and told.strip():
            return told.strip()[:REASON_LIMIT]
    first = next(iter(errors.items() if isinstance(errors, dict) else errors))
    if isinstance(first, dict):  # GraphQL's {"message": ...}, JSON:API's {"detail": ...}
        first = _reason(first) or next(iter(values_named(first, ("title", "code"))), "")
    elif isinstance(first, tuple):  # Rails' {"email": ["is invalid"]}
        field, said = first
        said = said[0] if isinstance(said, list) and said else said
        first = f"{field} {_reason(said) or '' if isinstance(said, dict) else said}"
    text = str(first).strip()
    return text[:REASON_LIMIT] if text else "Rejected"


def _problem_title(res: HttpResponse, body: Any) -> str | None:
    """An RFC 9457 problem's ``title`` when it says nothing else (no ``detail``): the problem
    type's summary (``"Duplicate lead"``, ``"Lead outside the buyer's footprint"``), not the
    status's own phrase (Spring's ``"Bad Request"``). None for any other answer."""
    if not isinstance(body, dict) or not isinstance(title := body.get("title"), str):
        return None
    problem = "problem+json" in (res.header("Content-Type") or "").lower()
    if not problem and not ("type" in body and "status" in body):
        return None
    title = " ".join(title.split())
    try:
        phrase = HTTPStatus(res.status).phrase.lower()
    except ValueError:
        phrase = ""
    return title[:REASON_LIMIT] if title and title.lower() != phrase else None


def _is_an_error(said: str) -> bool:
    """An error field's words that say there is one: not "none", "0", "OK", nor a yes
    ("Success", "Lead accepted": APIs whose error object carries code 0 and its words)."""
    lowered = said.strip().lower()
    return lowered not in _NOT_ERRORS and _state_says(lowered) is not True


def values_named(body: dict[str, Any], names: tuple[str, ...]) -> Iterator[Any]:
    """The values of ``names`` the body has, in the names' order, each as written or in
    another case ("Message", "LeadId": .NET APIs' PascalCase)."""
    lowered: dict[str, Any] | None = None
    for name in names:
        if name in body:
            yield body[name]
            continue
        if lowered is None:  # once, and only when a name is not there as written
            lowered = {key.lower(): value for key, value in body.items()}
        if name.lower() in lowered:
            yield lowered[name.lower()]


def reason_in_answer(raw: str | None) -> str | None:
    """The reason an answer's text gives (``rejectReason``, ``message``…; an XML answer's
    ``<reason>``, a form's), else None: a ping's answer without a bid says why in it
    (Ringba's ``{"bidAmount": 0, "rejectReason": "Missing required fields"}``)."""
    if not raw:
        return None
    res = HttpResponse(200, {}, raw.encode())
    body = one_answer(res.json())
    return _reason(body if isinstance(body, dict) else _text_verdict(res, body)[0])


# The names an error's code goes by (Salesforce's errorCode, HubSpot's errorType).
_CODE_KEYS = ("errorcode", "error_code", "errortype", "error_type", "code")


def _code_said(fields: dict[str, Any]) -> str | None:
    """An answer's error code when it is a text (``"DUPLICATES_DETECTED"``), else None;
    the first of its ``errors`` list's when the answer has none of its own."""
    code = next((value for value in values_named(fields, _CODE_KEYS) if value), None)
    if code is None:
        errors = next(values_named(fields, ("errors",)), None)
        first = errors[0] if isinstance(errors, list) and errors else None
        if isinstance(first, dict):
            code = next((value for value in values_named(first, _CODE_KEYS) if value), None)
    return code if isinstance(code, str) else None


def _reason(body: Any, nested: bool = True) -> str | None:
    """The first reason text the body gives (``_REASON_KEYS``), or inside an error object:
    ``{"error": {"code": 400, "message": "…"}}`` (Google's, JSON-RPC's, Stripe's)."""
    if isinstance(body, dict):
        for value in values_named(body, _REASON_KEYS):
            if isinstance(value, dict) and "lang" in value:
                value = value.get("value")  # OData's message: {"lang": "en-US", "value": "…"}
            if isinstance(value, list) and value and isinstance(value[0], str):
                value = value[0]  # NestJS's {"message": ["email must be an email"], …}
            if isinstance(value, str) and value.strip():
                return value.strip()[:REASON_LIMIT]
            if nested and isinstance(value, dict) and (inner := _reason(value, nested=False)):
                return inner
    return None


def _reference_id(body: Any, nested: bool = True) -> str | None:
    if isinstance(body, dict):
        for value in values_named(body, _REFERENCE_KEYS):
            if isinstance(value, str | int) and not isinstance(value, bool):
                return str(value)
        details = next(values_named(body, ("details",)), None) if nested else None
        if isinstance(details, dict):
            # Zoho CRM's record id: {"code": "SUCCESS", "details": {"id": "4150…"}, …}
            return _reference_id(details, nested=False)
        name, made = next(iter(body.items()), ("", None))
        if nested and len(body) == 1 and isinstance(made, dict) and name not in _NOT_RECORDS:
            # the record made, under its type's name: ActiveCampaign's {"contact": {"id": …}}
            return _reference_id(made, nested=False)
    return None


# What a lone object is named when it is not the record made: the call's own notes.
_NOT_RECORDS = frozenset({"meta", "_meta", "metadata", "links", "_links", "request", "error"})


# Where a 2xx that made a record names it in its headers: OData's (Dynamics 365 answers a
# create 204 No Content with it), and a 201 Created's Location (RFC 9110 §15.3.2).
_ODATA_KEY = re.compile(r"\(([^()]{1,200})\)\s*$")


def _header_reference(res: HttpResponse) -> str | None:
    """A made record's id from the answer's headers when its body names none: the key in
    ``OData-EntityId: https://org.crm.dynamics.com/api/data/v9.2/leads(7b9c…)``, or the
    last segment of a 201's ``Location: https://api.example.com/leads/L-77``."""
    entity = res.header("OData-EntityId")
    if entity and (key := _ODATA_KEY.search(entity)):
        return key.group(1).strip("'")
    location = res.header("Location") if res.status == 201 else None
    if location:
        last = _split_url(location.strip()).path.rstrip("/").rpartition("/")[2]
        if _REFERENCE_TOKEN.fullmatch(last):
            return last
    return None


def _price(body: Any) -> Decimal | None:
    """A sale's price: its ``price``, else its ``payout`` (affiliate networks' and lead
    buyers' name for what they pay for it: ClickDealer's ``"Payout": 2.25``)."""
    if not isinstance(body, dict):
        return None
    said = (value for value in values_named(body, ("price", "payout")) if value is not None)
    return to_price(next(said, None))


# A marketplace's list of its buyers' bids, each bid's amount and id, by the names given.
_OFFER_LISTS = ("bids", "offers")
_OFFER_PRICES = ("price", "bid", "amount", "payout")
_OFFER_IDS = ("bid_id", "id", "offer_id")
_OFFER_OBJECTS = ("bid", "offer")


def best_offer(body: Any) -> tuple[Decimal, str | None] | None:
    """The highest of the bids a marketplace answers a ping with, listed for its buyers
    (Juiced's ``{"ping_id": …, "bids": [{"id": …, "price": 45}, {"id": …, "price":
    38.5}]}``), or the one bid an answer gives as an object (``{"bid": {"price": 9.5,
    "id": "B-1"}}``), and that bid's id; None when there is none above nothing. Such a ping
    had no bid at its top and never won; in a bid's object, ``amount`` is the bid."""
    if not isinstance(body, dict):
        return None
    offers = next((found for found in values_named(body, _OFFER_LISTS) if found), None)
    if offers is None:
        # one bid as an object of its own: {"bid": {"price": 9.5, "id": "B-1"}}
        lone = next((v for v in values_named(body, _OFFER_OBJECTS) if isinstance(v, dict)), None)
        offers = [lone] if lone is not None else None
    if not isinstance(offers, list):
        return None
    best: tuple[Decimal, str | None] | None = None
    for offer in itertools.islice(offers, 100):
        if not isinstance(offer, dict):
            continue
        # a number or its words, not a money object in it: two levels of objects are not a
        # bid ({"bid": {"amount": {"amount": 1}}})
        said = (v for v in values_named(offer, _OFFER_PRICES) if v is not None)
        price = to_price(next((v for v in said if not isinstance(v, dict)), None))
        if price is None or price <= 0 or (best is not None and price <= best[0]):
            continue
        ids = (v for v in values_named(offer, _OFFER_IDS) if isinstance(v, str | int))
        named = next((v for v in ids if not isinstance(v, bool)), None)
        best = (price, None if named is None else str(named))
    return best


# The events' decimal: 14 digits, 4 after the point. A recipient's "price": 1e400 once made
# the event of a sale unwritable, and the sale an internal error.
LARGEST_PRICE = Decimal("9999999999")


def to_price(value: Any) -> Decimal | None:
    """A price as a recipient writes it (12.5, "12.50", "$12.50", a money object's amount:
    ``{"amount": "12.50", "currency": "USD"}``); None when it is not a finite number or is
    larger than an event can carry (``LARGEST_PRICE``): no price, its words in raw."""
    if isinstance(value, dict):
        value = next(values_named(value, ("amount", "value")), None)
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    price: Decimal | None
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        price = _written_price(value) if isinstance(value, str) else None
    if price is None:
        return None
    return price if price.is_finite() and abs(price) <= LARGEST_PRICE else None


# A price written for people: a currency's sign or code around it, thousands grouped
# ("$12.50", "12.50 USD", "USD 1,250.00", "€9"). A ping's bid so written was no bid, and the
# buyer never won; a sale's price was lost to billing.
_WRITTEN_PRICE = re.compile(
    r"(?:[A-Z]{3}\s?)?[$€£¥]?\s?([+-]?\d[\d,]*(?:\.\d+)?)\s?[$€£¥]?(?:\s?[A-Z]{3})?"
)


def _written_price(text: str) -> Decimal | None:
    found = _WRITTEN_PRICE.fullmatch(text.strip()) if len(text) <= 40 else None
    if found is None:
        return None
    try:  # grouped by thousands as en_US writes them: "12,50" is refused, not guessed
        return to_number(found.group(1))
    except ConversionError:
        return None


# What an answer may add to a lead: the first few scalars, each short. A 2xx answer with
# 40,000 fields once made a 510 KB event and a 670 KB routing record per lead.
DEFAULT_CAPTURES = 20
CAPTURE_VALUE_LIMIT = 1024
NOT_CAPTURED = "not_captured"  # appended.<destination>.not_captured: how many were dropped


def _captured(body: Any) -> dict[str, str]:
    """Top-level scalar values of a JSON answer; they become ``appended.<destination>.*``.
    At most ``DEFAULT_CAPTURES`` of them, each at most ``CAPTURE_VALUE_LIMIT`` characters;
    how many were left out is said in ``not_captured``."""
    if not isinstance(body, dict):
        return {}
    kept: dict[str, str] = {}
    dropped = 0
    for key, value in body.items():
        if not isinstance(value, str | int | float | bool) or len(key) > 64:
            continue
        text = str(value)
        if len(kept) < DEFAULT_CAPTURES and len(text) <= CAPTURE_VALUE_LIMIT:
            kept[key] = text
        else:
            dropped += 1
    if dropped:
        kept[NOT_CAPTURED] = str(dropped)
    return kept


# The IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers): ``t`` is the seconds
# until the quota resets, in ``RateLimit: "default";r=0;t=30``.
_RATELIMIT_RESET = re.compile(r";\s*t=(\d{1,9})\b")
_EPOCH_FROM = 1_000_000_000  # an X-RateLimit-Reset this large is a time, not a delay


def rate_limit_reset(res: HttpResponse, now: float | None = None) -> float | None:
    """Seconds until a rate limit resets, for a 429 without Retry-After: the IETF draft's
    ``RateLimit: …;t=30`` or ``RateLimit-Reset: 30``, else ``X-RateLimit-Reset`` (seconds,
    or a Unix time as GitHub's and many others write it). None when none is readable."""
    named = res.header("RateLimit")
    if named is not None and (found := _RATELIMIT_RESET.search(named)) is not None:
        return float(found[1])
    delay = res.header("RateLimit-Reset")
    if delay is not None and _ascii_digits(delay.strip()):
        return float(delay.strip())
    reset = (res.header("X-RateLimit-Reset") or "").strip()
    if not _ascii_digits(reset) and not _DECIMAL_SECONDS.fullmatch(reset):
        return None
    value = float(reset)
    if value < _EPOCH_FROM:
        return value
    if value >= _EPOCH_FROM * 1000:  # a Unix time in milliseconds, as some APIs write it
        value /= 1000
    return max(value - (time.time() if now is None else now), 0.0)


_DECIMAL_SECONDS = re.compile(r"\d{1,9}\.\d{1,6}")

# The IETF RateLimit field's ``r``: requests left in the window (``"default";r=0;t=30``).
_RATELIMIT_LEFT = re.compile(r";\s*r=(\d{1,9})\b")
# How long a destination's requests wait for a spent window in the worker; a longer one (an
# hourly or daily quota) is left to the refused leads' retries, which are parked.
WINDOW_HOLD_LIMIT_S = 60.0


def window_spent(res: HttpResponse) -> float | None:
    """Seconds until the recipient takes a request again, when an answer says its rate
    limit's window is spent: none left (``RateLimit: …;r=0;t=5``, ``RateLimit-Remaining:
    0``, ``X-RateLimit-Remaining: 0``) with when it resets, or a 429 with its Retry-After or
    reset. The destination's next requests wait for it rather than meet a 429 each. None
    when not, or for longer than ``WINDOW_HOLD_LIMIT_S``."""
    if res.status == 429:
        wait = parse_retry_after(res.header("Retry-After"))
        if wait is None:
            wait = rate_limit_reset(res)
    elif _none_left(res):
        wait = rate_limit_reset(res)
    else:
        return None
    if wait is None or wait <= 0 or wait > WINDOW_HOLD_LIMIT_S:
        return None
    return wait


def _none_left(res: HttpResponse) -> bool:
    named = res.header("RateLimit")
    if named is not None and (found := _RATELIMIT_LEFT.search(named)) is not None:
        return int(found[1]) == 0
    left = res.header("RateLimit-Remaining") or res.header("X-RateLimit-Remaining")
    return left is not None and left.strip() == "0"


RETRY_AFTER_LIMIT_S = 366 * 86_400.0  # the longest wait a recipient's answer is taken to ask


def _ascii_digits(text: str) -> bool:
    """Whole seconds in ASCII digits: a header is read as Latin-1, where "¹²³" pass
    ``str.isdigit`` and ``float`` refuses them (a ValueError, the lead's internal error
    where its answer said when to retry)."""
    return text.isascii() and text.isdigit()


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """RFC 9110 Retry-After: delay-seconds or an HTTP-date; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    # Whole seconds by the RFC; "1.5" too, as some APIs write it (rate limits under a second).
    if _ascii_digits(text) or _DECIMAL_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an obsolete date form without a zone: HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)
