"""Older lead buyers' APIs answer in the charset their Content-Type names (ISO-8859-1,
Windows-1252), not UTF-8: their words must reach the rules, the reason and ``raw`` as
written. Before, "Doublon détecté" was read as "Doublon d�tect�" and no rule matched it;
a JSON answer in Latin-1 was "Unreadable response"."""

from __future__ import annotations

import codecs
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from aiohttp import web

from streams.config import parse_destinations
from streams.model import Lead, OutcomeCategory, OutcomeKind
from streams.stages.attempt import Attempt, attempt_delivery
from streams.stages.delivery import HttpSender
from streams.stages.events import delivery_event
from streams.stages.routing import bid_of, bid_valid_until, with_appended
from tests.integration.recipients import Received, Recipient

LEAD = Lead("L-1", {"id": "L-1", "lead": {"email": "ada@example.com"}})


def answering(body: bytes, content_type: str, status: int = 200) -> Recipient:
    async def answer(_: Recipient, __: Received) -> web.Response:
        return web.Response(body=body, status=status, headers={"Content-Type": content_type})

    return Recipient(answer)


async def deliver(recipient: Recipient, lead: Lead = LEAD, **fields: Any) -> Any:
    await recipient.start()
    dest = parse_destinations(
        {"destinations": [{"id": "buyer", "url": recipient.url(), "mapping": {"email": "email"},
                           **fields}]}
    ).destinations[0]  # fmt: skip
    sender = HttpSender()
    try:
        return await attempt_delivery(lead, dest, sender)
    finally:
        await sender.close()
        await recipient.stop()


@pytest.mark.parametrize("charset", ["iso-8859-1", "windows-1252"])
async def test_a_text_answer_is_read_in_its_charset(charset: str) -> None:
    buyer = answering("Doublon détecté".encode(charset), f"text/plain; charset={charset}")
    rules = [{"when": {"body_matches": "détecté"}, "outcome": "failure", "category": "duplicate"}]
    attempt = await deliver(buyer, response={"rules": rules})
    outcome = attempt.outcome
    assert (outcome.kind, outcome.category) == (OutcomeKind.FAILURE, OutcomeCategory.DUPLICATE)
    assert outcome.raw == "Doublon détecté"


async def test_a_json_answer_in_latin_1_is_json() -> None:
    body = '{"status": "rejected", "message": "Code postal invalide: département hors zone"}'
    buyer = answering(body.encode("latin-1"), "application/json; charset=ISO-8859-1", 422)
    attempt = await deliver(buyer, response={"expect": "json"})
    assert attempt.outcome.kind is OutcomeKind.FAILURE, attempt.outcome
    assert attempt.outcome.reason == "Invalid data"  # normalised, the words kept in raw
    assert attempt.outcome.raw is not None and "département hors zone" in attempt.outcome.raw


async def test_an_xml_answer_without_a_declaration_is_read_in_the_headers_charset() -> None:
    body = "<result><status>refusé</status><id>F-9</id></result>"
    buyer = answering(body.encode("cp1252"), "text/xml; charset=windows-1252")
    rules = [{"when": {"xml": {"path": "status", "equals": "refusé"}}, "outcome": "failure"}]
    attempt = await deliver(buyer, response={"expect": "xml", "rules": rules})
    assert attempt.outcome.kind is OutcomeKind.FAILURE, attempt.outcome


async def test_a_charset_nobody_knows_is_read_as_utf_8() -> None:
    buyer = answering(
        '{"id": "R-7", "note": "ok ✓"}'.encode(), "application/json; charset=x-klingon"
    )
    attempt = await deliver(buyer)
    assert attempt.outcome.kind is OutcomeKind.SUCCESS, attempt.outcome
    assert attempt.outcome.reference_id == "R-7"


async def test_a_json_answer_with_a_byte_order_mark_is_json() -> None:
    """.NET's writers put a UTF-8 byte order mark before the JSON (RFC 8259 lets a reader
    skip it): before, "Unreadable response" with ``expect: json``, and no rule matched."""
    body = codecs.BOM_UTF8 + b'{"Result": "Accepted", "LeadId": 88123}'
    buyer = answering(body, "application/json; charset=utf-8")
    rules = [{"when": {"json": {"path": "$.Result", "equals": "Accepted"}}, "outcome": "success"}]
    response = {"expect": "json", "rules": rules, "capture": {"reference_id": {"json": "$.LeadId"}}}
    attempt = await deliver(buyer, response=response)
    assert attempt.outcome.kind is OutcomeKind.SUCCESS, attempt.outcome
    assert attempt.outcome.reference_id == "88123"
    assert attempt.outcome.raw is not None and not attempt.outcome.raw.startswith("\ufeff")


@pytest.mark.parametrize(
    ("body", "content_type", "reason", "category"),
    [
        (b"REJECTED: Duplicate lead", "text/plain", "Duplicate lead", OutcomeCategory.DUPLICATE),
        (b"FAILURE|Zip not in service area", "text/html", "Outside service area", None),
        (b"Error - phone is required\r\n", "text/plain; charset=utf-8", "Invalid data", None),
        (b"Declined", "text/plain", "Declined", OutcomeCategory.HARD_REJECT),
        # A first word that is itself a reason keeps the line: "lead" was the reason before.
        (b"Duplicate lead", "text/plain", "Duplicate lead", OutcomeCategory.DUPLICATE),
        (b"Duplicate - already sold", "text/plain", "Duplicate lead", OutcomeCategory.DUPLICATE),
        (b"Invalid zip code", "text/plain", "Invalid data", OutcomeCategory.INVALID_DATA),
        (
            b"status=rejected&reason=Lead+already+exists",
            "application/x-www-form-urlencoded",
            "Duplicate lead",
            OutcomeCategory.DUPLICATE,
        ),
        # "No" and its kin, each a sale before: alone, with a reason, before what is not
        (b"NO", "text/plain", "Rejected", OutcomeCategory.HARD_REJECT),
        (b"No|Over cap", "text/plain", "Cap exceeded", None),
        (b"No: Duplicate", "text/plain", "Duplicate lead", OutcomeCategory.DUPLICATE),
        (b"Not interested", "text/plain", "Not interested", OutcomeCategory.HARD_REJECT),
        (b"No buyer found", "text/plain", "No buyer found", OutcomeCategory.HARD_REJECT),
        (b"No coverage in 90210", "text/plain", "No coverage in 90210", None),
        # a status's code alone
        (b"NOT_SOLD", "text/plain", "NOT_SOLD", OutcomeCategory.HARD_REJECT),
        (b"DUPLICATE_LEAD\n", "text/plain", "Duplicate lead", OutcomeCategory.DUPLICATE),
        # an apology, an abbreviation, what is missing, a flag before its reason, a subject
        # with its article: each was a sale
        (
            b"Sorry, duplicate contact found with the same email address.",
            "text/plain",
            "Duplicate lead",
            OutcomeCategory.DUPLICATE,
        ),
        (b"Unfortunately we cannot accept this lead: outside service area", "text/plain",
         "Outside service area", None),
        (b"Err: 104 Missing phone", "text/plain", "Invalid data", OutcomeCategory.INVALID_DATA),
        (b"Missing required field: zip", "text/plain", "Invalid data", None),
        (b"false|Duplicate lead", "text/plain", "Duplicate lead", OutcomeCategory.DUPLICATE),
        (b"Lead is a duplicate", "text/plain", "Duplicate lead", OutcomeCategory.DUPLICATE),
        (b"Duplicate check failed", "text/plain", "Duplicate lead", OutcomeCategory.DUPLICATE),
        # an HTTP error's phrase, the whole answer, read as its status
        (b"Bad Request", "text/plain", "Rejected (HTTP 400)", None),
        (b"409 Conflict", "text/html", "Duplicate lead", OutcomeCategory.DUPLICATE),
    ],
)  # fmt: skip
async def test_a_2xx_refusal_in_a_line_of_text_or_a_form_is_a_failure(
    body: bytes, content_type: str, reason: str, category: OutcomeCategory | None
) -> None:
    attempt = await deliver(answering(body, content_type))
    outcome = attempt.outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, reason), outcome
    assert not outcome.retryable
    if category is not None:
        assert outcome.category == category


@pytest.mark.parametrize(
    "body",
    [
        {"error": "Lead already exists"},  # a PHP API's 200
        {"data": None, "errors": [{"message": "Lead already exists", "path": ["createLead"]}]},
    ],
)
async def test_a_2xx_json_that_carries_only_an_error_is_a_failure(body: object) -> None:
    """A 200 with only an error, or a GraphQL answer's errors without data."""
    attempt = await deliver(answering(orjson.dumps(body), "application/json"))
    outcome = attempt.outcome
    assert (outcome.kind, outcome.category) == (OutcomeKind.FAILURE, OutcomeCategory.DUPLICATE)


async def test_a_2xx_sale_in_a_line_of_text_or_a_form_gives_its_reference() -> None:
    attempt = await deliver(answering(b"SUCCESS|B-77\n", "text/plain"))
    assert (attempt.outcome.kind, attempt.outcome.reference_id) == (OutcomeKind.SUCCESS, "B-77")
    form = b"result=sold&lead_id=4471&price=18.50"
    attempt = await deliver(answering(form, "application/x-www-form-urlencoded"))
    outcome = attempt.outcome
    assert (outcome.kind, outcome.reference_id, str(outcome.price)) == (
        OutcomeKind.SUCCESS, "4471", "18.50"
    )  # fmt: skip
    assert outcome.appended["result"] == "sold"  # captured, as a JSON answer's fields


@pytest.mark.parametrize(
    "body",
    [b"Thank you for your submission", b"OK", b"", b"Error" + b" " * 2000, b"<p>Error</p>",
     b"No errors", b"Not a duplicate - accepted", b"LEAD_ACCEPTED", b"lead_received",
     b"None", b"Not Found in our suppression list - accepted", b"Errand booked",
     # a check named by a no-word, passed (each was refused)
     b"Duplicate check passed", b"DNC scrub: clean - lead 55 accepted", b"Fraud check OK",
     # the same after the lead's name, and what it left out of the lead it took (each refused)
     b"Lead duplicate check passed", b"Lead duplicate updated", b"Invalid fields ignored: fax",
     b"Thanks - duplicate check passed"],
)  # fmt: skip
async def test_a_2xx_text_that_does_not_open_with_a_refusal_is_a_sale(body: bytes) -> None:
    """A thank-you page, a bare OK, a long page (not a verdict), HTML."""
    attempt = await deliver(answering(body, "text/html"))
    assert attempt.outcome.kind is OutcomeKind.SUCCESS, attempt.outcome


@pytest.mark.parametrize(
    ("answer", "content_type", "category", "reason"),
    [(b'{"code": 200, "message": "Duplicate lead"}', "application/json",
      OutcomeCategory.DUPLICATE, "Duplicate lead"),
     (b'{"status": 0, "msg": "lead refused"}', "application/json",
      OutcomeCategory.HARD_REJECT, "lead refused"),
     (b"<response><code>1</code><msg>Lead rejected: Duplicate</msg></response>", "text/xml",
      OutcomeCategory.DUPLICATE, "Duplicate lead"),
     (b'{"reason": "Invalid phone number"}', "application/json",
      OutcomeCategory.INVALID_DATA, "Invalid data"),
     (b"NOK", "text/plain", OutcomeCategory.HARD_REJECT, "Not OK"),
     (b'{"status": "NOK"}', "application/json", OutcomeCategory.HARD_REJECT, "NOK"),
     # a pipe-delimited answer's flag in digits
     (b"0|Duplicate", "text/plain", OutcomeCategory.DUPLICATE, "Duplicate lead"),
     (b"0 | Zip not covered", "text/plain", OutcomeCategory.HARD_REJECT, "Outside service area"),
     # beside an envelope that says nothing of a sale, or one that says no without why
     (b'{"data": {"id": null}, "message": "Lead already exists"}', "application/json",
      OutcomeCategory.DUPLICATE, "Duplicate lead"),
     (b'{"data": {"accepted": false}, "message": "Duplicate lead"}', "application/json",
      OutcomeCategory.DUPLICATE, "Duplicate lead"),
     # a code in words, and its message
     (b'{"ResponseCode": "REJECT", "ResponseMessage": "Out of area"}', "application/json",
      OutcomeCategory.HARD_REJECT, "Outside service area")],
)  # fmt: skip
async def test_a_2xx_whose_only_words_refuse_is_a_refusal(
    answer: bytes, content_type: str, category: OutcomeCategory, reason: str
) -> None:
    """An answer with no verdict field, no id and no price, whose message refuses (read
    as a line of text answering alone is), or "NOK": each was billed as a sale."""
    outcome = (await deliver(answering(answer, content_type))).outcome
    assert (outcome.kind, outcome.category, outcome.reason) == (
        OutcomeKind.FAILURE, category, reason
    ), outcome  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "kind", "reason", "reference", "price"),
    [(b"OK|12345|15.00", OutcomeKind.SUCCESS, "Accepted", "12345", "15.00"),
     (b"ACCEPTED|A-77|$12.50", OutcomeKind.SUCCESS, "Accepted", "A-77", "12.50"),
     (b"1|A-77|12.5", OutcomeKind.SUCCESS, "Accepted", "A-77", "12.5"),
     (b"-1|Duplicate", OutcomeKind.FAILURE, "Duplicate lead", None, None),
     (b"-2|Invalid zip", OutcomeKind.FAILURE, "Invalid data", None, None),
     # CSV: a header that names a verdict, an id or a flag, and one row
     (b"status,reason\nrejected,Duplicate lead\n", OutcomeKind.FAILURE, "Duplicate lead", None,
      None),
     (b'"Status","Reason"\r\n"Rejected","Zip not covered"\r\n', OutcomeKind.FAILURE,
      "Outside service area", None, None),
     (b"status,lead_id,price\naccepted,123,10.50", OutcomeKind.SUCCESS, "Accepted", "123",
      "10.50"),
     # not a header that names a verdict: read as before
     (b"Rejected,Duplicate\nsee,docs", OutcomeKind.FAILURE, "Duplicate lead", None, None),
     (b"name,age\nbob,4", OutcomeKind.SUCCESS, "Accepted", None, None)],
)  # fmt: skip
async def test_a_delimited_answer_gives_its_verdict_id_and_price(
    answer: bytes, kind: OutcomeKind, reason: str, reference: str | None, price: str | None
) -> None:
    """Pipe-delimited: a sale's id and price after its yes were unread (a sale at nothing,
    without its id); an error's code below zero before the reason ("-1|Duplicate") was a
    sale. CSV, as older lead APIs and exports answer: its refusal was a sale, and a sale's
    id and price were unread."""
    csv = answer.count(b",") > 0
    outcome = (await deliver(answering(answer, "text/csv" if csv else "text/plain"))).outcome
    said = (outcome.kind, outcome.reason, outcome.reference_id, outcome.price)
    assert said == (kind, reason, reference, None if price is None else Decimal(price))


