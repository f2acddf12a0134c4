"""The default reading of an HTTP answer: what billing and routing will act on."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from streams.errors import DeliveryConnectionError, DeliveryTimeout, ResponseTooLarge
from streams.model import HttpResponse, OutcomeCategory, OutcomeKind
from streams.outcome import (
    CAPTURE_VALUE_LIMIT,
    DEFAULT_CAPTURES,
    NOT_CAPTURED,
    default_outcome,
    outcome_for_error,
    window_spent,
)


def answer(status: int, body: object = b"") -> HttpResponse:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return HttpResponse(status, {}, raw)


def test_2xx_is_success_with_reference_price_and_captured_values() -> None:
    outcome = default_outcome(
        answer(201, {"id": "R-9", "price": "12.50", "status": "ok", "nested": {"x": 1}})
    )
    assert outcome.kind is OutcomeKind.SUCCESS
    assert outcome.reason == "Accepted"
    assert outcome.reference_id == "R-9"
    assert outcome.price == Decimal("12.50")
    assert outcome.appended["status"] == "ok"
    assert "nested" not in outcome.appended  # only top-level scalars are captured


@pytest.mark.parametrize(
    ("body", "reason", "category"),
    [
        ({"success": False, "message": "Lead already exists"}, "Duplicate lead", "duplicate"),
        ({"Success": False, "Errors": ["x"]}, "x", "hard_reject"),  # its errors' words
        ({"accepted": False, "reason": "Cap exceeded"}, "Cap exceeded", None),
        (
            {"Status": "Rejected", "Reason": "Outside service area"},
            "Outside service area",
            None,
        ),
        ({"result": "duplicate"}, "Duplicate lead", "duplicate"),
        ({"status": "error", "error": "zip is required"}, "Invalid data", "invalid_data"),
        ({"status": "Declined"}, "Declined", "hard_reject"),
        # Only an error: a PHP API's, a GraphQL answer's errors without data, Rails'
        ({"error": "Zip is required"}, "Invalid data", "invalid_data"),
        ({"error": True}, "Rejected", "hard_reject"),
        ({"duplicate": True, "id": 9}, "Duplicate lead", "duplicate"),
        ({"IsDuplicate": "true"}, "Duplicate lead", "duplicate"),
        # A status in words, codes or CamelCase: its first word that decides
        ({"status": "DUPLICATE_LEAD"}, "Duplicate lead", "duplicate"),
        ({"Result": "NotSold"}, "NotSold", "hard_reject"),
        ({"status": "no_match"}, "no_match", "hard_reject"),
        ({"status": "Lead Rejected - not in our service area"}, "Outside service area", None),
        ({"errors": [{"message": "Lead already exists"}], "data": None}, "Duplicate lead", None),
        ({"errors": {"email": ["has already been taken"]}}, "Duplicate lead", "duplicate"),
        ({"errors": [{"title": "Bad", "detail": "zip must be 5 digits"}]}, "Invalid data", None),
        # Lead buyers' words for a lead not taken, each billed as a sale before
        ({"status": "Dupe"}, "Duplicate lead", "duplicate"),
        ({"status": "Duplicated"}, "Duplicate lead", "duplicate"),
        ({"result": "already_exists"}, "Duplicate lead", "duplicate"),
        ({"status": "Cap reached"}, "Cap exceeded", None),
        ({"status": "OVER_CAP"}, "Cap exceeded", None),
        ({"status": "No Coverage"}, "No Coverage", "hard_reject"),
        ({"status": "not_interested"}, "not_interested", "hard_reject"),
        ({"status": "Not Eligible"}, "Not Eligible", "hard_reject"),
        ({"Status": "Unsuccessful"}, "Unsuccessful", "hard_reject"),
        ({"status": "Ineligible"}, "Ineligible", "hard_reject"),
        ({"status": "Disqualified"}, "Disqualified", "hard_reject"),
        ({"status": "DNC"}, "DNC", "hard_reject"),
        ({"status": "Filtered"}, "Filtered", "hard_reject"),
        ({"status": "Suppressed"}, "Suppressed", "hard_reject"),
        ({"status": "Blocked"}, "Blocked", "hard_reject"),
        ({"status": "Fraud"}, "Fraud", "hard_reject"),
        ({"status": "Expired"}, "Expired", "hard_reject"),
        ({"result": "Cancelled"}, "Cancelled", "hard_reject"),
        # a status that is a yes or a no
        ({"status": "No"}, "Rejected", "hard_reject"),
        ({"result": "FALSE", "reason": "Over cap"}, "Cap exceeded", None),
    ],
)
def test_2xx_whose_body_says_no_is_a_failure_not_a_sale(
    body: dict[str, object], reason: str, category: str | None
) -> None:
    """Lead buyers' APIs often answer 200 and say no in the body. Before, every 2xx was a
    sale: billed, and a waterfall stopped at a buyer that had refused the lead."""
    outcome = default_outcome(answer(200, body))
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, reason), outcome
    assert not outcome.retryable
    if category is not None:
        assert outcome.category == category
    assert outcome.raw is not None and outcome.raw.startswith("{")


@pytest.mark.parametrize(
    "body",
    [
        {"success": True, "id": "R-1"},
        {"status": "accepted"},
        {"Status": "OK", "LeadId": 77},
        {"result": "queued"},
        {"error": None, "id": 5},  # an empty error field is no refusal
        # an envelope beside the call's fields: read for a no (a lone wrapper is read
        # inside: test_an_answer_wrapped_in_one_field_is_read_inside_it); after a yes at
        # the top, only a no said outright
        {"data": {"status": "new"}, "id": "W-1"},
        {"success": True, "data": {"duplicate": True, "id": 2}},
        {"success": True, "data": {"error": "phone reformatted"}},
        {"error": "none", "id": 4},
        {"success": True, "error": "phone reformatted"},  # said yes: the error is a note
        {"status": "accepted", "errors": ["minor"]},
        {"data": {"createLead": {"id": 1}}, "errors": [{"message": "x"}]},  # GraphQL, partly
        {"errors": []},
        {"status": "lead_accepted", "id": 3},
        {"status": "no_error"},
        {"status": "Accepted; error report mailed"},
        {"status": "Success - not a duplicate"},
        {"status": "Capture complete"},
        {"status": "Pending"},
        {"status": "yes", "id": 4},
        {"result": "true", "duplicate": True},  # it said it took the lead
        {"status": 0, "msg": "ok"},  # a code: 0 is success where codes are used
        {"status": "queued"},
        {"success": True, "duplicate": True, "id": 4},  # it said it took the lead
        {"duplicate": False, "id": 5},
        {"success": 1, "duplicate": 1, "id": 6},  # flags as PHP and MySQL write them
        {"accepted": "yes", "id": 7},
    ],
)
def test_2xx_whose_body_does_not_say_no_is_a_sale(body: dict[str, object]) -> None:
    assert default_outcome(answer(200, body)).kind is OutcomeKind.SUCCESS


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<response><status>Unmatched</status><reason>No buyer</reason></response>", "No buyer"),
        (
            b'<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
            b'<s:Body><r:AddLeadResponse xmlns:r="urn:crm"><r:Success>false</r:Success>'
            b"<r:Message>Duplicate lead</r:Message></r:AddLeadResponse></s:Body></s:Envelope>",
            "Duplicate lead",
        ),
        (b'{"success": "false"}', "Rejected"),  # PHP's JSON writes booleans as text
        # and as MySQL's flags: 0, "0", "no" (each was billed as a sale)
        (b'{"accepted": 0, "lead_id": "B-1"}', "Rejected"),
        (b'{"Success": "0"}', "Rejected"),
        (b'{"ok": "no"}', "Rejected"),
        (b"<response><accepted>0</accepted></response>", "Rejected"),
        (b'{"success": 0, "duplicate": 1}', "Rejected"),
    ],
)
def test_2xx_in_xml_or_with_text_booleans_that_says_no_is_a_failure(
    body: bytes, reason: str
) -> None:
    outcome = default_outcome(answer(200, body))
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, reason), outcome


@pytest.mark.parametrize(
    "body",
    [
        b"<response><status>Matched</status><lead_id>9</lead_id></response>",
        b"<html><body><p>Thank you!</p></body></html>",  # a form's thank-you page
        b"<response><status>ok</status><detail><status>rejected</status></detail></response>",
    ],
)
def test_2xx_in_xml_that_does_not_say_no_is_a_sale(body: bytes) -> None:
    assert default_outcome(answer(200, body)).kind is OutcomeKind.SUCCESS


def test_an_xml_sale_says_its_reference_and_price() -> None:
    """What billing needs from a buyer answering in XML, as from one answering in JSON."""
    body = (
        b"<response><status>Matched</status><lead_id>B-91</lead_id><Price>14.25</Price></response>"
    )
    outcome = default_outcome(answer(200, body))
    assert (outcome.kind, outcome.reference_id) == (OutcomeKind.SUCCESS, "B-91")
    assert outcome.price == Decimal("14.25")
    # Its fields become appended.<destination>.*, as a JSON answer's
    assert outcome.appended == {"status": "Matched", "lead_id": "B-91", "Price": "14.25"}


def test_reference_and_reason_fields_are_read_in_any_case() -> None:
    """.NET APIs answer in PascalCase: "LeadId", "Message"."""
    assert default_outcome(answer(201, {"LeadId": 77})).reference_id == "77"
    assert default_outcome(answer(422, {"Message": "Phone invalid"})).reason == "Invalid data"
    # An empty field is passed over for the next, as before any case was read.
    assert default_outcome(answer(201, {"reference_id": None, "Id": 5})).reference_id == "5"
    assert default_outcome(answer(422, {"error": "", "detail": "Bad zip"})).reason == "Bad zip"


def test_2xx_with_an_empty_or_html_body_is_still_success() -> None:
    assert default_outcome(answer(204)).kind is OutcomeKind.SUCCESS
    html = default_outcome(answer(200, b"<html>thanks</html>"))
    assert html.kind is OutcomeKind.SUCCESS
    assert html.reference_id is None


@pytest.mark.parametrize("status", [401, 403])
def test_authentication_errors_are_errors_not_retried(status: int) -> None:
    outcome = default_outcome(answer(status, {"message": "bad key"}))
    assert (outcome.kind, outcome.retryable) == (OutcomeKind.ERROR, False)
    assert outcome.reason == f"Authentication failed (HTTP {status})"


@pytest.mark.parametrize(
    ("status", "reason", "category"),
    [
        (408, "Recipient busy (HTTP 408)", OutcomeCategory.SOFT_REJECT),
        (425, "Recipient busy (HTTP 425)", OutcomeCategory.SOFT_REJECT),
        (429, "Recipient busy (HTTP 429)", OutcomeCategory.SOFT_REJECT),
        (500, "Recipient error (HTTP 500)", OutcomeCategory.RECIPIENT_ERROR),
        (502, "Recipient error (HTTP 502)", OutcomeCategory.RECIPIENT_ERROR),
        (503, "Recipient error (HTTP 503)", OutcomeCategory.RECIPIENT_ERROR),
        # A gateway that gave up waiting: the recipient may have the lead, as after a timeout
        (504, "Timeout (HTTP 504: a gateway waited for the recipient)", OutcomeCategory.TIMEOUT),
        (524, "Recipient error (HTTP 524)", OutcomeCategory.RECIPIENT_ERROR),  # not Cloudflare's
    ],
)
def test_temporary_statuses_are_retryable_errors(
    status: int, reason: str, category: OutcomeCategory
) -> None:
    outcome = default_outcome(answer(status, b"<html>busy</html>"))
    assert (outcome.kind, outcome.retryable) == (OutcomeKind.ERROR, True)
    assert (outcome.reason, outcome.category) == (reason, category)
    assert outcome.raw == "<html>busy</html>"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"message": "Duplicate lead"}, "Duplicate lead"),
        ({"error": "Outside service area"}, "Outside service area"),
        ({"reason": "Cap exceeded", "message": "ignored"}, "Cap exceeded"),
        (b"plain text", "Rejected (HTTP 422)"),
        ({"message": "x" * 500}, "x" * 80),
    ],
)
def test_other_4xx_are_failures_with_the_recipients_reason(body: object, reason: str) -> None:
    outcome = default_outcome(answer(422, body))
    assert outcome.kind is OutcomeKind.FAILURE
    assert not outcome.retryable
    assert outcome.reason == reason


def test_raw_text_is_kept_but_bounded() -> None:
    outcome = default_outcome(answer(500, b"e" * 50_000))
    assert outcome.raw is not None
    assert len(outcome.raw) == 1000


@pytest.mark.parametrize(
    ("error", "reason", "retryable"),
    [
        (DeliveryTimeout("read timeout after 10s"), "Timeout", True),
        (DeliveryConnectionError("refused"), "Connection failed", True),
        (ResponseTooLarge("over 1 MiB"), "Response too large", False),
    ],
)
def test_transport_errors_become_error_outcomes(
    error: Exception, reason: str, retryable: bool
) -> None:
    outcome = outcome_for_error(error)  # type: ignore[arg-type]
    assert (outcome.kind, outcome.reason, outcome.retryable) == (
        OutcomeKind.ERROR,
        reason,
        retryable,
    )


@pytest.mark.parametrize(
    ("text", "reason", "category"),
    [
        ("Duplicate lead John Smith", "Duplicate lead", OutcomeCategory.DUPLICATE),
        ("Contact already exists", "Duplicate lead", OutcomeCategory.DUPLICATE),
        (
            "ada@example.com is already a list member. Member Exists",
            "Duplicate lead",
            OutcomeCategory.DUPLICATE,
        ),
        (
            "Lead is outside of our service area",
            "Outside service area",
            OutcomeCategory.HARD_REJECT,
        ),
        ("ZIP 90210 not serviced", "Outside service area", OutcomeCategory.HARD_REJECT),
        ("Daily cap reached", "Cap exceeded", OutcomeCategory.HARD_REJECT),
        ("Monthly quota used up", "Cap exceeded", OutcomeCategory.HARD_REJECT),
        ("Service temporarily unavailable", "System unavailable", OutcomeCategory.SOFT_REJECT),
        ("phone is required", "Invalid data", OutcomeCategory.INVALID_DATA),
        ("Email is not a valid address", "Invalid data", OutcomeCategory.INVALID_DATA),
        (
            "We do not buy leads on Sundays",
            "We do not buy leads on Sundays",
            OutcomeCategory.HARD_REJECT,
        ),
    ],
)
def test_known_reasons_are_normalised_and_the_raw_text_kept(
    text: str, reason: str, category: OutcomeCategory
) -> None:
    outcome = default_outcome(answer(422, {"message": text}))
    assert (outcome.reason, outcome.category) == (reason, category)
    assert outcome.raw is not None and text in outcome.raw


def test_409_without_a_reason_is_a_duplicate() -> None:
    outcome = default_outcome(answer(409, b""))
    assert (outcome.kind, outcome.reason, outcome.category) == (
        OutcomeKind.FAILURE,
        "Duplicate lead",
        OutcomeCategory.DUPLICATE,
    )


def test_categories_of_transport_errors_and_auth() -> None:
    assert outcome_for_error(DeliveryTimeout("t")).category is OutcomeCategory.TIMEOUT
    assert (
        outcome_for_error(DeliveryConnectionError("c")).category is OutcomeCategory.RECIPIENT_ERROR
    )
    assert default_outcome(answer(401)).category is OutcomeCategory.AUTH_ERROR
    assert default_outcome(answer(200)).category is OutcomeCategory.ACCEPTED


def test_a_huge_answer_adds_a_few_short_values_and_says_how_many_it_left_out() -> None:
    """A 2xx answer with 40,000 fields once went whole into the event and the routing record."""
    body = {"id": "R-1", "note": "x" * 5000, **{f"field_{n}": n for n in range(40_000)}}
    outcome = default_outcome(HttpResponse(200, {}, orjson.dumps(body)))
    assert outcome.kind is OutcomeKind.SUCCESS and outcome.reference_id == "R-1"
    assert len(outcome.appended) == DEFAULT_CAPTURES + 1
    assert all(len(value) <= CAPTURE_VALUE_LIMIT for value in outcome.appended.values())
    assert outcome.appended[NOT_CAPTURED] == str(len(body) - DEFAULT_CAPTURES)


@pytest.mark.parametrize(
    ("status", "location", "to"),
    [
        (
            301,
            "https://new.example.com/v2/leads?api_key=s3cret",
            " to https://new.example.com/v2/leads",
        ),
        (
            308,
            "https://user:pw@new.example.com:8443/leads",
            " to https://new.example.com:8443/leads",
        ),
        (302, "/v2/leads", " to /v2/leads"),
        (307, None, ""),
    ],
)
def test_a_redirect_is_not_followed_and_says_where_to_without_credentials(
    status: int, location: str | None, to: str
) -> None:
    """Before, 'Unexpected HTTP status 301': the user could not tell the endpoint had moved,
    nor where. Only scheme, host and path: a query or user info may hold a credential."""
    headers = {"location": location} if location else {}
    outcome = default_outcome(HttpResponse(status, headers, b"<html>Moved</html>"))
    assert (outcome.kind, outcome.retryable) == (OutcomeKind.ERROR, False)
    assert outcome.reason == (
        f"Redirected (HTTP {status}){to}: redirects are not followed; update the url"
    )
    assert "s3cret" not in outcome.reason and "pw" not in outcome.reason


def test_a_4xx_says_why_from_its_list_of_errors() -> None:
    """Rails' and JSON:API's 422s say why in ``errors``: before, "Rejected (HTTP 422)"."""
    rails = default_outcome(answer(422, {"errors": {"email": ["has already been taken"]}}))
    assert (rails.reason, rails.category) == ("Duplicate lead", OutcomeCategory.DUPLICATE)
    json_api = default_outcome(answer(422, {"errors": [{"detail": "zip must be 5 digits"}]}))
    assert json_api.reason == "Invalid data"


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (200, {"error": "Invalid API key"}, "Authentication failed (invalid api key)"),
        (
            400,
            {"message": "API key is invalid"},
            "Authentication failed (HTTP 400: api key is invalid)",
        ),
        (
            200,
            {"success": False, "message": "Unauthorized"},
            "Authentication failed (unauthorized)",
        ),
        (422, {"message": "Authentication failed."}, "Authentication failed (HTTP 422)"),
        (200, b"ERROR: Invalid credentials", "Authentication failed (invalid credentials)"),
    ],
)
def test_our_credentials_refused_in_words_are_an_authentication_error(
    status: int, body: object, reason: str
) -> None:
    """Lead buyers' APIs say "Invalid API key" with a 200 or a 400, not a 401. Read as
    "Invalid data", the lead was blamed and the circuit, which opens at once on an
    authentication error, stayed closed while every lead after it was refused alike."""
    outcome = default_outcome(answer(status, body))
    assert (outcome.kind, outcome.reason) == (OutcomeKind.ERROR, reason), outcome
    assert (outcome.category, outcome.retryable) == (OutcomeCategory.AUTH_ERROR, False)


@pytest.mark.parametrize(
    "body",
    [
        {"message": "Lead is unauthorized for this campaign"},  # the lead's own refusal
        {"message": "Invalid token: TrustedForm certificate expired"},  # the lead's token
        {"message": "Invalid zip"},
    ],
)
def test_a_lead_refused_with_words_near_authentication_is_still_the_leads(body: object) -> None:
    assert default_outcome(answer(400, body)).kind is OutcomeKind.FAILURE


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (403, {"message": "API rate limit exceeded for 203.0.113.9"}),  # GitHub's
        (400, b"Rate limit exceeded"),
        (200, {"success": False, "message": "Too many requests, slow down"}),
        (200, b"REJECTED: throttled"),
    ],
)
def test_a_rate_limit_said_in_words_is_retried(status: int, body: object) -> None:
    outcome = default_outcome(answer(status, body))
    assert (outcome.kind, outcome.reason, outcome.retryable) == (
        OutcomeKind.ERROR,
        "Rate limited",
        True,
    )


def test_a_daily_limit_in_words_is_a_cap_and_plain_text_4xx_is_read_for_known_words() -> None:
    assert default_outcome(answer(400, {"message": "Daily rate limit exceeded"})).reason == (
        "Cap exceeded"
    )
    assert default_outcome(answer(400, b"Duplicate")).reason == "Duplicate lead"
    # Words that say nothing known are not made a reason of their own
    assert default_outcome(answer(400, b"Bad Request")).reason == "Rejected (HTTP 400)"


def test_an_id_longer_than_an_id_is_no_reference() -> None:
    """An "id" of 5,000 characters went into every event, the lead's state and the key
    that finds the lead by its reference."""
    assert default_outcome(answer(201, {"id": "R" * 5000})).reference_id is None
    assert default_outcome(answer(201, {"id": "R" * 200})).reference_id == "R" * 200


@pytest.mark.parametrize("status", [403, 429, 200])
def test_a_cloudflare_challenge_is_the_firewalls_block_not_the_leads(status: int) -> None:
    """A browser check a server cannot pass: every lead would meet it. Before, a 403's was
    "Authentication failed", a 429's "Recipient busy" retried into the same check, and a
    200's a sale."""
    res = HttpResponse(status, {"CF-Mitigated": "challenge", "Server": "cloudflare"},
                       b"<!DOCTYPE html><title>Just a moment...</title>")  # fmt: skip
    outcome = default_outcome(res)
    assert outcome.reason == "Blocked by the recipient's firewall (Cloudflare challenge)"
    assert (outcome.kind, outcome.retryable) == (OutcomeKind.ERROR, False)
    assert outcome.category is OutcomeCategory.AUTH_ERROR


@pytest.mark.parametrize(
    "body", [b'{"status": "accepted", "id": "R-1"}', b"<response><status>ok</status></response>"]
)
def test_an_answer_is_parsed_once_whoever_reads_it(body: bytes) -> None:
    """The verdict, a destination's rules and captures and its integration each read the
    answer: a lead with rules parsed its JSON up to three times, as it did its XML."""
    res = answer(200, body)
    assert res.json() is res.json()
    assert res.xml() is res.xml()
    assert default_outcome(res).kind is OutcomeKind.SUCCESS
    assert (res.json() is None) == body.startswith(b"<")


@pytest.mark.parametrize(
    ("status", "headers", "hold_s"),
    [
        (200, {"RateLimit": '"default";r=0;t=5', "RateLimit-Policy": '"default";q=10;w=60'}, 5),
        (200, {"RateLimit-Limit": "10", "RateLimit-Remaining": "0", "RateLimit-Reset": "3"}, 3),
        (201, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "12"}, 12),
        (429, {"Retry-After": "2"}, 2),
        (429, {"RateLimit": '"default";r=0;t=7'}, 7),
        # Some left, or no word on when it resets: nothing to wait for
        (200, {"RateLimit": '"default";r=3;t=5'}, None),
        (200, {"X-RateLimit-Remaining": "4", "X-RateLimit-Reset": "12"}, None),
        (200, {"X-RateLimit-Remaining": "0"}, None),
        (429, {}, None),
        # An hourly or daily window is left to the refused leads' parked retries
        (200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "3600"}, None),
        (429, {"Retry-After": "120"}, None),
        (200, {}, None),
    ],
)  # fmt: skip
def test_an_answer_that_says_the_window_is_spent_holds_the_destination(
    status: int, headers: dict[str, str], hold_s: float | None
) -> None:
    assert window_spent(HttpResponse(status, headers, b"{}")) == hold_s