@pytest.mark.parametrize(
    "message",
    ["Lead received", "Thank you", "Your lead has been submitted", "Duplicate check passed",
     "Lead saved. Missing fields defaulted.", "No duplicate found", "Not a duplicate",
     "Accepted for processing", "Pending review", "Duplicate lead updated",
     "Duplicate contact merged", "Fraud score 12", "Error count: 0", "Failed attempts: 0"],
)  # fmt: skip
async def test_a_2xx_whose_only_words_do_not_refuse_is_a_sale(message: str) -> None:
    """The same reading of a lone message takes nothing that does not refuse: an upsert of
    the record the recipient had ("Duplicate lead updated") and a figure ("Fraud score
    12") are not verdicts; with an id, the message is never read so."""
    for answer in ({"message": message}, {"code": 200, "msg": message}):
        outcome = (await deliver(answering(orjson.dumps(answer), "application/json"))).outcome
        assert outcome.kind is OutcomeKind.SUCCESS, (answer, outcome)
    with_id = {"message": "Duplicate lead", "id": "R-1"}  # the id of the record it took
    outcome = (await deliver(answering(orjson.dumps(with_id), "application/json"))).outcome
    assert (outcome.kind, outcome.reference_id) == (OutcomeKind.SUCCESS, "R-1"), outcome
    sale = (await deliver(answering(b"1|48213", "text/plain"))).outcome  # its id was unread
    assert (sale.kind, sale.reference_id) == (OutcomeKind.SUCCESS, "48213"), sale


@pytest.mark.parametrize(
    ("body", "category", "retryable"),
    [(b"Unauthorized", OutcomeCategory.AUTH_ERROR, False),
     (b"HTTP/1.1 403 Forbidden", OutcomeCategory.AUTH_ERROR, False),
     (b"Service Unavailable.", OutcomeCategory.RECIPIENT_ERROR, True),
     (b"Too Many Requests", OutcomeCategory.SOFT_REJECT, True)],
)  # fmt: skip
async def test_a_2xx_that_is_only_an_http_errors_phrase_is_that_error(
    body: bytes, category: OutcomeCategory, retryable: bool
) -> None:
    """A script that writes its error's phrase and leaves the status at 200: each was a
    sale (a busy recipient's lead never resent, a refused key never seen)."""
    outcome = (await deliver(answering(body, "text/plain"))).outcome
    assert (outcome.kind, outcome.category) == (OutcomeKind.ERROR, category), outcome
    assert outcome.retryable is retryable
    sale = (await deliver(answering(b"true|48213", "text/plain"))).outcome
    assert (sale.kind, sale.reference_id) == (OutcomeKind.SUCCESS, "48213"), sale


@pytest.mark.parametrize(
    "answer",
    [# a check that names a no-word, passed: it was a duplicate, and the waterfall sold the
     # lead again to the next buyer
     {"result": "Lead posted successfully. Duplicate check passed.", "id": "R-1"},
     {"status": "Received. DNC scrub: OK", "id": "R-1"},
     # a line's refusing first words say nothing inside a status
     {"status": "Lead saved. Missing fields defaulted.", "id": "R-1"},
     {"status": "Sorry for the delay - accepted", "id": "R-1"}],
)  # fmt: skip
async def test_a_status_that_names_a_check_or_an_apology_in_passing_is_a_sale(
    answer: object,
) -> None:
    sale = (await deliver(answering(orjson.dumps(answer), "application/json"))).outcome
    assert (sale.kind, sale.reference_id) == (OutcomeKind.SUCCESS, "R-1"), sale
    failed = {"result": "Duplicate check failed", "id": "R-1"}
    refused = (await deliver(answering(orjson.dumps(failed), "application/json"))).outcome
    assert refused.kind is OutcomeKind.FAILURE, refused


F5_BLOCK_PAGE = (
    b"<html><head><title>Request Rejected</title></head><body>The requested URL was rejected."
    b" Please consult with your administrator.<br><br>Your support ID is: 1387524169327412<br>"
    b"<br><a href='javascript:history.back();'>[Go Back]</a></body></html>"
)
IMPERVA_BLOCK_PAGE = (
    b'<html style="height:100%"><head><META NAME="ROBOTS" CONTENT="NOINDEX, NOFOLLOW"></head>'
    b'<body style="margin:0px;height:100%"><iframe id="main-iframe" src="/_Incapsula_Resource?'
    b'CWUDNSAI=9&xinfo=4-1234" frameborder=0 width="100%" height="100%">Request unsuccessful.'
    b" Incapsula incident ID: 1080001230456789-12345</iframe></body></html>"
)


def page(title: str, body: str = "") -> bytes:
    return (
        f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{title}</title></head>"
        f"<body><h1>{title}</h1>{body}</body></html>"
    ).encode()


@pytest.mark.parametrize(
    ("body", "kind", "category", "retryable", "reason"),
    [
        (
            page("Site Maintenance", "We&rsquo;ll be back soon."),
            OutcomeKind.ERROR, OutcomeCategory.RECIPIENT_ERROR, True,
            "Recipient error page: 'Site Maintenance' page (HTTP 200)",
        ),
        (
            page("Runtime Error", "Server Error in '/' Application."),  # ASP.NET's, rewritten
            OutcomeKind.ERROR, OutcomeCategory.RECIPIENT_ERROR, True,
            "Recipient error page: 'Runtime Error' page (HTTP 200)",
        ),
        (
            F5_BLOCK_PAGE, OutcomeKind.ERROR, OutcomeCategory.AUTH_ERROR, False,
            "Blocked by the recipient's firewall (F5)",
        ),
        (
            IMPERVA_BLOCK_PAGE, OutcomeKind.ERROR, OutcomeCategory.AUTH_ERROR, False,
            "Blocked by the recipient's firewall (Imperva)",
        ),
        (
            page("Sign in &middot; Acme CRM"), OutcomeKind.ERROR, OutcomeCategory.AUTH_ERROR,
            False, "Authentication failed (a login page: 'Sign in · Acme CRM' page (HTTP 200))",
        ),
        (
            page("Page Not Found"), OutcomeKind.ERROR, OutcomeCategory.AUTH_ERROR, False,
            "Configuration refused (a 'Page Not Found' page (HTTP 200): check the url)",
        ),
        (
            page("Duplicate Submission"), OutcomeKind.FAILURE, OutcomeCategory.DUPLICATE, False,
            "Duplicate lead",
        ),
        # no title: read by its first heading (a bare error handler's page)
        (
            b"<html><body><h1>500 Internal <b>Server</b> Error</h1><hr></body></html>",
            OutcomeKind.ERROR, OutcomeCategory.RECIPIENT_ERROR, True,
            "Recipient error page: '500 Internal Server Error' page (HTTP 200)",
        ),
        # a form handler's own page that says no
        (
            page("Lead Rejected", "Sorry, we cannot take this lead."), OutcomeKind.FAILURE,
            OutcomeCategory.HARD_REJECT, False, "Lead Rejected",
        ),
    ],
)  # fmt: skip
async def test_a_2xx_html_page_that_is_not_an_answer_is_not_a_sale(
    body: bytes, kind: OutcomeKind, category: OutcomeCategory, retryable: bool, reason: str
) -> None:
    """A maintenance page, an application's error page, a web firewall's block page, a
    login form or a "not found" page served with a 200: billed as a sale before, and a
    waterfall stopped at a buyer that never saw the lead."""
    attempt = await deliver(answering(body, "text/html; charset=utf-8"))
    outcome = attempt.outcome
    assert (outcome.kind, outcome.category, outcome.retryable) == (kind, category, retryable)
    assert outcome.reason == reason
    assert outcome.raw is not None and outcome.raw.startswith(body.decode()[:20])


@pytest.mark.parametrize(
    ("body", "reason"),
    [(page("Lead Form", "<p>Lead Rejected: Duplicate</p>"), "Duplicate lead"),
     (b"<html><body><p>Lead Rejected</p></body></html>", "Lead Rejected"),
     (b"<!DOCTYPE html><html><body>ERROR: Invalid phone</body></html>", "Invalid data"),
     (b"<html><body>Not accepting leads at this time</body></html>",
      "Not accepting leads at this time"),
     # a page that only says "Error" is read as the line "Error" is (it was a sale)
     (page("", "Error"), "Error"),
     (b"<html><body>Error</body></html>", "Error")],
)  # fmt: skip
async def test_a_small_2xx_pages_words_that_refuse_are_a_refusal(body: bytes, reason: str) -> None:
    """A form handler answers with a page whose words are its verdict, under a title that
    says nothing: each was billed as a sale. A page that says yes too is not read so."""
    outcome = (await deliver(answering(body, "text/html; charset=utf-8"))).outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, reason), outcome


@pytest.mark.parametrize(
    "body",
    [
        page("Thank You!", "Your request was received. No error."),
        page("Lead Form - Acme"),
        b"<html><body><h1>Thank you!</h1><p>We will call you.</p></body></html>",
        b"<html>" + b"<title>" * 3000,  # unclosed: no title (and no long search for one)
        # what it runs is not what it shows; a page that shows more is not a verdict
        b'<html><head><script>var said = "rejected";</script></head><body>Thanks!</body></html>',
        b"<html><body>" + b"Our terms apply to each lead. " * 20 + b"Rejected</body></html>",
        page("Success", "<p>Duplicate check: failed, lead accepted anyway</p>"),  # a yes beside
    ],
)
async def test_a_2xx_html_page_whose_title_says_no_error_is_a_sale(body: bytes) -> None:
    """A web form's "Thank you" page is how a form post says yes."""
    attempt = await deliver(answering(body, "text/html"), integration="form_post")
    assert attempt.outcome.kind is OutcomeKind.SUCCESS, attempt.outcome


@pytest.mark.parametrize(
    ("status", "body", "content_type", "kind", "reason", "retryable"),
    [
        (
            500, b'{"error": "duplicate key value violates unique constraint \\"leads_email_key\\""}',
            "application/json", OutcomeKind.FAILURE, "Duplicate lead", False,
        ),
        (
            500, b"UNIQUE constraint failed: leads.email\n", "text/plain",
            OutcomeKind.FAILURE, "Duplicate lead", False,
        ),
        (
            500, b"Duplicate entry 'ada@example.com' for key 'leads.email'", "text/plain",
            OutcomeKind.FAILURE, "Duplicate lead", False,
        ),
        (
            503, b'{"message": "Rate limit exceeded, slow down"}', "application/json",
            OutcomeKind.ERROR, "Rate limited", True,
        ),
        (
            500, b'{"error": "Invalid state: queue closed"}', "application/json",
            OutcomeKind.ERROR, "Recipient error (HTTP 500)", True,
        ),
        (
            502, page("502 Bad Gateway"), "text/html", OutcomeKind.ERROR,
            "Recipient error (HTTP 502)", True,
        ),
    ],
)  # fmt: skip
async def test_a_5xx_is_read_for_a_duplicate_or_a_rate_limit_only(
    status: int,
    body: bytes,
    content_type: str,
    kind: OutcomeKind,
    reason: str,
    retryable: bool,
) -> None:
    """A home-grown API's unique key answers 500: retried, the lead met the same wall each
    time and ended "Recipient error", never counted as the duplicate it was."""
    attempt = await deliver(answering(body, content_type, status))
    outcome = attempt.outcome
    assert (outcome.kind, outcome.reason, outcome.retryable) == (kind, reason, retryable)


@pytest.mark.parametrize(
    ("problem", "reason", "category"),
    [
        (
            {"type": "https://buyer.example/probs/duplicate", "title": "Lead already on file",
             "status": 422},
            "Duplicate lead", OutcomeCategory.DUPLICATE,
        ),
        (
            {"type": "https://buyer.example/probs/footprint", "title": "Lead outside our footprint"},
            "Lead outside our footprint", OutcomeCategory.HARD_REJECT,
        ),
        (  # Spring's: the status's own phrase says nothing more than the status
            {"type": "about:blank", "title": "Unprocessable Entity", "status": 422},
            "Rejected (HTTP 422)", OutcomeCategory.HARD_REJECT,
        ),
        (  # a detail, when there is one, says more than the title
            {"title": "Validation failed", "detail": "zip code 00000 is not serviced",
             "status": 422},
            "Outside service area", OutcomeCategory.HARD_REJECT,
        ),
    ],
)  # fmt: skip
async def test_a_4xx_problem_detail_says_why_by_its_title(
    problem: dict[str, Any], reason: str, category: OutcomeCategory
) -> None:
    """RFC 9457 problem details with a title and no detail: before, "Rejected (HTTP 422)"."""
    attempt = await deliver(answering(orjson.dumps(problem), "application/problem+json", 422))
    outcome = attempt.outcome
    assert (outcome.kind, outcome.reason, outcome.category) == (
        OutcomeKind.FAILURE, reason, category
    )  # fmt: skip


def soap_11_fault(code: str, said: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap='
        '"http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault>'
        f"<faultcode>{code}</faultcode><faultstring>{said}</faultstring><detail/>"
        "</soap:Fault></soap:Body></soap:Envelope>"
    ).encode()


def soap_12_fault(code: str, said: str) -> bytes:
    return (
        '<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body>'
        f"<env:Fault><env:Code><env:Value>{code}</env:Value></env:Code><env:Reason>"
        f'<env:Text xml:lang="en">{said}</env:Text></env:Reason></env:Fault></env:Body>'
        "</env:Envelope>"
    ).encode()


@pytest.mark.parametrize(
    ("status", "body", "kind", "reason", "category", "retryable"),
    [
        (
            500, soap_11_fault("soap:Client", "Duplicate record: lead already exists"),
            OutcomeKind.FAILURE, "Duplicate lead", OutcomeCategory.DUPLICATE, False,
        ),
        (
            500, soap_11_fault("SOAP-ENV:Client.Validation", "ZipCode is not valid"),
            OutcomeKind.FAILURE, "Invalid data", OutcomeCategory.INVALID_DATA, False,
        ),
        (
            500, soap_11_fault("soap:Client", "Buyer does not take leads from this source"),
            OutcomeKind.FAILURE, "Buyer does not take leads from this source",
            OutcomeCategory.HARD_REJECT, False,
        ),
        (
            200, soap_11_fault("soap:Client", "Duplicate"),  # a server that always says 200
            OutcomeKind.FAILURE, "Duplicate lead", OutcomeCategory.DUPLICATE, False,
        ),
        (
            500, soap_11_fault("soap:Server", "Database timeout; invalid connection state"),
            OutcomeKind.ERROR, "Recipient error (SOAP fault)", OutcomeCategory.RECIPIENT_ERROR,
            True,
        ),
        (  # Axis says everything with Server faults
            500, soap_11_fault("soapenv:Server.userException", "Authentication failed for user"),
            OutcomeKind.ERROR, "Authentication failed (said in the answer)",
            OutcomeCategory.AUTH_ERROR, False,
        ),
        (
            400, soap_12_fault("env:Sender", "Lead already exists"),
            OutcomeKind.FAILURE, "Duplicate lead", OutcomeCategory.DUPLICATE, False,
        ),
        (
            500, soap_12_fault("env:Receiver", "Service temporarily unavailable"),
            OutcomeKind.ERROR, "Recipient error (SOAP fault)", OutcomeCategory.RECIPIENT_ERROR,
            True,
        ),
        (
            500, soap_11_fault("soap:VersionMismatch", "Wrong SOAP version"),
            OutcomeKind.ERROR, "Configuration refused (SOAP soap:VersionMismatch)",
            OutcomeCategory.AUTH_ERROR, False,
        ),
    ],
)  # fmt: skip
async def test_a_soap_fault_says_whose_fault_it_is(
    status: int,
    body: bytes,
    kind: OutcomeKind,
    reason: str,
    category: OutcomeCategory,
    retryable: bool,
) -> None:
    """SOAP 1.1 §4.4.1, 1.2 §5.4.6: a Client (Sender) fault is the request's, not resent
    unchanged; a Server (Receiver) one may pass. Before, every 500 fault was retried (a
    duplicate, three times more), a 400 one was "Rejected (HTTP 400)", a 200 one a sale."""
    buyer = answering(body, "text/xml; charset=utf-8", status)
    attempt = await deliver(buyer, integration="xml_post", settings={"soap": "1.1"})
    outcome = attempt.outcome
    assert (outcome.kind, outcome.reason, outcome.category, outcome.retryable) == (
        kind, reason, category, retryable
    )  # fmt: skip


ASMX = b'<?xml version="1.0" encoding="utf-8"?>\n<string xmlns="http://tempuri.org/">%s</string>'


def asmx_soap_result(said: bytes) -> bytes:
    return (
        b'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap='
        b'"http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><PostLeadResponse xmlns='
        b'"http://tempuri.org/"><PostLeadResult>%s</PostLeadResult></PostLeadResponse>'
        b"</soap:Body></soap:Envelope>" % said
    )


@pytest.mark.parametrize(
    ("body", "kind", "reason", "reference"),
    [
        (ASMX % b"REJECTED: Duplicate lead", OutcomeKind.FAILURE, "Duplicate lead", None),
        (ASMX % b"SUCCESS|B-77", OutcomeKind.SUCCESS, "Accepted", "B-77"),
        (ASMX % b"OK", OutcomeKind.SUCCESS, "Accepted", None),
        (
            asmx_soap_result(b"Failure|Zip not covered"),
            OutcomeKind.FAILURE, "Outside service area", None,
        ),
        (asmx_soap_result(b"Accepted 4471"), OutcomeKind.SUCCESS, "Accepted", "4471"),
    ],
)  # fmt: skip
async def test_a_2xx_xml_answer_that_is_one_line_of_text_is_read_as_that_line(
    body: bytes, kind: OutcomeKind, reason: str, reference: str | None
) -> None:
    """.NET web services answer a line of text wrapped in XML (an ASMX ``<string>``, a SOAP
    operation's lone ``<…Result>``): it was a sale whatever it said."""
    attempt = await deliver(answering(body, "text/xml; charset=utf-8"))
    outcome = attempt.outcome
    assert (outcome.kind, outcome.reason, outcome.reference_id) == (kind, reason, reference)


@pytest.mark.parametrize(
    ("status", "body", "kind", "reason"),
    [
        (400, b"<error><code>12</code><message>Lead already exists</message></error>",
         OutcomeKind.FAILURE, "Duplicate lead"),
        (
            400,
            b"<Response><Errors><Error><Code>InvalidParameterValue</Code><Message>Invalid email"
            b"</Message></Error></Errors><RequestID>9f1c</RequestID></Response>",
            OutcomeKind.FAILURE, "Invalid data",
        ),
        (422, ASMX % b"REJECTED: Zip not covered", OutcomeKind.FAILURE, "Outside service area"),
        (500, b"<response><error>Duplicate entry for key email</error></response>",
         OutcomeKind.FAILURE, "Duplicate lead"),
    ],
)  # fmt: skip
async def test_a_4xx_or_5xx_xml_answer_says_why(
    status: int, body: bytes, kind: OutcomeKind, reason: str
) -> None:
    """An XML refusal's words, at its top or deeper (``<Errors><Error><Message>``): before,
    ``Rejected (HTTP 400)``, and a 500's duplicate was retried."""
    attempt = await deliver(answering(body, "application/xml", status))
    assert (attempt.outcome.kind, attempt.outcome.reason) == (kind, reason), attempt.outcome
    assert not attempt.outcome.retryable


@pytest.mark.parametrize(
    ("status", "answer", "kind", "reason", "reference"),
    [
        (200, [{"status": "rejected", "reason": "Duplicate"}], OutcomeKind.FAILURE,
         "Duplicate lead", None),
        (200, [{"id": "A-1", "status": "accepted"}], OutcomeKind.SUCCESS, "Accepted", "A-1"),
        (400, [{"message": "Email: invalid email address", "errorCode": "INVALID_EMAIL_ADDRESS"}],
         OutcomeKind.FAILURE, "Invalid data", None),
    ],
)  # fmt: skip
async def test_a_json_array_of_one_answer_is_that_answer(
    status: int, answer: list[dict[str, str]], kind: OutcomeKind, reason: str, reference: str | None
) -> None:
    """APIs that answer every request as a batch: a 2xx was a sale whatever it said."""
    attempt = await deliver(answering(orjson.dumps(answer), "application/json", status))
    outcome = attempt.outcome
    assert (outcome.kind, outcome.reason, outcome.reference_id) == (kind, reason, reference)


@pytest.mark.parametrize(
    ("status", "answer", "kind", "reason", "reference"),
    [
        (200, {"response": {"status": "error", "message": "Duplicate"}}, OutcomeKind.FAILURE,
         "Duplicate lead", None),
        (200, {"d": "REJECTED: Duplicate lead"}, OutcomeKind.FAILURE, "Duplicate lead", None),
        (200, {"d": {"__type": "LeadResult", "Status": "Rejected", "Reason": "Zip not covered"}},
         OutcomeKind.FAILURE, "Outside service area", None),
        (200, {"data": {"lead": {"id": "Q-1", "status": "accepted"}}}, OutcomeKind.SUCCESS,
         "Accepted", "Q-1"),
        (422, {"result": {"message": "Phone is required"}}, OutcomeKind.FAILURE, "Invalid data",
         None),
        (400, {"d": "REJECTED: Duplicate lead"}, OutcomeKind.FAILURE, "Duplicate lead", None),
        (400, {"d": "Invalid zip code"}, OutcomeKind.FAILURE, "Invalid data", None),
        (500, {"d": "ERROR: duplicate key value violates unique constraint"},
         OutcomeKind.FAILURE, "Duplicate lead", None),
        (422, {"d": "Bad Request"}, OutcomeKind.FAILURE, "Rejected (HTTP 422)", None),
        # Not wrappers: an error's object, a verdict in one field; a wrapper with a sibling is
        # the call's envelope, its verdict read inside (below)
        (200, {"error": {"message": "Invalid zip"}}, OutcomeKind.FAILURE, "Invalid data", None),
        (200, {"result": "rejected"}, OutcomeKind.FAILURE, "rejected", None),
        (200, {"data": {"status": "rejected"}, "id": "W-1"}, OutcomeKind.FAILURE, "rejected",
         None),
        (200, {"data": {"status": "new"}, "id": "W-1"}, OutcomeKind.SUCCESS, "Accepted", "W-1"),
    ],
)  # fmt: skip
async def test_an_answer_wrapped_in_one_field_is_read_inside_it(
    status: int, answer: dict[str, Any], kind: OutcomeKind, reason: str, reference: str | None
) -> None:
    """``{"response": {…}}``, ASP.NET AJAX's ``{"d": …}``: only the top level was read, and
    a 2xx that said no inside its wrapper was a sale."""
    attempt = await deliver(answering(orjson.dumps(answer), "application/json", status))
    outcome = attempt.outcome
    assert (outcome.kind, outcome.reason, outcome.reference_id) == (kind, reason, reference)


@pytest.mark.parametrize(
    ("status", "answer", "kind", "reason"),
    [
        (200, {"error": {"code": 409, "message": "Lead already exists"}}, OutcomeKind.FAILURE,
         "Duplicate lead"),
        (200, {"jsonrpc": "2.0", "error": {"code": -32000, "message": "Zip not covered"},
               "id": 1}, OutcomeKind.FAILURE, "Outside service area"),
        (400, {"error": {"code": 400, "message": "Invalid email", "status": "INVALID_ARGUMENT"}},
         OutcomeKind.FAILURE, "Invalid data"),
        (402, {"error": {"message": "Buyer balance too low", "type": "invalid_request_error"}},
         OutcomeKind.ERROR, "Payment required (HTTP 402: Buyer balance too low)"),
        (200, {"error": {"code": 0, "message": "Success"}, "id": "A-9"}, OutcomeKind.SUCCESS,
         "Accepted"),
        (200, {"error": "Lead accepted", "id": "A-9"}, OutcomeKind.SUCCESS, "Accepted"),
        (200, {"result": {"id": 5}, "error": None}, OutcomeKind.SUCCESS, "Accepted"),
    ],
)  # fmt: skip
async def test_an_error_object_says_why(
    status: int, answer: dict[str, Any], kind: OutcomeKind, reason: str
) -> None:
    """``{"error": {"code", "message"}}``: Google's APIs', JSON-RPC 2.0's, Stripe's. A 2xx one
    was a sale, a 4xx one ``Rejected (HTTP 400)``. An error object that says yes is none."""
    attempt = await deliver(answering(orjson.dumps(answer), "application/json", status))
    assert (attempt.outcome.kind, attempt.outcome.reason) == (kind, reason), attempt.outcome


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (404, page("404 Not Found", "<center>nginx</center>"), "text/html"),
        (404, b"404 page not found\n", "text/plain"),  # Go's
        (404, b"<!DOCTYPE html><html><body><pre>Cannot POST /leads</pre></body></html>",
         "text/html"),  # Express's
        (404, b'{"timestamp": "2026-12-06T10:00:00Z", "status": 404, "error": "Not Found", '
              b'"path": "/leads"}', "application/json"),  # Spring's
        (404, b"", "text/plain"),
        (405, b"", "text/plain"),
        (410, b'{"message": "API v1 was retired on 2026-08-01"}', "application/json"),
        # Laravel's CSRF check on a web form's url: "Page Expired", whatever the lead
        (419, page("Page Expired", '<div class="code">419</div>'), "text/html"),
        (419, b'{"message": "CSRF token mismatch."}', "application/json"),
        # Apache (2.4.64 on) when the TLS name and the Host header differ; Cloudflare's
        (421, page("421 Misdirected Request", "<h1>Misdirected Request</h1><p>The client "
                   "needs a new connection for this request as the requested host name does "
                   "not match the Server Name Indication (SNI) in use for this connection."
                   "</p>"), "text/html"),
        (421, b"", "text/plain"),
        # a legal block of requests from here, most often a CDN's by region (RFC 7725)
        (451, page("Unavailable For Legal Reasons", "<p>This service is not available in "
                   "your region.</p>"), "text/html"),
        (451, b"", "text/plain"),
    ],
)  # fmt: skip
async def test_no_endpoint_at_the_url_is_a_configuration_refused(
    status: int, body: bytes, content_type: str
) -> None:
    """A wrong url or method, a retired API version, a host name the server does not serve
    on that connection (421), a legal block of requests from here (451): every lead would
    meet it, where each was "Rejected (HTTP 404)" (or 421; 451 "System unavailable") and
    the destination's circuit stayed closed."""
    outcome = (await deliver(answering(body, content_type, status))).outcome
    assert (outcome.kind, outcome.category, outcome.retryable) == (
        OutcomeKind.ERROR, OutcomeCategory.AUTH_ERROR, False
    )  # fmt: skip
    assert outcome.reason.startswith(f"Configuration refused (HTTP {status} ")


@pytest.mark.parametrize(
    ("status", "body", "content_type", "reason"),
    [
        (402, b'{"error": "Insufficient funds. Please top up your account."}',
         "application/json", "Payment required (HTTP 402: Insufficient funds. Please top up "
                             "your account)"),
        (402, b"Account balance is zero\n", "text/plain",
         "Payment required (HTTP 402: Account balance is zero)"),
        (402, page("402 Payment Required", "<h1>Payment Required</h1>"), "text/html",
         "Payment required (HTTP 402)"),
        (402, b"", "text/plain", "Payment required (HTTP 402)"),
        # an "always 200" API that says the status in its body
        (200, b'{"code": 402, "msg": "Subscription expired"}', "application/json",
         "Payment required (HTTP 402: Subscription expired)"),
    ],
)  # fmt: skip
async def test_a_recipient_that_must_be_paid_first_refuses_every_lead(
    status: int, body: bytes, content_type: str, reason: str
) -> None:
    """402 Payment Required: a buyer's prepaid balance spent, a plan expired. Every lead
    would meet it, so it opens the destination's circuit at once (an authentication
    error's category); before, each lead was refused as if for itself ("Rejected (HTTP
    402)", "Buyer balance too low"), and a lone buyer's leads ended rejected."""
    outcome = (await deliver(answering(body, content_type, status))).outcome
    assert (outcome.kind, outcome.category, outcome.retryable, outcome.reason) == (
        OutcomeKind.ERROR, OutcomeCategory.AUTH_ERROR, False, reason
    )  # fmt: skip


async def test_a_recipient_that_asks_for_another_protocol_says_which() -> None:
    """426 Upgrade Required (a server that takes only TLS on that port, say): every lead
    would meet it, where each was "Rejected (HTTP 426)". Its Upgrade header is the
    recipient's words: only a protocol name's characters reach the reason."""

    async def answer(_: Recipient, __: Received) -> web.Response:
        return web.Response(status=426, headers={"Upgrade": "TLS/1.2, HTTP/1.1 <b>x</b>"})

    outcome = (await deliver(Recipient(answer))).outcome
    assert (outcome.kind, outcome.category) == (OutcomeKind.ERROR, OutcomeCategory.AUTH_ERROR)
    assert outcome.reason == (
        "Configuration refused (HTTP 426 Upgrade Required: the recipient asks for "
        "TLS/1.2, HTTP/1.1 bx/b; check the url)"
    )


async def test_a_404_that_says_something_else_is_the_recipients_answer() -> None:
    answer = orjson.dumps({"message": "No buyer for this lead"})
    outcome = (await deliver(answering(answer, "application/json", 404))).outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, "No buyer for this lead")


async def test_a_redirect_to_a_url_that_cannot_be_split_is_still_a_redirect() -> None:
    """``Location: http://[::1/x`` made urllib raise "Invalid IPv6 URL": the answer was
    "Unreadable response", with a traceback in the log."""

    async def moved(_: Recipient, __: Received) -> web.Response:
        return web.Response(status=302, headers={"Location": "http://[::1/leads"})

    outcome = (await deliver(Recipient(moved))).outcome
    assert outcome.reason == "Redirected (HTTP 302): redirects are not followed; update the url"


async def test_a_json_request_asks_for_json_and_a_framework_answers_its_refusal_in_it() -> None:
    """Laravel's validation, as it answers by the request's Accept: a 422 with the errors
    in JSON to a client that asks for JSON, a redirect back to the form to one that does
    not. Before, the lead was "Redirected (HTTP 302) to /: … update the url"."""

    async def laravel(_: Recipient, received: Received) -> web.Response:
        if "application/json" not in received.headers.get("Accept", ""):
            return web.Response(status=302, headers={"Location": "/"})
        taken = "The email has already been taken."
        return web.json_response({"message": taken, "errors": {"email": [taken]}}, status=422)

    outcome = (await deliver(Recipient(laravel))).outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, "Duplicate lead"), outcome