@pytest.mark.parametrize(
    "line",
    ["Lead " * 5000 + "duplicate", "thanks, " * 5000 + "duplicate", "Lead: " * 5000 + "no"],
)
@pytest.mark.parametrize("written", ["json string", "xml text"])
def test_a_line_that_repeats_its_opening_is_read_without_recursing(line: str, written: str) -> None:
    """A JSON string or an XML element's text is read as a line whatever its length: each
    "Lead " was read as a subject by recursing, past Python's limit (a RecursionError, the
    lead's delivery an internal error). Its opening is read once; the rest decides."""
    body = orjson.dumps(line) if written == "json string" else f"<r>{line}</r>".encode()
    outcome = default_outcome(answer(200, body))
    assert outcome.kind in (OutcomeKind.SUCCESS, OutcomeKind.FAILURE), outcome


def test_digits_that_are_not_ascii_are_not_numbers_anywhere_an_answer_is_read() -> None:
    """A header is read as Latin-1, where "¹²³" pass ``str.isdigit`` and ``int``/``float``
    refuse them: each of these raised a ValueError, the lead's internal error where its
    answer was a sale or said when to try again (and a lead's date "¹²³…" was no
    conversion error naming it)."""
    from datetime import UTC

    from integrations import hubspot, pipedrive
    from streams.config.response_rules import _status_range
    from streams.outcome import parse_retry_after, rate_limit_reset
    from streams.template.conversions import ConversionError, to_datetime

    assert default_outcome(answer(200, {"status": "¹²³"})).kind is OutcomeKind.SUCCESS
    assert parse_retry_after("¹") is None and parse_retry_after("120") == 120.0
    for name in ("X-RateLimit-Reset", "RateLimit-Reset"):
        assert rate_limit_reset(HttpResponse(429, {name: "²"}, b"")) is None
    assert pipedrive.quota_left(HttpResponse(200, {"x-daily-requests-left": "¹"}, b"")) is None
    spent = {"X-HubSpot-RateLimit-Daily-Remaining": "5", "X-HubSpot-RateLimit-Daily": "³"}
    assert hubspot.quota_left(HttpResponse(200, spent, b"")) == (5, None)
    with pytest.raises(ConversionError):
        to_datetime("¹²³⁴⁵⁶⁷⁸⁹", UTC)
    with pytest.raises(ValueError, match="write a code like 409"):
        _status_range("¹²³")