async def test_a_strict_server_that_answers_in_text_takes_what_a_json_request_accepts() -> None:
    """JAX-RS answers 406 to an Accept its method cannot produce: a text endpoint taking
    JSON leads must still get them."""

    async def text_only(_: Recipient, received: Received) -> web.Response:
        if "text/plain" not in received.headers.get("Accept", ""):
            return web.Response(status=406)
        return web.Response(text="SUCCESS|B-77", content_type="text/plain")

    outcome = (await deliver(Recipient(text_only))).outcome
    assert (outcome.kind, outcome.reference_id) == (OutcomeKind.SUCCESS, "B-77"), outcome


@pytest.mark.parametrize("status", [406, 415])
async def test_a_format_the_recipient_does_not_speak_is_a_configuration_refused(
    status: int,
) -> None:
    """Every lead would meet it, where each was "Rejected (HTTP 415)"."""
    outcome = (await deliver(answering(b"", "text/plain", status))).outcome
    assert (outcome.category, outcome.retryable) == (OutcomeCategory.AUTH_ERROR, False)
    assert outcome.reason.startswith(f"Configuration refused (HTTP {status} ")


@pytest.mark.parametrize(
    ("answer", "kind", "reason", "reference"),
    [
        (b'"REJECTED: Duplicate lead"', OutcomeKind.FAILURE, "Duplicate lead", None),
        (b'"SUCCESS|B-77"', OutcomeKind.SUCCESS, "Accepted", "B-77"),
        (b"false", OutcomeKind.FAILURE, "Rejected", None),
        (b"true", OutcomeKind.SUCCESS, "Accepted", None),
    ],
)
async def test_a_json_string_or_boolean_answer_is_read(
    answer: bytes, kind: OutcomeKind, reason: str, reference: str | None
) -> None:
    """ASP.NET Web API's action that returns a string answers it as JSON
    (``"REJECTED: Duplicate lead"``); some APIs answer ``false``. Both were sales."""
    outcome = (await deliver(answering(answer, "application/json; charset=utf-8"))).outcome
    assert (outcome.kind, outcome.reason, outcome.reference_id) == (kind, reason, reference)


PHP_WARNING = (
    b'<br />\n<b>Warning</b>:  Undefined array key "zip" in <b>/var/www/lead.php</b> on line '
    b"<b>12</b><br />\n"
)


@pytest.mark.parametrize(
    ("body", "kind", "reason", "reference"),
    [
        (PHP_WARNING + b'{"status": "rejected", "reason": "Duplicate"}', OutcomeKind.FAILURE,
         "Duplicate lead", None),
        (PHP_WARNING + PHP_WARNING + b'{"status": "success", "id": "Q-1"}', OutcomeKind.SUCCESS,
         "Accepted", "Q-1"),
        (b"\nWarning: Undefined variable $zip in /var/www/lead.php on line 12\n"
         b'{"status": "rejected", "reason": "Zip not covered"}', OutcomeKind.FAILURE,
         "Outside service area", None),
        (PHP_WARNING + b"<br />\n<b>Fatal error</b>:  Uncaught Error: Call to undefined function "
         b"mysql_connect() in /var/www/lead.php:3<br />", OutcomeKind.ERROR,
         "Recipient error page: PHP error (HTTP 200)", None),
    ],
)  # fmt: skip
async def test_a_php_answer_after_its_notices_is_read(
    body: bytes, kind: OutcomeKind, reason: str, reference: str | None
) -> None:
    """PHP with display_errors on prints its warnings before the JSON, and its fatal error
    with a 200: the answer was unreadable and, whatever it said, a sale."""
    outcome = (await deliver(answering(body, "text/html; charset=UTF-8"))).outcome
    assert (outcome.kind, outcome.reason, outcome.reference_id) == (kind, reason, reference)


@pytest.mark.parametrize(
    ("body", "kind", "reason", "reference"),
    [
        # Python's json writes NaN for a float that is no number; orjson refuses it
        (b'{"status": "rejected", "reason": "Duplicate", "score": NaN}', OutcomeKind.FAILURE,
         "Duplicate lead", None),
        (b'{"status": "accepted", "id": "N-1", "price": Infinity}', OutcomeKind.SUCCESS,
         "Accepted", "N-1"),
        # A free host injects its script after every answer
        (b'{"status": "rejected", "reason": "Zip not covered"}\n<script src="//x.example/a.js">'
         b"</script>", OutcomeKind.FAILURE, "Outside service area", None),
        # An endpoint that answers str(result)
        (b"{'status': 'rejected', 'reason': 'Duplicate', 'ok': False}", OutcomeKind.FAILURE,
         "Duplicate lead", None),
        (b"{'status': 'success', 'lead_id': 'P-7'}", OutcomeKind.SUCCESS, "Accepted", "P-7"),
        # JSONP, as an older API answers its own web forms (Express's way too), and JSON
        # behind a guard against its being run as a script (Google's, Angular's)
        (b'callback({"status": "rejected", "reason": "Duplicate"});', OutcomeKind.FAILURE,
         "Duplicate lead", None),
        (b"/**/ typeof cb === 'function' && cb({\"success\": false, \"message\": \"Invalid zip\"});",
         OutcomeKind.FAILURE, "Invalid data", None),
        (b'jQuery3310_17({"status": "accepted", "id": "J-1"})', OutcomeKind.SUCCESS, "Accepted",
         "J-1"),
        (b')]}\',\n{"status": "rejected", "reason": "Zip not covered"}', OutcomeKind.FAILURE,
         "Outside service area", None),
        (b'while(1);{"status": "accepted", "id": "W-1"}', OutcomeKind.SUCCESS, "Accepted", "W-1"),
    ],
)  # fmt: skip
async def test_json_as_its_writer_meant_it_is_read(
    body: bytes, kind: OutcomeKind, reason: str, reference: str | None
) -> None:
    """Each of these was unreadable to orjson and, whatever it said, a sale."""
    outcome = (await deliver(answering(body, "application/json"))).outcome
    assert (outcome.kind, outcome.reason, outcome.reference_id) == (kind, reason, reference)


@pytest.mark.parametrize(
    "body",
    [
        b'{"status": "rejected", "reason": "Dupli',  # cut short
        b'{"status": "rejected", "reason": "It\'s a "duplicate""}',  # a stray quote
        b"  [{'id': 1}, {'id': 2},",
    ],
)
async def test_a_2xx_that_opens_as_json_and_cannot_be_read_is_not_a_sale(body: bytes) -> None:
    """Whether it said yes is unknown: billed as a sale before, it is now an error that is not
    resent to this recipient (which may have taken the lead), its words in ``raw``."""
    outcome = (await deliver(answering(body, "application/json"))).outcome
    assert outcome.kind is OutcomeKind.ERROR and not outcome.retryable, outcome
    assert outcome.reason == "Unreadable response (HTTP 200: not JSON)"
    assert outcome.category is OutcomeCategory.RECIPIENT_ERROR
    assert outcome.raw == body.decode()


async def test_a_rule_reads_an_answer_that_is_not_json_its_own_way() -> None:
    """A recipient whose answer is broken JSON on every sale says so in a rule."""
    rules = [{"when": {"body_matches": "^\\{.status.: .ok"}, "outcome": "success"}]
    attempt = await deliver(answering(b'{"status": "ok", "id": ', "application/json"),
                            response={"rules": rules})  # fmt: skip
    assert attempt.outcome.kind is OutcomeKind.SUCCESS, attempt.outcome


@pytest.mark.parametrize(
    ("body", "content_type", "kind", "reason", "retryable"),
    [
        (b'{"status": 409, "message": "Lead exists"}', "application/json", OutcomeKind.FAILURE,
         "Duplicate lead", False),
        # an error's status by name: an HTTP phrase in code's spelling, Google's codes
        (b'{"result": "bad_request", "message": "email is required"}', "application/json",
         OutcomeKind.FAILURE, "Invalid data", False),
        (b'{"status": "RESOURCE_EXHAUSTED", "message": "Quota exceeded"}', "application/json",
         OutcomeKind.ERROR, "Recipient busy (HTTP 429)", True),
        (b'{"status": "Service Unavailable"}', "application/json", OutcomeKind.ERROR,
         "Recipient error (HTTP 503)", True),
        (b'{"status": "UNAUTHENTICATED"}', "application/json", OutcomeKind.ERROR,
         "Authentication failed (HTTP 401)", False),
        (b'{"status": "unavailable", "id": "U-1"}', "application/json", OutcomeKind.SUCCESS,
         "Accepted", False),  # a lead's own status word, not a name of an error's
        (b'{"code": 400, "msg": "Invalid phone"}', "application/json", OutcomeKind.FAILURE,
         "Invalid data", False),
        (b'{"statusCode": "503", "message": "Database busy"}', "application/json",
         OutcomeKind.ERROR, "Recipient error (HTTP 503)", True),
        (b'{"code": 401, "message": "Bad key"}', "application/json", OutcomeKind.ERROR,
         "Authentication failed (HTTP 401)", False),
        (b"<response><StatusCode>422</StatusCode><Message>Zip required</Message></response>",
         "text/xml", OutcomeKind.FAILURE, "Invalid data", False),
        # A status that says yes beside it, an app's own code, a success code: sales
        (b'{"status": 400, "success": true, "id": "S-1"}', "application/json",
         OutcomeKind.SUCCESS, "Accepted", False),
        (b'{"code": 0, "msg": "ok", "id": "S-2"}', "application/json", OutcomeKind.SUCCESS,
         "Accepted", False),
        (b'{"code": 4001, "id": "S-3"}', "application/json", OutcomeKind.SUCCESS, "Accepted",
         False),
        (b'{"id": "S-4", "code": "415"}', "application/json", OutcomeKind.SUCCESS, "Accepted",
         False),  # a text code without words beside it: an area's, an offer's
        (b"<r><code>409</code><msg>Lead exists</msg></r>", "text/xml", OutcomeKind.FAILURE,
         "Duplicate lead", False),
    ],
)  # fmt: skip
async def test_an_always_200_answer_is_read_by_the_status_in_its_body(
    body: bytes, content_type: str, kind: OutcomeKind, reason: str, retryable: bool
) -> None:
    """APIs that answer every request with a 200 and say the real status in the body: each
    of these was a sale, billed, where it said a duplicate, a refusal or a failure."""
    outcome = (await deliver(answering(body, content_type))).outcome
    assert (outcome.kind, outcome.reason, outcome.retryable) == (kind, reason, retryable)


@pytest.mark.parametrize(
    ("status", "reason", "category"),
    [
        (524, "Timeout (HTTP 524: Cloudflare waited for the recipient)", OutcomeCategory.TIMEOUT),
        (522, "Recipient unreachable (HTTP 522: Cloudflare timed out connecting to its server)",
         OutcomeCategory.RECIPIENT_ERROR),
        (521, "Recipient unreachable (HTTP 521: Cloudflare found its server refusing "
              "connections)", OutcomeCategory.RECIPIENT_ERROR),
        (526, "Recipient unreachable (HTTP 526: Cloudflare found its server's certificate "
              "invalid)", OutcomeCategory.RECIPIENT_ERROR),
        (504, "Timeout (HTTP 504: Cloudflare waited for the recipient)", OutcomeCategory.TIMEOUT),
    ],
)  # fmt: skip
async def test_cloudflare_says_what_became_of_the_recipients_server(
    status: int, reason: str, category: OutcomeCategory
) -> None:
    """Cloudflare in front of a buyer's API answers its own 52x when it cannot get an answer
    from the buyer's server: each was "Recipient error (HTTP 522)", and a 524 (the request
    reached the server, which did not answer within 100 s: it may have the lead) was not
    counted as the timeout it is. Retried, as before."""

    async def answer(_: Recipient, __: Received) -> web.Response:
        return web.Response(status=status, headers={"Server": "cloudflare",
                                                    "CF-RAY": "8f1c2d3e4a5b6c7d-FRA"},
                            text=f"error code: {status}")  # fmt: skip

    outcome = (await deliver(Recipient(answer))).outcome
    assert (outcome.kind, outcome.retryable) == (OutcomeKind.ERROR, True), outcome
    assert (outcome.reason, outcome.category) == (reason, category)


@pytest.mark.parametrize(
    ("written", "price"),
    [("$12.50", "12.50"), ("12.50 USD", "12.50"), ("USD 1,250.00", "1250.00"), ("€9", "9"),
     ({"amount": "12.50", "currency": "USD"}, "12.50"), ({"Value": 7}, "7"),
     ("12,50", None), ("about 12", None), ({"amount": {"amount": 1}}, None)],
)  # fmt: skip
async def test_a_price_or_bid_written_for_people_is_read(
    written: object, price: str | None
) -> None:
    """A currency's sign or code, thousands grouped, a money object: a sale's price so
    written was lost to billing, and a ping's bid was no bid (the buyer never won). "12,50" could be twelve and
    a half or twelve hundred and fifty: refused, not guessed."""
    expected = None if price is None else Decimal(price)
    sale = (await deliver(answering(orjson.dumps({"id": "P-1", "price": written}),
                                    "application/json"))).outcome  # fmt: skip
    assert (sale.kind, sale.price) == (OutcomeKind.SUCCESS, expected)
    ping = await ping_answered({"bid": written, "bid_id": "B-1"})
    assert bid_of(ping) == expected


async def test_a_sale_priced_at_nothing_is_billed_at_its_fixed_price_or_its_bid() -> None:
    """An answer's ``"price": 0`` is a default field: a buyer's post that answered so was
    billed at nothing, for the bid it had won with; a destination with a fixed price too."""
    zero = orjson.dumps({"id": "S-1", "price": "0.00"})
    fixed = (await deliver(answering(zero, "application/json"), price=12.5)).outcome
    assert (fixed.kind, fixed.price) == (OutcomeKind.SUCCESS, Decimal("12.5"))
    won = Lead("L-1", {**LEAD.envelope, "appended": {"buyer": {"bid": "30.00"}}})
    posted = (await deliver(answering(zero, "application/json"), won)).outcome
    assert (posted.kind, posted.price) == (OutcomeKind.SUCCESS, Decimal("30.00"))
    alone = (await deliver(answering(zero, "application/json"))).outcome
    assert alone.price == Decimal("0.00")  # nothing else to bill it at: as it said


async def ping_answered(
    answer: object, content_type: str = "application/json", **ping: Any
) -> Attempt:
    """A buyer's ping, answered with ``answer`` (JSON, or the bytes as they are), as an
    auction reads it."""
    body = answer if isinstance(answer, bytes) else orjson.dumps(answer)
    buyer = answering(body, content_type)
    await buyer.start()
    try:
        dest = parse_destinations({"destinations": [{
            "id": "buyer", "url": buyer.url(), "mapping": {"email": "email"},
            "ping": {"url": buyer.url(), "mapping": {"state": "source"}, **ping}}]}).destinations[0]  # fmt: skip
        sender = HttpSender()
        try:
            return await attempt_delivery(LEAD, dest.pinged, sender)
        finally:
            await sender.close()
    finally:
        await buyer.stop()


@pytest.mark.parametrize(
    "answer",
    [{"data": {"bid": "12.50", "bid_id": "B-1"}}, [{"bid": "12.50", "bid_id": "B-1"}],
     {"response": {"result": {"bid": "12.50", "bid_id": "B-1"}}},
     # the bid's id by the names ping-post platforms give it
     {"status": "ping_accept", "bid": "12.50", "transaction_id": "B-1"},
     {"bid": "12.50", "ping_id": "B-1", "transaction_id": "T-9"}],
)  # fmt: skip
async def test_a_bid_is_read_in_its_wrapper_and_its_id_by_the_usual_names(answer: object) -> None:
    """The default outcome reads an answer inside its wrapper (``data``, a batch of one);
    the ping's captures (``$.bid``, ``$.bid_id``) read only the top: a buyer that wrapped
    its bid never won an auction (no bid), and a capture path a destination names was
    read alike. A ``ping_id`` or ``transaction_id`` was no bid id for the post to carry."""
    ping = await ping_answered(answer)
    assert (bid_of(ping), ping.outcome.reference_id) == (Decimal("12.50"), "B-1")


@pytest.mark.parametrize(
    ("answer", "content_type"),
    [(b"<response><status>Matched</status><price>12.50</price><ping_id>B-1</ping_id>"
      b"</response>", "application/xml"),
     (b"<Response><Bid>12.50</Bid><BidId>X</BidId><Bid_Id>B-1</Bid_Id></Response>", "text/xml"),
     (b"status=accepted&bid=12.50&transaction_id=B-1", "text/plain"),
     (b'{"Bid": 12.5, "BID_ID": "B-1"}', "application/json"),
     (b'{"result": "success", "payout": "12.50", "ping_id": "B-1"}', "application/json"),
     (b'{"Success": true, "Cost": 12.5, "transaction_id": "B-1"}', "application/json"),
     # .NET's camel case, a ping's token for the post
     (b'{"Result": "Accepted", "Price": "$12.50", "TransactionId": "B-1"}', "application/json"),
     (b'{"accepted": true, "bid": 12.5, "token": "B-1"}', "application/json")],
)  # fmt: skip
async def test_a_bid_and_its_id_are_read_in_any_format_by_the_names_buyers_give_them(
    answer: bytes, content_type: str
) -> None:
    """The ping's captures are JSON paths (``$.bid``, ``$.bid_id``): a buyer answering in
    XML or a form had its bid's id unread (the post carried none, and the buyer refused
    it), its ``<bid>`` no bid; one bidding ``Bid`` (.NET's case), ``payout`` or LeadByte's
    ``Cost`` never won. They are read among the answer's own fields, in any case."""
    ping = await ping_answered(answer, content_type)
    assert (bid_of(ping), ping.outcome.reference_id) == (Decimal("12.50"), "B-1"), ping.outcome
    # a ping's own response block (a rule for its "no bid") keeps that reading
    rules = [{"when": {"body_matches": "(?i)no match"}, "outcome": "failure"}]
    ping = await ping_answered(answer, content_type, response={"rules": rules})
    assert (bid_of(ping), ping.outcome.reference_id) == (Decimal("12.50"), "B-1"), ping.outcome


@pytest.mark.parametrize(
    ("answer", "content_type", "valid_for"),
    [(b'{"bid": 12.5, "bid_id": "B-1", "expires_in": 30}', "application/json", 30.0),
     (b'{"Bid": 12.5, "TTL": 20}', "application/json", 20.0),
     (b"<response><bid>12.50</bid><expires_in>15</expires_in></response>", "text/xml", 15.0),
     (b"bid=12.50&ttl=45", "text/plain", 45.0),
     # Ringba's RTB answer: its bid in camel case, valid for expireInSeconds
     (b'{"bidId": "B-1", "bidAmount": 12.5, "expireInSeconds": 40, "phoneNumber": "+1555"}',
      "application/json", 40.0)],
)  # fmt: skip
async def test_a_bids_lifetime_or_end_is_read_by_the_names_buyers_give_it(
    answer: bytes, content_type: str, valid_for: float
) -> None:
    """A bid's ``expires_in``/``ttl`` (seconds) was not read, nor an end named ``expires``
    or ``valid_until``: the post went out after the buyer's bid had ended, and was
    refused."""
    ping = await ping_answered(answer, content_type)
    assert bid_of(ping) == Decimal("12.50"), ping.outcome
    assert bid_valid_until(ping, 60.0) == ping.finished_at.timestamp() + valid_for
    for ended in (b'{"bid": 12.5, "Valid_Until": "2000-01-01T00:00:00Z"}',
                  b'{"bid": 12.5, "bid_expires_at": "2000-01-01T00:00:00Z"}',
                  b'{"bidPrice": 12.5, "expireTime": "2000-01-01T00:00:00Z"}'):  # fmt: skip
        ping = await ping_answered(ended)
        assert bid_valid_until(ping, 60.0) == datetime(2000, 1, 1, tzinfo=UTC).timestamp()


async def test_a_marketplaces_list_of_bids_bids_its_best() -> None:
    """A marketplace answers a ping with its buyers' bids (Juiced's documented answer): it
    had no bid at its top, so it never won. Its best bid is the ping's bid, that bid's id
    the bid id the post carries, the ping's own id kept beside it."""
    listed = {"ping_id": "P-1", "message": "Match found", "bids": [
        {"id": "B-38", "price": 38.5, "tcpa_name": "The Mangolorian Security"},
        {"id": "B-45", "price": 45, "tcpa_name": "Nectarflix Entertainment"},
        {"id": "B-0", "price": "free"}]}  # fmt: skip
    ping = replace(await ping_answered(listed), phase="ping")
    assert (bid_of(ping), ping.outcome.reference_id) == (Decimal("45"), "B-45"), ping.outcome
    carried = with_appended(LEAD, ping).envelope["appended"]["buyer"]
    assert (carried["bid"], carried["bid_id"], carried["ping_id"]) == ("45", "B-45", "P-1")
    offers = {"status": "ok", "offers": [{"offer_id": 7, "amount": "$12.50"}]}
    ping = await ping_answered(offers)
    assert (bid_of(ping), ping.outcome.reference_id) == (Decimal("12.50"), "7"), ping.outcome
    # one bid as an object of its own, its id beside its price
    for alone in ({"status": "accepted", "bid": {"price": 9.5, "id": "B-9"}},
                  {"result": "success", "bid": {"amount": "9.50", "currency": "USD",
                                                "bid_id": "B-9"}}):  # fmt: skip
        ping = await ping_answered(alone)
        assert (bid_of(ping), ping.outcome.reference_id) == (Decimal("9.5"), "B-9"), ping.outcome
    for none in ({"ping_id": "P-2", "message": "No match found", "bids": []},
                 {"ping_id": "P-3", "bids": [{"id": "B-1", "price": 0}]}):  # fmt: skip
        assert bid_of(await ping_answered(none)) is None


@pytest.mark.parametrize(
    ("answer", "content_type"),
    [(b'{"status": "no_bid", "price": 10}', "application/json"),
     (b'{"result": "NoBid", "bid": 5}', "application/json"),
     (b"NO_BID", "text/plain"),
     (b'{"bid_status": "rejected", "bid": 7}', "application/json"),
     (b'{"interested": false, "bid": 7}', "application/json")],
)  # fmt: skip
async def test_a_ping_that_says_no_bid_is_none_whatever_price_it_shows(
    answer: bytes, content_type: str
) -> None:
    """A buyer's "no bid" beside a price (its floor, an echo of the ping) was a bid at that
    price: the full lead was posted to a buyer that had declined it."""
    ping = await ping_answered(answer, content_type)
    assert bid_of(ping) is None, ping.outcome
    assert ping.outcome.kind is OutcomeKind.FAILURE


async def test_a_ping_answered_without_a_bid_says_why_in_its_event() -> None:
    """Ringba's answer when it will not bid: a bid of nothing and its reason. The ping's
    event said "Accepted" beside "no_bid"."""
    refused = {"bidId": "bdb74fe9", "bidAmount": 0, "rejectReason": "Missing required fields"}
    event = delivery_event(replace(await ping_answered(refused), phase="ping"))
    assert (event["outcome"], event["reason"]) == ("no_bid", "No bid: Missing required fields")
    event = delivery_event(replace(await ping_answered({"status": "received"}), phase="ping"))
    assert (event["outcome"], event["reason"]) == ("no_bid", "No bid")
    xml = b"<response><bid>0</bid><reason>Zip 90210 outside our footprint</reason></response>"
    event = delivery_event(replace(await ping_answered(xml, "text/xml"), phase="ping"))
    assert (event["outcome"], event["reason"]) == (
        "no_bid", "No bid: Zip 90210 outside our footprint"
    )  # fmt: skip
    # words that refuse on their own are the answer's refusal, and its reason
    xml = b"<response><bid>0</bid><reason>No coverage in 90210</reason></response>"
    event = delivery_event(replace(await ping_answered(xml, "text/xml"), phase="ping"))
    assert (event["outcome"], event["reason"]) == ("no_bid", "No coverage in 90210")


async def test_a_ping_answer_that_only_echoes_amounts_is_no_bid() -> None:
    """Only the names of a bid are read as one: a ping's answer that echoes the loan
    ``amount`` asked for is no bid of 25,000, nor an ``id`` the bid's id over its own."""
    ping = await ping_answered({"status": "received", "amount": 25000, "loan_amount": 25000})
    assert bid_of(ping) is None
    ping = await ping_answered({"bid": 9, "id": "R-1", "ping_id": "B-1"})
    assert (bid_of(ping), ping.outcome.reference_id) == (Decimal(9), "B-1")


_REFUSAL_XML = "<response><status>Rejected</status><reason>Duplicate</reason></response>"
_FAULT = ('<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
          "<soap:Fault><faultcode>soap:Client</faultcode><faultstring>Duplicate lead"
          "</faultstring></soap:Fault></soap:Body></soap:Envelope>")  # fmt: skip


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [(codecs.BOM_UTF8 + b'<?xml version="1.0"?>' + _REFUSAL_XML.encode(), "text/xml", 200),
     (f'<?xml version="1.0" encoding="utf-16"?>{_REFUSAL_XML}'.encode("utf-16"),
      "text/xml; charset=utf-16", 200),
     # StringWriter's declaration on what was sent in UTF-8
     (f'<?xml version="1.0" encoding="utf-16"?>{_REFUSAL_XML}'.encode(), "application/xml", 200),
     (codecs.BOM_UTF8 + _FAULT.encode(), "text/xml", 500),
     (_FAULT.encode("utf-16"), "text/xml; charset=utf-16", 200),
     # JSON encoded twice: a string that holds it, alone or in ASMX's "d"
     (orjson.dumps(orjson.dumps({"status": "rejected", "reason": "Duplicate"}).decode()),
      "application/json", 200),
     (orjson.dumps({"d": orjson.dumps({"Success": False, "Message": "Duplicate"}).decode()}),
      "application/json; charset=utf-8", 200),
     # UTF-16 by its byte order mark whatever the header names, or without one by its
     # zero bytes when the header names no charset: each was a sale
     ('{"status": "rejected", "reason": "Duplicate"}'.encode("utf-16"), "application/json",
      200),
     ('{"status": "rejected", "reason": "Duplicate"}'.encode("utf-16"),
      "application/json; charset=utf-8", 200),
     ('{"status": "rejected", "reason": "Duplicate"}'.encode("utf-16-be"), "application/json",
      200),
     ("REJECTED: Duplicate".encode("utf-16-le"), "text/plain", 200),
     (_REFUSAL_XML.encode("utf-16-le"), "text/xml", 200)],
)  # fmt: skip
async def test_an_answer_as_dotnet_writes_it_is_read(
    body: bytes, content_type: str, status: int
) -> None:
    """.NET's XmlWriter puts a byte order mark before ``<?xml``, ``Encoding.Unicode``
    writes UTF-16, StringWriter declares ``encoding="utf-16"`` on text then sent in UTF-8
    (which expat refuses), and actions that return ``JsonConvert.SerializeObject(…)``
    encode their JSON twice. Each refusal was a sale: no XML or JSON object to read."""
    outcome = (await deliver(answering(body, content_type, status))).outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, "Duplicate lead"), outcome
    assert "\x00" not in (outcome.raw or "")  # the recipient's words, not their bytes


async def test_a_sale_in_utf_16_keeps_its_reference() -> None:
    """A UTF-16 sale's id was unread (the answer no JSON), and its raw text kept its
    zero bytes."""
    body = '{"status": "accepted", "id": "Orléans-5"}'.encode("utf-16")
    outcome = (await deliver(answering(body, "application/json"))).outcome
    assert (outcome.kind, outcome.reference_id) == (OutcomeKind.SUCCESS, "Orléans-5"), outcome
    assert outcome.raw == '{"status": "accepted", "id": "Orléans-5"}'


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b'<response status="Rejected" reason="Duplicate" />', "text/xml"),
     (b'<response><result status="rejected" reason="Duplicate"/></response>', "text/xml"),
     (b'<PostResponse><Response Result="Failure" Message="Duplicate Lead"/></PostResponse>',
      "application/xml"),
     (b"Status=Rejected\nReason=Duplicate", "text/plain"),
     (b"status: rejected\r\nreason: Duplicate\r\n", "text/plain")],
)  # fmt: skip
async def test_a_refusal_in_attributes_or_in_lines_of_fields_is_read(
    body: bytes, content_type: str
) -> None:
    """Buyers that answer in "XML with attributes" (Pingtree's name for it) or in lines of
    ``name=value`` said their refusal where nothing read it: each was a sale."""
    outcome = (await deliver(answering(body, content_type))).outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, "Duplicate lead"), outcome


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [(400, b"Status=Rejected\nReason=Invalid zip", "Invalid data"),
     (422, b"result=failed&message=Phone+is+required", "Invalid data"),
     (400, b"Bad Request", "Rejected (HTTP 400)"),  # a line alone: read for its words only
     (500, b"status: error\nmessage: Duplicate entry for key 'email'", "Duplicate lead")],
)  # fmt: skip
async def test_a_refusals_reason_in_a_form_or_in_lines_of_fields_is_read(
    status: int, body: bytes, reason: str
) -> None:
    """A 4xx or 5xx that says why in a form's pairs or lines of them: its reason was not
    read (``Rejected (HTTP 400)``; a 500's duplicate retried as a recipient error)."""
    outcome = (await deliver(answering(body, "text/plain", status))).outcome
    assert outcome.reason == reason, outcome


@pytest.mark.parametrize(
    ("body", "reason"),
    [({"error": {"code": "", "message": {"lang": "en-US", "value": "Duplicate record"}}},
      "Duplicate lead"),
     ({"odata.error": {"code": "", "message": {"lang": "en-US", "value": "Invalid zip"}}},
      "Invalid data")],
)  # fmt: skip
async def test_an_odata_errors_message_object_is_read(body: object, reason: str) -> None:
    """OData 2 and 3 (SAP Gateway, older Dynamics and SharePoint) write an error's message
    as ``{"lang": …, "value": …}``, OData 3 under ``odata.error``: it was "Rejected (HTTP
    400)"."""
    outcome = (await deliver(answering(orjson.dumps(body), "application/json", 400))).outcome
    assert outcome.reason == reason, outcome


async def test_a_sale_in_attributes_or_in_lines_keeps_its_reference_and_price() -> None:
    sale = (await deliver(answering(b'<Lead Status="Accepted" Price="12.50" Id="X7"/>',
                                    "application/xml"))).outcome  # fmt: skip
    assert (sale.kind, sale.reference_id, sale.price) == (
        OutcomeKind.SUCCESS, "X7", Decimal("12.50")), sale  # fmt: skip
    assert sale.appended["Status"] == "Accepted"
    sale = (await deliver(answering(b"Result=Success\nLead_ID=4471\n", "text/plain"))).outcome
    assert (sale.kind, sale.reference_id) == (OutcomeKind.SUCCESS, "4471"), sale
    # a schema's own attributes are not the answer's: ASMX's line of text is read as before
    typed = (b'<string xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
             b'xsi:type="xsd:string">SUCCESS|B-77</string>')  # fmt: skip
    sale = (await deliver(answering(typed, "text/xml"))).outcome
    assert (sale.kind, sale.reference_id) == (OutcomeKind.SUCCESS, "B-77"), sale


@pytest.mark.parametrize(
    ("answer", "reason"),
    [({"status": "success", "data": {"accepted": False, "reason": "Duplicate"}}, "Duplicate lead"),
     ({"code": 0, "msg": "success", "data": {"status": "rejected", "reason": "Over cap"}},
      "Cap exceeded"),
     ({"ok": True, "result": {"sold": False, "reason": "No buyer"}}, "No buyer"),
     ({"id": "R-1", "response": {"status": "Not interested"}}, "Not interested"),
     # a refusal's reason in its errors, where it was "error" or "Rejected"
     ({"status": "error", "errors": {"email": ["is invalid"]}}, "Invalid data"),
     ({"success": False, "errors": ["Phone is invalid"]}, "Invalid data"),
     ({"sold": 0}, "Rejected"),
     # the status's known reason where the message names none (it was "Lead exists")
     ({"result": "Duplicate", "message": "Lead exists"}, "Duplicate lead")],
)  # fmt: skip
async def test_a_refusal_inside_the_calls_envelope_is_read(answer: object, reason: str) -> None:
    """APIs that answer the call's own result at the top (``success: true``, ``code: 0``)
    and the lead's inside ``data`` or ``result``: each refusal so said was a sale."""
    outcome = (await deliver(answering(orjson.dumps(answer), "application/json"))).outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, reason), outcome


_LEADCONDUIT_XML = (
    '<?xml version="1.0"?> <result> <outcome>{outcome}</outcome> <reason>{reason}</reason> '
    "<lead> <id>55c8e255g56r8d5f2e69e1d9</id> </lead> <price>{price}</price> </result>"
)


@pytest.mark.parametrize(
    ("answer", "content_type", "reason"),
    [# LeadConduit's documented answers, JSON and XML, as a buyer's flow gives them
     (b'{"outcome": "failure", "reason": "Failed email validation", '
      b'"lead": {"id": "55c8e255g56r8d5f2e69e1d9"}, "price": 0}', "application/json",
      "Invalid data"),
     (b'{"outcome": "error", "reason": "Duplicate lead", "lead": {"id": "55c8"}}',
      "application/json", "Duplicate lead"),
     (_LEADCONDUIT_XML.format(outcome="failure", reason="Duplicate", price=0).encode(),
      "application/xml", "Duplicate lead"),
     # a lender's decision, a buyer's disposition
     (b'{"decision": "Declined", "reason": "Outside our lending area"}', "application/json",
      "Outside our lending area"),
     (b'{"Disposition": "Duplicate", "LeadId": 7}', "application/json", "Duplicate lead"),
     # a refusal inside an XML answer's envelope, as a JSON one's
     (b"<response><code>0</code><data><status>rejected</status><reason>Over cap</reason>"
      b"</data></response>", "text/xml", "Cap exceeded"),
     # the envelope alone in its root (reading it raised: the lead's outcome an internal
     # error, in the integrations' readers "could not read")
     (b"<result><lead><id>L-1</id><status>rejected</status><reason>Duplicate</reason>"
      b"</lead></result>", "text/xml", "Duplicate lead")],
)  # fmt: skip
async def test_a_verdict_said_as_an_outcome_or_a_decision_is_read(
    answer: bytes, content_type: str, reason: str
) -> None:
    """LeadConduit, which many buyers receive leads through, answers ``{"outcome":
    "failure", "reason": …}`` (or ``<outcome>``): each refusal it gave was billed as a
    sale, as was a ``decision`` or ``disposition`` that said no."""
    outcome = (await deliver(answering(answer, content_type))).outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, reason), outcome


@pytest.mark.parametrize(
    ("answer", "content_type", "reason"),
    [# LeadExec's documented answer: isValidPost, ResponseType, ResponseDetail
     (b'{"PostID": "9b2f6f4e", "isValidPost": false, "ResponseType": "Duplicate_Lead", '
      b'"ResponseDetail": "Duplicate lead", "LeadIdentifier": 0, "Price": 0}',
      "application/json", "Duplicate lead"),
     (b'{"PostID": "9b2f6f4e", "isValidPost": false, "ResponseType": 5, '
      b'"ResponseDetail": "Outside criteria", "LeadIdentifier": 0}', "application/json",
      "Outside criteria"),
     (b"<PostResponse><PostID>9b2f</PostID><isValidPost>false</isValidPost><ResponseType>"
      b"Data_Errors</ResponseType><ResponseDetail>Zip is required</ResponseDetail>"
      b"</PostResponse>", "text/xml", "Invalid data"),
     # a validation's answer, a lead's own status
     (b'{"valid": false, "errors": ["phone is invalid"]}', "application/json", "Invalid data"),
     (b'{"IsSuccess": false, "Message": "Over cap"}', "application/json", "Cap exceeded"),
     (b'{"id": 5, "lead_status": "Rejected - Duplicate"}', "application/json",
      "Duplicate lead"),
     # a known TCPA litigator's number, as buyers' scrubs name it
     (b'{"status": "Litigator"}', "application/json", "Litigator")],
)  # fmt: skip
async def test_a_no_said_by_an_is_flag_or_a_leads_status_is_read(
    answer: bytes, content_type: str, reason: str
) -> None:
    """``isValidPost: false`` (LeadExec, whose buyers receive leads through it), ``valid``,
    ``IsSuccess`` (.NET's), a ``lead_status`` or ``ResponseType`` that says no: each was
    billed as a sale; the reason is read from LeadExec's ``ResponseDetail``."""
    outcome = (await deliver(answering(answer, content_type))).outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, reason), outcome


@pytest.mark.parametrize(
    ("answer", "status", "reason", "category"),
    [# Marketo's lead that it neither created nor updated, its reasons beside it
     (b'{"requestId": "e42b#14272d07d78", "success": true, "result": [{"id": 50, '
      b'"status": "skipped", "reasons": [{"code": "1005", "message": "Lead already exists"}]}]}',
      200, "Duplicate lead", "duplicate"),
     # and its access token refused, in a 200
     (b'{"requestId": "e42b", "success": false, "errors": [{"code": "601", '
      b'"message": "Access token invalid"}]}', 200,
      "Authentication failed (access token invalid)", "auth_error"),
     # Zoho CRM's batch of one in its data wrapper, with a 400: its message was not read
     (b'{"data": [{"code": "MANDATORY_NOT_FOUND", "details": {"api_name": "Last_Name"}, '
      b'"message": "required field not found", "status": "error"}]}', 400, "Invalid data",
      "invalid_data")],
)  # fmt: skip
async def test_crms_batch_answers_of_one_lead_say_why(
    answer: bytes, status: int, reason: str, category: str
) -> None:
    """Each was a sale (Marketo's skipped lead, its refused token) or ``Rejected (HTTP
    400)`` (Zoho's missing field)."""
    outcome = (await deliver(answering(answer, "application/json", status))).outcome
    assert (outcome.reason, outcome.category) == (reason, category), outcome


async def test_a_zoho_crm_records_id_is_its_reference() -> None:
    added = (b'{"data": [{"code": "SUCCESS", "details": {"Modified_Time": '
             b'"2019-05-02T11:17:33+05:30", "id": "4150868000000624001"}, '
             b'"message": "record added", "status": "success"}]}')  # fmt: skip
    sale = (await deliver(answering(added, "application/json", 201))).outcome
    assert (sale.kind, sale.reference_id) == (OutcomeKind.SUCCESS, "4150868000000624001"), sale


def answering_with(status: int, headers: dict[str, str], body: bytes = b"") -> Recipient:
    async def answer(_: Recipient, __: Received) -> web.Response:
        return web.Response(body=body, status=status, headers=headers)

    return Recipient(answer)


@pytest.mark.parametrize(
    ("status", "headers", "body", "reference"),
    [# Dynamics 365's create: 204 No Content, the record in OData-EntityId
     (204, {"OData-EntityId": "https://org.crm.dynamics.com/api/data/v9.2/"
                              "leads(7b9c3f0e-1a2b-4c5d-8e9f-001122334455)"}, b"",
      "7b9c3f0e-1a2b-4c5d-8e9f-001122334455"),
     # a 201 Created's Location, its body naming no id
     (201, {"Location": "https://api.example.com/v1/leads/L-77/",
            "Content-Type": "application/json"}, b'{"ok": true}', "L-77"),
     # the record made under its type's name (ActiveCampaign's)
     (201, {"Content-Type": "application/json"},
      b'{"contact": {"email": "ada@example.com", "id": "113", "cdate": "2024-01-01"}}', "113"),
     # the body's own id comes first; a request's id in "meta" is no record's
     (201, {"Location": "https://api.example.com/v1/leads/L-77",
            "Content-Type": "application/json"}, b'{"id": "L-78"}', "L-78"),
     (200, {"Content-Type": "application/json"}, b'{"meta": {"id": "req-9"}}', None),
     (200, {"Location": "https://api.example.com/v1/leads/L-77"}, b"", None)],
)  # fmt: skip
async def test_a_made_records_id_is_read_where_the_recipient_names_it(
    status: int, headers: dict[str, str], body: bytes, reference: str | None
) -> None:
    """Each sale had no reference, which reconciliation and feedback by reference id need."""
    sale = (await deliver(answering_with(status, headers, body))).outcome
    assert (sale.kind, sale.reference_id) == (OutcomeKind.SUCCESS, reference), sale


@pytest.mark.parametrize(
    ("answer", "content_type", "status", "reason"),
    [# Freshsales' error object under "errors" (it was "code 400")
     (b'{"errors": {"code": 400, "message": ["Email has already been taken"]}}',
      "application/json", 400, "Duplicate lead"),
     # Close's fields' errors apart from its errors (it was "Rejected (HTTP 400)")
     (b'{"errors": [], "field-errors": {"email": "Invalid email address"}}',
      "application/json", 400, "Invalid data")],
)  # fmt: skip
async def test_a_crms_error_object_or_field_errors_say_why(
    answer: bytes, content_type: str, status: int, reason: str
) -> None:
    outcome = (await deliver(answering(answer, content_type, status))).outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, reason), outcome


@pytest.mark.parametrize(
    ("answer", "content_type"),
    [# Slack's incoming webhook removed, its workspace or channel gone
     (b"no_service", "text/plain"), (b"channel_not_found", "text/plain"),
     # Airtable's table or base that is not there
     (b'{"errors": [{"error": "NOT_FOUND", "message": "Could not find table Leads in '
      b'application appX"}]}', "application/json"),
     (b'{"error": {"type": "TABLE_NOT_FOUND", "message": "Could not find table Leads"}}',
      "application/json"),
     (b'{"error": "NOT_FOUND"}', "application/json")],
)  # fmt: skip
async def test_a_404_that_says_the_url_names_nothing_opens_the_circuit(
    answer: bytes, content_type: str
) -> None:
    """Every lead would meet it: each was refused on its own ("Rejected (HTTP 404)", "Could
    not find table Leads…") and the next lead sent to the same nothing."""
    outcome = (await deliver(answering(answer, content_type, 404))).outcome
    assert outcome.category is OutcomeCategory.AUTH_ERROR, outcome
    assert outcome.reason == "Configuration refused (HTTP 404 Not Found: check the url)"
    # a 404 that says why this lead found no buyer stays the lead's
    no_buyer = answering(b'{"message": "No matching buyer for this lead"}', "application/json", 404)
    assert (await deliver(no_buyer)).outcome.kind is OutcomeKind.FAILURE


async def test_airtables_record_made_is_its_reference() -> None:
    made = b'{"records": [{"id": "recAbc123", "createdTime": "2024-01-01T00:00:00.000Z"}]}'
    sale = (await deliver(answering(made, "application/json"))).outcome
    assert (sale.kind, sale.reference_id) == (OutcomeKind.SUCCESS, "recAbc123"), sale


@pytest.mark.parametrize(
    ("answer", "reason"),
    [(b"<response><errors><error>Invalid phone</error></errors></response>", "Invalid data"),
     (b"<Result><Success>False</Success><Errors><Error><Code>DUP</Code><Message>Duplicate lead"
      b"</Message></Error></Errors></Result>", "Duplicate lead"),
     # .NET's List<string>, under a status that says only "Failure"
     (b"<Response><Status>Failure</Status><Errors><string>Phone is invalid</string></Errors>"
      b"</Response>", "Invalid data")],
)  # fmt: skip
async def test_an_xml_answers_errors_are_read_as_a_json_answers(answer: bytes, reason: str) -> None:
    """An XML answer's ``<errors>`` list was not read: a refusal said only there was a
    sale, and one whose status said no had the status's word for its reason."""
    outcome = (await deliver(answering(answer, "text/xml"))).outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, reason), outcome
    empty = b"<response><lead_id>5</lead_id><errors><error/></errors></response>"
    sale = (await deliver(answering(empty, "text/xml"))).outcome
    assert (sale.kind, sale.reference_id) == (OutcomeKind.SUCCESS, "5"), sale


@pytest.mark.parametrize(
    ("answer", "content_type", "reason"),
    [(b'{"ResultCode": -1, "ResultMessage": "Missing phone"}', "application/json",
      "Invalid data"),
     (b'{"code": -3, "msg": "Over cap"}', "application/json", "Cap exceeded"),
     (b"<root><result><code>-1</code><message>Duplicate</message></result></root>", "text/xml",
      "Duplicate lead"),
     # no at the top, why only in the envelope (its reason was "Rejected")
     (b'{"code": -1, "response": "Rejected", "records": [{"status": "Invalid", '
      b'"errors": ["Phone invalid"]}]}', "application/json", "Invalid data"),
     # the code alone, as text or JSON: older APIs' refusal, their sale the lead's id
     (b"-1", "text/plain", "Error code -1"),
     (b"-105\r\n", "text/html", "Error code -105"),
     (b"-2", "application/json", "Error code -2")],
)  # fmt: skip
async def test_a_result_code_below_zero_is_a_refusal(
    answer: bytes, content_type: str, reason: str
) -> None:
    """Where 0 or 1 may say yes, a code below zero is an error's: each was a sale."""
    outcome = (await deliver(answering(answer, content_type))).outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, reason), outcome
    for taken in (b'{"code": 0, "id": "R-1"}', b'{"Result": 1, "LeadId": "R-1"}'):
        sale = (await deliver(answering(taken, "application/json"))).outcome
        assert (sale.kind, sale.reference_id) == (OutcomeKind.SUCCESS, "R-1"), sale


async def test_a_batch_of_one_under_results_is_read_inside_it() -> None:
    """Batch APIs answer one record's result under ``results``, a 207 Multi-Status with
    each result's own status: a duplicate was a sale, a made record's id unread."""
    refused = b'{"results": [{"status": 409, "error": "Lead already on file"}]}'
    outcome = (await deliver(answering(refused, "application/json", 207))).outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, "Duplicate lead"), outcome
    made = b'{"status": "COMPLETE", "results": [{"id": "512", "properties": {}}]}'
    sale = (await deliver(answering(made, "application/json", 201))).outcome
    assert (sale.kind, sale.reference_id) == (OutcomeKind.SUCCESS, "512"), sale


async def test_an_errors_description_is_its_reason_not_its_code() -> None:
    """Bitrix24's and OAuth's errors give a code in ``error`` and the words in
    ``error_description``: the refusal was "ERROR_CORE"."""
    said = b'{"error": "ERROR_CORE", "error_description": "Field EMAIL is invalid"}'
    outcome = (await deliver(answering(said, "application/json", 400))).outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, "Invalid data"), outcome
    assert outcome.raw is not None and "Field EMAIL is invalid" in outcome.raw


@pytest.mark.parametrize(
    ("answer", "reason"),
    [(b"Lead Rejected", "Lead Rejected"),
     (b"Lead Rejected: Duplicate", "Duplicate lead"),
     (b"The lead was rejected", "The lead was rejected"),
     (b"Lead not accepted", "Lead not accepted"),
     (b"Lead Exists", "Duplicate lead"),
     (b"Lead already in system", "Duplicate lead"),
     # other subjects, "this", and who has it already: each was a sale
     (b"This lead already exists in our system", "Duplicate lead"),
     (b"This lead was rejected", "This lead was rejected"),
     (b"Submission rejected: Duplicate", "Duplicate lead"),
     (b"Post failed: invalid zip", "Invalid data"),
     (b"Phone number already exists", "Duplicate lead"),
     (b"Already exists", "Duplicate lead"),
     (b"We already have this lead", "Duplicate lead"),
     (b"Phone number is on the National Do Not Call Registry",
      "Phone number is on the National Do Not Call Registry"),
     # its verdict after a separator: each was a sale
     (b"Lead posted: rejected", "Lead posted: rejected"),
     (b"Lead: Duplicate", "Duplicate lead")],
)  # fmt: skip
async def test_a_text_answer_that_names_the_lead_before_its_verdict_is_read(
    answer: bytes, reason: str
) -> None:
    """Its first word, "Lead", said nothing, so each was billed as a sale."""
    outcome = (await deliver(answering(answer, "text/plain"))).outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, reason), outcome
    for taken, reference in ((b"Lead Accepted", None), (b"Lead accepted successfully", None),
                             (b"Lead Accepted 12345", "12345"), (b"Lead received", None),
                             (b"Contact created", None), (b"Submission received", None),
                             (b"Posting accepted: 123", "123"), (b"Lead: 12345", None),
                             (b"We already sent you a confirmation", None),
                             (b"Number is not on the DNC list", None),
                             (b"Lead accepted (on the DNC list check: pass)", None)):  # fmt: skip
        sale = (await deliver(answering(taken, "text/plain"))).outcome
        assert (sale.kind, sale.reference_id) == (OutcomeKind.SUCCESS, reference), sale


@pytest.mark.parametrize(
    ("answer", "reason"),
    [(b"Thank you, but this lead is a duplicate", "Duplicate lead"),
     (b"Thanks! Lead rejected: Duplicate", "Duplicate lead"),
     (b"Thank you for your submission. Unfortunately we cannot accept this lead",
      "we cannot accept this lead"),
     (b"We are not accepting leads at this time", "We are not accepting leads at this time"),
     (b"No longer buying leads in TX", "No longer buying leads in TX"),
     (b'{"message": "Thank you, but this lead is a duplicate"}', "Duplicate lead"),
     (b'{"code": 200, "msg": "Not accepting leads at this time"}',
      "Not accepting leads at this time"),
     # it could not take this one
     (b"The lead could not be accepted", "The lead could not be accepted"),
     (b"Your lead could not be processed: invalid phone", "Invalid data"),
     (b"Unable to accept lead: Duplicate", "Duplicate lead"),
     (b"Cannot accept lead: duplicate", "Duplicate lead"),
     (b"No buyers available", "No buyers available")],
)  # fmt: skip
async def test_a_refusal_after_thanks_or_in_words_that_cannot_take_the_lead_is_a_refusal(
    answer: bytes, reason: str
) -> None:
    """Each was billed as a sale: the thanks said nothing, and "not accepting", "could not
    be accepted", "no buyers" held no verdict's word. Thanks alone, or before a sale, and
    what could not be done beside a sale are still sales."""
    content_type = "application/json" if answer.startswith(b"{") else "text/plain"
    outcome = (await deliver(answering(answer, content_type))).outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, reason), outcome
    for taken, reference in ((b"Thank you.", None), (b"Thank you! Lead accepted 123", "123"),
                             (b"Thank you for your submission", None),
                             (b"Not a duplicate - accepting it", None),
                             (b"Lead accepted - unable to send confirmation email", None),
                             (b"Lead accepted. We couldn't process the fax field", None),
                             (b"We couldn't process the fax field, lead accepted", None)):  # fmt: skip
        sale = (await deliver(answering(taken, "text/plain"))).outcome
        assert (sale.kind, sale.reference_id) == (OutcomeKind.SUCCESS, reference), sale


@pytest.mark.parametrize(
    ("answer", "reason"),
    [({"Status": "Failure", "ErrorMessage": "Phone number is invalid"}, "Invalid data"),
     ({"status": "ERROR", "error_msg": "Duplicate phone"}, "Duplicate lead"),
     ({"status": "error", "errorCode": "E102", "errorDescription": "State not licensed"},
      "State not licensed"),
     ({"status": "rejected", "rejectReason": "Age out of range"}, "Age out of range"),
     ({"status": "rejected", "details": "Age out of range"}, "Age out of range"),
     # a list of them under another name than "errors": each was its status's word
     ({"success": False, "errorMessages": ["Duplicate"]}, "Duplicate lead"),
     ({"success": False, "validationErrors": [{"field": "phone", "message": "Phone invalid"}]},
      "Invalid data"),
     ({"result": "failed", "failures": ["Duplicate"]}, "Duplicate lead"),
     ({"status": "rejected", "errorList": ["Age out of range"]}, "Age out of range"),
     ({"accepted": False, "rejectionReasons": ["Duplicate"]}, "Duplicate lead")],
)  # fmt: skip
async def test_a_refusals_reason_is_read_by_the_names_buyers_give_it(
    answer: object, reason: str
) -> None:
    """Each refusal's reason was its status's word ("Failure", "ERROR", "rejected"): billing
    could not count duplicates nor invalid data among them."""
    outcome = (await deliver(answering(orjson.dumps(answer), "application/json"))).outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, reason), outcome


async def test_a_leadexec_sale_keeps_its_lead_identifier_and_price() -> None:
    taken = (b'{"PostID": "9b2f6f4e", "isValidPost": true, "ResponseType": "No_Error", '
             b'"ResponseDetail": "Lead was accepted", "LeadIdentifier": 123456789, '
             b'"PendingQCReview": false, "Price": 12.5, "RedirectURL": ""}')  # fmt: skip
    sale = (await deliver(answering(taken, "application/json"))).outcome
    assert (sale.kind, sale.reference_id, sale.price) == (
        OutcomeKind.SUCCESS, "123456789", Decimal("12.5")), sale  # fmt: skip


async def test_a_leadconduit_sale_keeps_its_lead_id_and_price_in_either_format() -> None:
    taken = b'{"outcome": "success", "lead": {"id": "55c8e255g56r8d5f2e69e1d9"}, "price": 15.00}'
    for answer, content_type in (
        (taken, "application/json"),
        (_LEADCONDUIT_XML.format(outcome="success", reason="", price="15.00").encode(), "text/xml"),
    ):
        sale = (await deliver(answering(answer, content_type))).outcome
        assert (sale.kind, sale.reference_id, sale.price) == (
            OutcomeKind.SUCCESS, "55c8e255g56r8d5f2e69e1d9", Decimal("15.00")), sale  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "reason"),
    [# closing tags in another case than their opening ones, as a buyer's docs show them
     (b"<ExternalPostResponse><Message>Duplicate</Message><ID>a8c75ef7</ID>"
      b"<Code>DUPLICATE</code><Success>false</Success></ExternalPostResponse>",
      "Duplicate lead"),
     # a bare & in a text
     (b'<?xml version="1.0"?><response><status>Rejected</status>'
      b"<reason>Name & phone do not match</reason></response>", "Name & phone do not match")],
)  # fmt: skip
async def test_xml_written_by_hand_is_read(answer: bytes, reason: str) -> None:
    """XML that expat refuses for a slip of the hand (a closing tag's case, an unescaped
    ``&``) was no XML to read: its refusal was billed as a sale."""
    outcome = (await deliver(answering(answer, "text/xml"))).outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, reason), outcome
    pinged = (b"<ExternalPingResponse><Message>success</Message><Price>5.05</Price>"
              b"<ID>a8c75ef7</ID><Code>OK</code><Success>true</Success></ExternalPingResponse>")  # fmt: skip
    ping = await ping_answered(pinged, "text/xml")
    assert (bid_of(ping), ping.outcome.reference_id) == (Decimal("5.05"), "a8c75ef7"), ping.outcome
    kept = b"<r><Status>OK</Status><Note>Lead received & queued</Note><LeadId>L-7</LeadId></r>"
    sale = (await deliver(answering(kept, "text/xml"))).outcome
    assert (sale.kind, sale.reference_id) == (OutcomeKind.SUCCESS, "L-7"), sale
    # a rule's path names the tags as written, which are kept when they need no mending
    rules = [{"when": {"xml": {"path": "Status", "equals": "OK"}}, "outcome": "failure",
              "reason": "Held"}]  # fmt: skip
    held = (await deliver(answering(kept, "text/xml"), response={"rules": rules})).outcome
    assert (held.kind, held.reason) == (OutcomeKind.FAILURE, "Held"), held


async def test_declared_xml_that_cannot_be_read_is_not_billed_as_a_sale() -> None:
    """Cut short, it may have said no: as unreadable JSON, an error that is not retried
    (the recipient may have taken the lead), where it was a sale."""
    cut = b'<?xml version="1.0"?><response><status>Rejected</status><reason>Dupl'
    outcome = (await deliver(answering(cut, "text/xml"))).outcome
    assert (outcome.kind, outcome.reason, outcome.retryable) == (
        OutcomeKind.ERROR, "Unreadable response (HTTP 200: not XML)", False), outcome  # fmt: skip
    assert outcome.category is OutcomeCategory.RECIPIENT_ERROR
    page = b'<?xml version="1.0"?>\n<!DOCTYPE html><html><body><p>Thank you!</body></html>'
    assert (await deliver(answering(page, "text/html"))).outcome.kind is OutcomeKind.SUCCESS


async def test_a_sales_payout_is_its_price() -> None:
    """ClickDealer's answer names what the buyer pays ``Payout``: the sale was billed at
    nothing said."""
    taken = {"Result": "Success", "LeadId": "9f57b396", "Payout": 2.25, "Message": "Lead accepted"}
    sale = (await deliver(answering(orjson.dumps(taken), "application/json"))).outcome
    assert (sale.kind, sale.reference_id, sale.price) == (
        OutcomeKind.SUCCESS, "9f57b396", Decimal("2.25")), sale  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "reason", "category"),
    [# a mutation's payload that refused the input: Shopify's userErrors, Saleor's errors
     ({"data": {"leadCreate": {"lead": None, "userErrors": [
         {"field": ["email"], "message": "Email has already been taken"}]}}},
      "Duplicate lead", "duplicate"),
     ({"data": {"leadCreate": {"lead": None, "errors": [
         {"field": "zip", "code": "INVALID", "message": "Zip is invalid"}]}}},
      "Invalid data", "invalid_data"),
     ({"data": {"createLead": {"success": False, "message": "Over cap"}}},
      "Cap exceeded", None),
     # the operation failed: its field is null, the reason in the answer's errors
     ({"errors": [{"message": "Lead already exists", "path": ["createLead"]}],
       "data": {"createLead": None}}, "Duplicate lead", "duplicate"),
     # an envelope holding a batch of one
     ({"status": "success", "data": [{"status": "rejected", "reason": "Duplicate"}]},
      "Duplicate lead", "duplicate")],
)  # fmt: skip
async def test_a_graphql_mutations_refusal_is_read_in_its_payload(
    answer: object, reason: str, category: str | None
) -> None:
    """A GraphQL answer holds its operation's result one level below ``data``, under the
    mutation's name: a payload that refused the lead, or a null one beside the answer's
    errors, was billed as a sale."""
    outcome = (await deliver(answering(orjson.dumps(answer), "application/json"))).outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, reason), outcome
    if category is not None:
        assert outcome.category == category


@pytest.mark.parametrize(
    "answer",
    [{"data": {"customerCreate": {"customer": {"id": "gid://crm/Lead/77"}, "userErrors": [],
                                  "clientMutationId": None}}},
     {"data": {"insert_leads_one": {"id": "gid://crm/Lead/77"}}},
     # partly: the mutation's field has data, an error is about another
     {"data": {"createLead": {"id": "gid://crm/Lead/77", "owner": None}},
      "errors": [{"message": "owner: not visible", "path": ["createLead", "owner"]}]},
     {"status": "success", "data": [{"id": "gid://crm/Lead/77", "status": "accepted"}]}],
)  # fmt: skip
async def test_a_graphql_mutations_sale_keeps_the_id_of_what_it_made(answer: object) -> None:
    sale = (await deliver(answering(orjson.dumps(answer), "application/json"))).outcome
    assert (sale.kind, sale.reference_id) == (OutcomeKind.SUCCESS, "gid://crm/Lead/77"), sale


@pytest.mark.parametrize(
    ("answer", "status"),
    [({"errors": [{"message": "Cannot query field 'createLeed' on type 'Mutation'.",
                   "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}]}, 400),  # Apollo
     ({"errors": [{"message": "Syntax Error: Expected Name, found <EOF>.",
                   "locations": [{"line": 1, "column": 30}]}]}, 400),  # graphql-js
     ({"errors": [{"message": "field 'insert_lead' not found in type: 'mutation_root'",
                   "extensions": {"path": "$.selectionSet.insert_lead",
                                  "code": "validation-failed"}}]}, 200)],  # Hasura
)  # fmt: skip
async def test_a_graphql_query_the_recipient_cannot_take_is_a_configuration_refusal(
    answer: object, status: int
) -> None:
    """Our query is the destination's, the same for every lead: a query the server cannot
    parse, or one its schema does not take, opens the circuit and says so, where each lead
    was refused ("Rejected (HTTP 400)") or, in a 200, billed as a sale."""
    outcome = (await deliver(answering(orjson.dumps(answer), "application/json", status))).outcome
    assert outcome.category is OutcomeCategory.AUTH_ERROR, outcome
    assert outcome.reason.startswith("Configuration refused (GraphQL query refused: "), outcome
    assert "check the integration's query" in outcome.reason


@pytest.mark.parametrize(
    ("answer", "status", "reason"),
    [# NestJS's own errors (GoHighLevel's API among them): the validator's messages a list
     ({"statusCode": 400, "message": ["email must be an email"], "error": "Bad Request"},
      400, "Invalid data"),
     ({"statusCode": 422, "message": ["Duplicate contact"], "error": "Unprocessable Entity"},
      422, "Duplicate lead"),
     # words that name nothing known beside a code that does (Salesforce's duplicate rule)
     ([{"message": "Use one of these records?", "errorCode": "DUPLICATES_DETECTED",
        "fields": []}], 400, "Duplicate lead"),
     ({"success": False, "message": "Lead could not be processed",
       "errors": [{"code": "DUPLICATE_LEAD"}]}, 200, "Duplicate lead"),
     # a duplicate in other words: Mailchimp's detail, a buyer's "already been submitted"
     ({"title": "Member Exists", "status": 400, "type": "https://mailchimp.com/developer/",
       "detail": "ada@example.com is already a list member. Use PUT to insert or update."},
      400, "Duplicate lead"),
     ({"Status": "Failure", "Message": "This lead has already been submitted", "LeadID": None},
      200, "Duplicate lead")],
)  # fmt: skip
async def test_a_refusals_reason_is_read_in_a_list_a_code_or_its_duplicate_words(
    answer: object, status: int, reason: str
) -> None:
    """Each reason was the status's phrase ("Bad Request"), the words that name nothing
    ("Use one of these records?") or a refusal of its own instead of a duplicate."""
    outcome = (await deliver(answering(orjson.dumps(answer), "application/json", status))).outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, reason), outcome


async def test_a_code_is_never_the_reason_itself() -> None:
    answer = {"success": False, "errorCode": "E102", "message": "Lead could not be processed"}
    outcome = (await deliver(answering(orjson.dumps(answer), "application/json"))).outcome
    assert outcome.reason == "Lead could not be processed", outcome


def monday_error(message: str, code: str, status_code: int) -> dict[str, object]:
    """An error as monday.com's API (2025-01 and later) documents it."""
    return {"message": message, "locations": [{"line": 2, "column": 3}], "path": ["create_item"],
            "extensions": {"code": code, "error_data": {}, "status_code": status_code}}  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "kind", "reason"),
    [# an application error: a 200, "data": [] and the account's id beside the errors
     ({"data": [], "errors": [monday_error("Column value is invalid", "ColumnValueException", 200)],
       "account_id": 123456}, OutcomeKind.FAILURE, "Invalid data"),
     ({"data": {"create_item": None}, "account_id": 123456,
       "errors": [monday_error("Email already exists", "ColumnValueException", 200)]},
      OutcomeKind.FAILURE, "Duplicate lead"),
     # an error's own status in its extensions: the token's, the complexity budget's
     ({"data": [], "account_id": 123456, "errors": [monday_error(
         "User unauthorized to perform action", "UserUnauthorizedException", 403)]},
      OutcomeKind.ERROR, "Authentication failed (HTTP 403)"),
     ({"data": [], "account_id": 123456, "errors": [monday_error(
         "Complexity budget exhausted", "ComplexityException", 429)]},
      OutcomeKind.ERROR, "Recipient busy (HTTP 429)"),
     # versions 2024-10 and before: the error's code and message at the top
     ({"error_code": "ColumnValueException", "status_code": 200,
       "error_message": "invalid value, please check our API documentation", "error_data": {}},
      OutcomeKind.FAILURE, "Invalid data")],
)  # fmt: skip
async def test_monday_coms_graphql_errors_are_refusals(
    answer: object, kind: OutcomeKind, reason: str
) -> None:
    """monday.com answers every application error with a 200 and its ``account_id`` beside
    the GraphQL errors (``data`` an empty list): each was billed as a sale."""
    outcome = (await deliver(answering(orjson.dumps(answer), "application/json"))).outcome
    assert (outcome.kind, outcome.reason) == (kind, reason), outcome


async def test_monday_coms_created_item_is_a_sale_with_its_id() -> None:
    answer = {"data": {"create_item": {"id": "1234567890"}}, "account_id": 123456}
    sale = (await deliver(answering(orjson.dumps(answer), "application/json"))).outcome
    assert (sale.kind, sale.reference_id) == (OutcomeKind.SUCCESS, "1234567890"), sale
    # a validator's notes name a field's path, not a query's: not read as GraphQL's errors
    noted = {"status": "ok", "id": "R-5", "errors": [{"path": ["fax"], "message": "ignored"}]}
    sale = (await deliver(answering(orjson.dumps(noted), "application/json"))).outcome
    assert (sale.kind, sale.reference_id) == (OutcomeKind.SUCCESS, "R-5"), sale


async def test_a_sale_inside_the_calls_envelope_keeps_its_reference_and_price() -> None:
    taken = {"success": True, "data": {"id": "L-9", "status": "accepted", "price": "7.50"}}
    sale = (await deliver(answering(orjson.dumps(taken), "application/json"))).outcome
    assert (sale.kind, sale.reference_id, sale.price) == (
        OutcomeKind.SUCCESS, "L-9", Decimal("7.50")), sale  # fmt: skip
    # after a yes at the top, a duplicate flag or a list of notes inside is a CRM's note on
    # a lead it took, not a refusal
    for noted in ({"success": True, "lead": {"id": "L-9", "duplicate": True}},
                  {"success": True, "data": {"id": "L-9", "errors": ["phone reformatted"]}},
                  {"status": "ok", "data": {"status": "pending"}}):  # fmt: skip
        sale = (await deliver(answering(orjson.dumps(noted), "application/json"))).outcome
        assert sale.kind is OutcomeKind.SUCCESS, (noted, sale)


async def test_a_sale_encoded_twice_keeps_its_reference_and_its_rules() -> None:
    """What a JSON answer encoded twice holds is the answer, for the reference id and for a
    destination's rules as for the default reading."""
    twice = orjson.dumps(orjson.dumps({"status": "ok", "id": "X-2", "code": 7}).decode())
    sale = (await deliver(answering(twice, "application/json"))).outcome
    assert (sale.kind, sale.reference_id) == (OutcomeKind.SUCCESS, "X-2"), sale
    rules = [{"when": {"json": {"path": "$.code", "equals": 7}}, "outcome": "failure",
              "reason": "Cap exceeded"}]  # fmt: skip
    capped = await deliver(answering(twice, "application/json"), response={"rules": rules})
    assert capped.outcome.reason == "Cap exceeded", capped.outcome
    declared = (
        '<?xml version="1.0" encoding="utf-16"?><r><status>OK</status><lead_id>Z9</lead_id></r>'
    )
    sale = (await deliver(answering(declared.encode(), "application/xml"))).outcome
    assert (sale.kind, sale.reference_id) == (OutcomeKind.SUCCESS, "Z9"), sale


async def test_a_rule_still_reads_a_text_answer_its_own_way() -> None:
    """A recipient whose "Error" means something else says so in a rule."""
    rules = [{"when": {"body_matches": "^Error"}, "outcome": "success"}]
    attempt = await deliver(answering(b"Error: none", "text/plain"), response={"rules": rules})
    assert attempt.outcome.kind is OutcomeKind.SUCCESS, attempt.outcome


async def test_credentials_refused_in_a_200_open_the_circuit_as_a_401_does() -> None:
    """The buyer says "Invalid API key" in a 200: an authentication error, so the
    destination's circuit opens at once (streams/control/circuit.py) instead of every lead
    after it being refused as "Invalid data"."""
    attempt = await deliver(answering(b'{"error": "Invalid API key"}', "application/json"))
    outcome = attempt.outcome
    assert (outcome.kind, outcome.category) == (OutcomeKind.ERROR, OutcomeCategory.AUTH_ERROR)
    assert not outcome.retryable


async def test_a_cloudflare_challenge_in_front_of_the_recipient_is_named() -> None:
    async def challenge(_: Recipient, __: Received) -> web.Response:
        page = "<!DOCTYPE html><html><head><title>Just a moment...</title></head></html>"
        return web.Response(
            text=page, status=403, content_type="text/html", headers={"cf-mitigated": "challenge"}
        )

    attempt = await deliver(Recipient(challenge))
    assert attempt.outcome.reason == "Blocked by the recipient's firewall (Cloudflare challenge)"
    assert attempt.outcome.category is OutcomeCategory.AUTH_ERROR  # its circuit opens at once


async def test_a_refusal_that_quotes_the_lead_does_not_carry_it_into_its_reason() -> None:
    """Reasons are counted, labelled in metrics and shown in every event: a recipient's
    words that quote the lead ("ada@example.com is blacklisted") keep them in raw only."""
    words = {"message": "Email ada@example.com is blacklisted for Lovelace"}
    lead = Lead("L-9", {"id": "L-9", "lead": {"email": "ada@example.com", "last_name": "Lovelace",
                                               "loan_purpose": "refinance"}})  # fmt: skip
    buyer = answering(orjson.dumps(words), "application/json", 400)
    await buyer.start()
    [dest] = parse_destinations(
        {"destinations": [{"id": "buyer", "url": buyer.url(), "mapping": {"email": "email"}}]}
    ).destinations
    sender = HttpSender()
    try:
        attempt = await attempt_delivery(lead, dest, sender)
    finally:
        await sender.close()
        await buyer.stop()
    assert attempt.outcome.reason == "Email **** is blacklisted for ****"
    assert attempt.outcome.raw is not None and "ada@example.com" in attempt.outcome.raw


@pytest.mark.parametrize(
    ("answer", "reference", "captured"),
    [
        (b'{"status": "accepted", "lead_id": 123456789012345678901234}',
         "123456789012345678901234", {}),
        (b'{"id": -18446744073709551617}', "-18446744073709551617", {}),
        (b'{"id": "S-1", "batch": 18446744073709551616}', "S-1",
         {"batch": "18446744073709551616"}),
        # within 64 bits: a number, as before
        (b'{"id": 18446744073709551615}', "18446744073709551615", {}),
        # read another way than straight: in its charset, after PHP's notices, before a
        # free host's script (the last was no answer at all: Python's reader kept the
        # integer, which orjson then refused to write)
        ('{"id": 123456789012345678901234, "ville": "Orléans"}'.encode("latin-1"),
         "123456789012345678901234", {"ville": "Orléans"}),
        (b"<br />\n<b>Notice</b>:  Undefined index: zip in <b>/var/www/post.php</b> on line "
         b'<b>12</b><br />\n{"id": 123456789012345678901234}', "123456789012345678901234",
         {}),
        (b'{"id": 123456789012345678901234}<script src="/ads.js"></script>',
         "123456789012345678901234", {}),
    ],
)  # fmt: skip
async def test_an_integer_past_64_bits_keeps_its_digits(
    answer: bytes, reference: str, captured: dict[str, str]
) -> None:
    """orjson reads an integer past 64 bits as a float: a buyer's 24-digit lead id was no
    reference at all, and captured as ``1.2345678901234569e+23``."""
    latin = b"Orl\xe9ans" in answer
    kind = "application/json; charset=ISO-8859-1" if latin else "application/json"
    outcome = (await deliver(answering(answer, kind))).outcome
    assert (outcome.kind, outcome.reference_id) == (OutcomeKind.SUCCESS, reference), outcome
    assert captured.items() <= outcome.appended.items()


@pytest.mark.parametrize(
    ("answer", "content_type"),
    [(b"OverCap", "text/plain"),
     (b"Lead limit reached", "text/plain"),
     (b"No capacity", "text/plain"),
     (b"We are at capacity", "text/plain"),
     (b"Budget exceeded for today, try tomorrow", "text/plain"),
     (b"BUDGET_EXCEEDED", "text/plain"),
     (b"Rejected: Maximum leads reached for today", "text/plain"),
     (b'{"status": "NO_CAPACITY"}', "application/json"),
     (b'{"code": 0, "message": "Budget exhausted"}', "application/json"),
     (b'{"status": "rejected", "reason": "Buyer capped"}', "application/json"),
     (b"<response><result>Lead limit reached</result></response>", "application/xml"),
     (b"result=budget_exceeded", "application/x-www-form-urlencoded")],
)  # fmt: skip
async def test_a_buyer_full_for_now_is_a_refusal_counted_as_its_cap(
    answer: bytes, content_type: str
) -> None:
    """A buyer at its cap, budget or capacity in words other than "cap reached": each but
    the last two was billed as a sale, and those two were refusals that billing could not
    count as a cap's. Not when the cap is only mentioned beside a sale or in a later clause,
    nor a capacity that had no issue."""
    outcome = (await deliver(answering(answer, content_type))).outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, "Cap exceeded"), outcome
    for taken in (b"Lead accepted. Daily cap: 100", b"Accepted - cap reached after this lead",
                  b"No capacity issues", b"Capital One", b"Rate limit: 100/min",
                  b'{"message": "Lead received, 5 leads left before cap reached"}'):  # fmt: skip
        kind = "application/json" if taken.startswith(b"{") else "text/plain"
        sale = (await deliver(answering(taken, kind))).outcome
        assert sale.kind == OutcomeKind.SUCCESS, (taken, sale)


@pytest.mark.parametrize(
    "answer",
    [b"Rate limit exceeded", b"API rate limit reached", b"Throttled",
     b'{"message": "Rate limit exceeded"}'],
)  # fmt: skip
async def test_a_rate_limit_said_hit_in_a_200_is_retried_as_a_429(answer: bytes) -> None:
    """A 200 whose only words say its rate limit was hit was billed as a sale: the lead
    was never sent again. It is the 429 it means: an error, retried."""
    content_type = "application/json" if answer.startswith(b"{") else "text/plain"
    outcome = (await deliver(answering(answer, content_type))).outcome
    assert (outcome.kind, outcome.reason) == (OutcomeKind.ERROR, "Rate limited"), outcome


@pytest.mark.parametrize(
    ("answer", "reference", "price"),
    [(b"Success: Lead ID 12345", "12345", None),
     (b"Accepted - ref #A-77", "A-77", None),
     (b"Sold - $12.50 - ID 99", "99", Decimal("12.50")),
     (b"Lead sold for $12.50", None, Decimal("12.50")),
     (b"ACCEPTED: 77 @ $12.50", None, Decimal("12.50")),
     (b"Accepted, ID 12345, payout: 9", "12345", Decimal("9"))],
)  # fmt: skip
async def test_a_text_sales_id_and_price_named_in_its_words_are_read(
    answer: bytes, reference: str | None, price: Decimal | None
) -> None:
    """After a yes, an id or price named in words ("Lead ID 12345", "$12.50", "payout: 9")
    was unread: a sale at nothing, its id lost. Not an amount anywhere in its words (a
    cap's), nor an id beside a no."""
    outcome = (await deliver(answering(answer, "text/plain"))).outcome
    assert (outcome.kind, outcome.reference_id, outcome.price) == (
        OutcomeKind.SUCCESS, reference, price
    ), outcome  # fmt: skip
    for said in (b"OK, cap $500/day", b"Accepted, but no ID yet", b"Accepted: ID is valid"):
        sale = (await deliver(answering(said, "text/plain"))).outcome
        assert (sale.reference_id, sale.price) == (None, None), (said, sale)
