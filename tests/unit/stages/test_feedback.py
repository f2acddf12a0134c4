"""Feedback as plain functions: who sent it, what it says, and whether it stands."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from streams.config.feedback import FeedbackConfig
from streams.stages.events import lead_feedback
from streams.stages.feedback import (
    ALREADY_RETURNED,
    NOT_ACCEPTED,
    SALESFORCE_ACK,
    STILL_IN_PROGRESS,
    UNKNOWN_LEAD,
    WINDOW_CLOSED,
    FeedbackError,
    Notice,
    judge,
    read_notice,
    receive_feedback,
    sign,
)

SECRET = "a-secret-for-tests"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDBACK_SECRET", SECRET)


def config(**given: Any) -> FeedbackConfig:
    return FeedbackConfig.model_validate({"secret": "${env:FEEDBACK_SECRET}", **given})


def notice(body: dict[str, Any], **given: Any) -> Notice:
    return read_notice("buyer", config(**given), orjson.dumps(body), NOW)


@pytest.mark.parametrize(
    ("said", "reason"),
    [("Both phone and email invalid", "Bad email"),  # not Fraud's "bot" ("Bottom of the funnel", None), ("Abbott", None),
     ("Minor issue with the address", None), ("Fake name, a bot filled it", "Fraud"),
     ("Customer is a minor", "Underage"), ("Not a working number", "Bad phone"),
     ("DUPE", "Duplicate"), ("Consumer didn't request info", "Did not request"),
     # return lists' own words (each was no reason)
     ("Phone invalid", "Bad phone"), ("Fax tone", "Bad phone"),
     ("Non-working number", "Bad phone"), ("Email undeliverable", "Bad email"),
     ("Never filled out a form", "Did not request"),
     ("Consumer did not submit", "Did not request"), ("Prank", "Fraud"),
     ("Fraudulent info", "Fraud"), ("Out of state", "Outside service area"),
     ("Under age", "Underage"), ("Fax number given for email", None)],
)  # fmt: skip
def test_a_reason_is_known_by_whole_words(said: str, reason: str | None) -> None:
    """Found anywhere in the text, "bot" made "Both phone and email invalid" a Fraud
    return (and "Abbott", "Bottom of the funnel"), "minor" made "Minor issue" Underage."""
    assert config().reason_of(said) == reason


def test_a_notice_reads_kind_reason_amount_and_time_by_their_paths() -> None:
    read = notice(
        {"lead_id": "L1", "kind": "Chargeback", "reason": "Customer says: WRONG NUMBER",
         "amount": 12.5, "at": "2026-11-30T10:00:00Z"}
    )  # fmt: skip
    assert (read.lead_id, read.kind, read.reason) == ("L1", "returned", "Bad phone")
    assert read.raw_reason == "Customer says: WRONG NUMBER" and read.amount == "12.5"
    assert read.at_ms == int(datetime(2026, 11, 30, 10, tzinfo=UTC).timestamp() * 1000)
    assert read.received_at_ms == int(NOW.timestamp() * 1000)
    own = notice(
        {"ref": "R-9", "what": "booked", "why": "Lives on Mars"},
        lead_id=None, reference_id="$.ref", kind="$.what", reason="$.why",
        kinds={"converted": ["booked"]}, reasons={"Out of this world": ["mars"]},
    )  # fmt: skip
    assert (own.lead_id, own.reference_id, own.kind, own.reason) == (
        None, "R-9", "converted", "Out of this world"
    )  # fmt: skip
    status = notice({"lead_id": "L1", "kind": "Appointment set"})
    assert (status.kind, status.status_text, status.reason) == ("status", "Appointment set", "")


def test_a_reference_past_64_bits_finds_its_lead_by_its_digits() -> None:
    """A recipient's own id sent as a JSON number past 64 bits was read as a float
    (``1.2345678901234569e+23``) and matched no lead."""
    body = b'{"reference_id": 123456789012345678901234, "kind": "converted"}'
    read = read_notice("buyer", config(lead_id=None, reference_id="$.reference_id"), body, NOW)
    assert read.reference_id == "123456789012345678901234"


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"kind": "return"}, "lead_id", "nothing at $.lead_id"),
        ({"lead_id": "L1"}, "kind", "nothing at $.kind"),
        ({"lead_id": {"x": 1}, "kind": "return"}, "lead_id", "is not a string or number"),
        ({"lead_id": "L1", "kind": "return", "amount": "lots"}, "amount", "is not a number"),
        ({"lead_id": "L1", "kind": "return", "amount": "1e12"}, "amount", "up to 9999999999"),
        ({"lead_id": "L1", "kind": "return", "at": "yesterday"}, "at", "is not a time"),
        ({"lead_id": "L1", "kind": "return", "at": "9" * 30}, "at", "between 1970 and 9999"),
    ],
)
def test_what_cannot_be_read_names_the_field(body: Any, field: str, reason: str) -> None:
    with pytest.raises(FeedbackError) as caught:
        notice(body)
    assert caught.value.field == field and reason in caught.value.reason


def test_a_block_must_say_how_a_notice_names_its_lead() -> None:
    with pytest.raises(ValidationError, match="give lead_id or reference_id"):
        config(lead_id=None)
    with pytest.raises(ValidationError, match="kind: JSON path"):
        config(kind="$[")
    with pytest.raises(ValidationError, match="credentials must be a reference"):
        FeedbackConfig.model_validate({"secret": "plain-text"})


def test_the_endpoint_answers_for_each_case() -> None:
    body = orjson.dumps({"lead_id": "L1", "kind": "return"})
    signed = {"X-Courier-Signature": sign(SECRET, body)}
    ok = receive_feedback("buyer", config(), signed, len(body), body, NOW)
    assert ok.status == 202 and ok.notices and ok.notices[0].kind == "returned"
    assert ok.answer == {"accepted": True, "event_id": ok.notices[0].event_id, "kind": "returned"}
    assert receive_feedback("buyer", None, signed, len(body), body).status == 404
    assert receive_feedback("buyer", config(), {}, len(body), body).status == 401
    tampered = body.replace(b"L1", b"L2")
    assert receive_feedback("buyer", config(), signed, None, tampered).status == 401
    assert receive_feedback("buyer", config(), signed, 10**9, b"").status == 413
    token = {"Authorization": f"Bearer {SECRET}"}
    assert receive_feedback("buyer", config(auth="token"), token, None, body).status == 202
    bad = receive_feedback("buyer", config(), {"X-Courier-Signature": sign(SECRET, b"[")}, 1, b"[")
    assert (bad.status, bad.answer["field"]) == (400, "body")


def test_a_postback_is_read_from_its_urls_query() -> None:
    """Affiliate and lead platforms send a conversion or a return as a GET to a url with
    their macros filled in, with nowhere to put a signature but the url: it was refused
    and never counted."""
    by_url = config(auth="query_token", token_parameter="key", amount="$.payout")
    query = {"key": SECRET, "lead_id": "L1", "kind": "Sale", "payout": "45.00"}
    ok = receive_feedback("buyer", by_url, {}, 0, b"", NOW, query=query, postback=True)
    assert ok.status == 202 and ok.notices, ok.answer
    assert (ok.notices[0].lead_id, ok.notices[0].kind, ok.notices[0].amount) == (
        "L1",
        "converted",
        "45.00",
    )
    refused = receive_feedback(
        "buyer", by_url, {}, 0, b"", NOW, query={**query, "key": "guess"}, postback=True
    )
    assert refused.answer == {
        "error": "not signed by this destination's recipient (the url's key parameter)"
    }
    assert refused.status == 401
    missing = receive_feedback(
        "buyer", by_url, {}, 0, b"", NOW, query={"key": SECRET, "kind": "Sale"}, postback=True
    )
    assert (missing.status, missing.answer["field"]) == (400, "lead_id")
    # Mailchimp checks a webhook's url with a bare GET before it saves the webhook: it was
    # answered 400 (no lead_id), and the webhook could not be set up
    check = receive_feedback("buyer", by_url, {}, 0, b"", NOW, query={"key": SECRET}, postback=True)
    assert (check.status, check.answer, check.notices) == (
        200, {"ok": True, "destination": "buyer"}, ()
    )  # fmt: skip
    unsigned = receive_feedback("buyer", by_url, {}, 0, b"", NOW, query={}, postback=True)
    assert unsigned.status == 401
    # a bearer token in its header holds for a postback too; an HMAC has no body to sign
    token = {"Authorization": f"Bearer {SECRET}"}
    ok = receive_feedback(
        "buyer", config(auth="token"), token, 0, b"", NOW, query=query, postback=True
    )
    assert ok.status == 202
    assert (
        receive_feedback("buyer", config(), {}, 0, b"", NOW, query=query, postback=True).status
        == 401
    )
    big = {**query, "note": "x" * 70_000}
    assert (
        receive_feedback("buyer", by_url, {}, 0, b"", NOW, query=big, postback=True).status == 413
    )
    # a POST may carry the url's token too: its body is the notice
    body = orjson.dumps({"lead_id": "L1", "kind": "return"})
    posted = receive_feedback("buyer", by_url, {}, len(body), body, NOW, query={"key": SECRET})
    assert posted.status == 202 and posted.notices
    assert posted.notices[0].kind == "returned"


@pytest.mark.parametrize(
    ("word", "kind"),
    [("approved", "converted"), ("Approved", "converted"), ("reversed", "returned"),
     ("Reversal", "returned"), ("refunded", "returned"), ("pending", "status")],
)  # fmt: skip
def test_an_affiliate_postbacks_words_are_its_kinds(word: str, kind: str) -> None:
    """Affiliate platforms' postbacks say a conversion is "approved" and a taken-back one
    "reversed": each was a ``status`` that credited nothing and counted no conversion."""
    assert notice({"lead_id": "L1", "kind": word}).kind == kind


@pytest.mark.parametrize(
    ("word", "kind"),
    [("Lead Returned", "returned"), ("lead_returned", "returned"),
     ("Returned - Bad Phone", "returned"), ("RETURNED|fax", "returned"),
     ("Returned (duplicate)", "returned"), ("Return Approved", "returned"),
     ("charge_back", "returned"), ("Chargeback processed", "returned"),
     ("closed_won", "converted"), ("Closed - Won", "converted"),
     ("not_qualified", "disqualified"),
     # a return refused or only asked for credits nothing
     ("Return Denied", "status"), ("Return Rejected", "status"), ("Return Request", "status"),
     ("Lead Status Updated", "status")],
)  # fmt: skip
def test_a_kind_written_in_words_with_its_lead_or_its_reason_is_that_kind(
    word: str, kind: str
) -> None:
    """Kinds were found only as written: "Lead Returned", "closed_won" or "Returned - Bad
    Phone" were a ``status``, a return that never credited its sale."""
    assert notice({"lead_id": "L1", "kind": word}).kind == kind


def test_a_signed_form_is_read_as_json_is() -> None:
    """Many buyers' return postbacks are forms (``lead_id=…&status=returned``): each was
    refused "not JSON" and the return never credited the sale."""
    body = b"lead_id=L1&kind=Returned&reason=Wrong+number&amount=12.50"
    signed = {"X-Courier-Signature": sign(SECRET, body)}
    ok = receive_feedback("buyer", config(), signed, len(body), body, NOW)
    assert ok.status == 202 and ok.notices, ok.answer
    [read] = ok.notices
    assert (read.lead_id, read.kind, read.reason, read.amount) == (
        "L1", "returned", "Bad phone", "12.50")  # fmt: skip
    for unreadable in (b"lead_id L1", b"\xff\xfe=1", b"a=1&" * 101):
        bad = receive_feedback("buyer", config(), {"X-Courier-Signature": sign(SECRET, unreadable)},
                               None, unreadable, NOW)  # fmt: skip
        assert (bad.status, bad.answer["field"]) == (400, "body"), unreadable


def spellings(secret: str, body: bytes) -> list[str]:
    """One HMAC-SHA256 of ``body`` as senders write it in their signature headers."""
    mac = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    b64 = base64.b64encode(mac).decode()
    return [f"sha256={mac.hex()}", mac.hex(), mac.hex().upper(), f"SHA256={mac.hex()}", b64,
            f"sha256={b64}", base64.urlsafe_b64encode(mac).decode().rstrip("=")]  # fmt: skip


def test_a_signature_is_the_bodys_hmac_in_hex_or_base64() -> None:
    """Senders spell the same HMAC differently (``sha256=<hex>`` ours, GitHub's and
    Meta's; bare hex; Shopify's bare base64): all but ours were refused 401, every notice
    of a destination whose recipient signs its own way lost."""
    body = orjson.dumps({"lead_id": "L1", "kind": "return"})
    their_own = config(signature_header="X-Shopify-Hmac-Sha256")
    for spelled in spellings(SECRET, body):
        taken = receive_feedback("buyer", their_own, {"X-Shopify-Hmac-Sha256": spelled}, None, body)
        assert taken.status == 202, spelled
    for wrong in [*spellings("another-secret", body), "sha256=", "", "zz" * 32, "%%%", "sha256"]:
        refused = receive_feedback("buyer", their_own, {"X-Shopify-Hmac-Sha256": wrong}, None, body)
        assert refused.status == 401, wrong


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_a_recipient_with_a_user_and_password_signs_in_by_basic_auth() -> None:
    """Pipedrive's webhooks (``http_auth_user``, ``http_auth_password``), like many
    senders, can only send a user and a password: no ``auth`` took them, so none of
    their notices could be received."""
    by_password = config(auth="basic", username="pipedrive")
    body = orjson.dumps({"lead_id": "L1", "kind": "won"})
    ok = receive_feedback("buyer", by_password, basic("pipedrive", SECRET), None, body, NOW)
    assert ok.status == 202 and ok.notices[0].kind == "converted", ok.answer
    refused = [
        basic("pipedrive", "guess"), basic("someone", SECRET), basic("pipedrive", SECRET + "x"),
        {"Authorization": "Basic " + base64.b64encode(f"pipedrive{SECRET}".encode()).decode()},
        {"Authorization": "Basic not base64!"}, {"Authorization": f"Bearer {SECRET}"}, {},
    ]  # fmt: skip
    for headers in refused:
        answer = receive_feedback("buyer", by_password, headers, None, body, NOW)
        assert answer.status == 401, headers
    assert answer.answer == {"error": "not signed by this destination's recipient (Authorization)"}
    with pytest.raises(ValidationError, match="username: give it with auth: basic"):
        config(auth="basic")
    with pytest.raises(ValidationError, match="username: give it with auth: basic"):
        config(username="pipedrive")


def test_a_recipient_that_sends_a_key_in_a_header_of_its_choosing() -> None:
    """HubSpot's workflow webhooks, Zapier and most lead platforms can add one header of
    the user's choosing: only "Authorization: Bearer" was taken, so the rest could not
    send feedback at all."""
    body = orjson.dumps({"lead_id": "L1", "kind": "customer"})
    by_key = config(auth="api_key", key_header="X-Courier-Key")
    ok = receive_feedback("buyer", by_key, {"X-Courier-Key": SECRET}, None, body, NOW)
    assert ok.status == 202, ok.answer
    for headers in ({"X-Courier-Key": "guess"}, {"X-Api-Key": SECRET}, {}):
        refused = receive_feedback("buyer", by_key, headers, None, body, NOW)
        assert refused.answer == {
            "error": "not signed by this destination's recipient (X-Courier-Key)"
        }, headers
    assert config(auth="api_key").key_header == "X-Api-Key"


HUBSPOT_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"  # its guide's examples' client secret
HUBSPOT_BODY = (
    b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
    b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,'
    b'"changeSource":"CRM","changeFlag":"NEW","appId":54321}]'
)


def hubspot_v3(method: str, url: str, body: bytes, at_ms: int) -> dict[str, str]:
    signed = f"{method}{url}".encode() + body + str(at_ms).encode()
    mac = hmac.new(HUBSPOT_SECRET.encode(), signed, hashlib.sha256).digest()
    return {"X-HubSpot-Signature-v3": base64.b64encode(mac).decode(),
            "X-HubSpot-Request-Timestamp": str(at_ms)}  # fmt: skip


def test_hubspots_own_signatures_as_its_guide_computes_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HubSpot signs its webhooks its own way (v1: SHA-256 of the client secret and the
    body; v3: an HMAC with the method, url and a timestamp): no ``auth`` could check them.
    The v1 signature is its guide's own example."""
    monkeypatch.setenv("HUBSPOT_SECRET", HUBSPOT_SECRET)
    block = {"secret": "${env:HUBSPOT_SECRET}", "auth": "hubspot", "lead_id": None,
             "reference_id": "$.objectId", "kind": "$.subscriptionType", "at": "$.occurredAt"}  # fmt: skip
    v1 = {"X-HubSpot-Signature-Version": "v1",
          "X-HubSpot-Signature": "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"}  # fmt: skip
    webhooks = FeedbackConfig.model_validate(block)
    ok = receive_feedback("hubspot", webhooks, v1, None, HUBSPOT_BODY, NOW)
    assert ok.status == 202 and [n.reference_id for n in ok.notices] == ["123"], ok.answer
    tampered = HUBSPOT_BODY.replace(b'"objectId":123', b'"objectId":124')
    refused = receive_feedback("hubspot", webhooks, v1, None, tampered, NOW)
    assert refused.answer == {"error": "not signed by this destination's recipient (X-HubSpot-Signature)"}  # fmt: skip
    url = "https://www.example.com/webhook_uri"
    at_url = FeedbackConfig.model_validate({**block, "public_url": url})
    # v3: method, url (with its query, the characters HubSpot decodes decoded), body, time
    now_ms = int(NOW.timestamp() * 1000)
    query = "portal=62515&at=a%3Ab%2Fc"
    v3 = hubspot_v3("POST", f"{url}?portal=62515&at=a:b/c", HUBSPOT_BODY, now_ms - 60_000)
    ok = receive_feedback("hubspot", at_url, v3, None, HUBSPOT_BODY, NOW, raw_query=query)
    assert ok.status == 202, ok.answer
    for headers, body, asked in (
        (v3, tampered, query),
        (v3, HUBSPOT_BODY, "portal=62516&at=a%3Ab%2Fc"),
        (hubspot_v3("POST", url, HUBSPOT_BODY, now_ms - 301_000), HUBSPOT_BODY, ""),  # replayed
        ({**v3, "X-HubSpot-Request-Timestamp": "soon"}, HUBSPOT_BODY, query),
        # Latin-1's "¹" passed str.isdigit and int() refused it: an exception, not a 401
        ({**v3, "X-HubSpot-Request-Timestamp": "¹"}, HUBSPOT_BODY, query),
        ({**v3, **v1}, tampered, query),  # v3 decides when the url is known
        (v1, HUBSPOT_BODY, query),  # v1 does not expire: not taken once v3 can be checked
    ):
        refused = receive_feedback("hubspot", at_url, headers, None, body, NOW, raw_query=asked)
        assert refused.status == 401 and "X-HubSpot-Signature-v3" in refused.answer["error"]


HUBSPOT = {"lead_id": None, "reference_id": "$.objectId", "kind": "$.propertyValue",
           "at": "$.occurredAt", "kinds": {"converted": ["customer"]}}  # fmt: skip


def test_a_list_of_notices_is_taken_each_on_its_own() -> None:
    """HubSpot's webhooks send their events in a list (up to 100 a request), each timed in
    milliseconds: a list was refused "not a JSON object" and every event in it lost (a
    contact become a customer never counted). What cannot be read in it is named by its
    index; the rest are taken, since the sender would send them all again if refused."""
    events = [
        {"objectId": 1246965, "propertyName": "lifecyclestage", "propertyValue": "customer",
         "subscriptionType": "contact.propertyChange", "occurredAt": 1462216307945},
        {"objectId": 1246978, "propertyName": "lifecyclestage", "propertyValue": "opportunity",
         "subscriptionType": "contact.propertyChange", "occurredAt": 1462216307946},
        {"propertyName": "lifecyclestage", "propertyValue": "customer"},
        "not an event",
    ]  # fmt: skip
    body = orjson.dumps(events)
    signed = {"X-Courier-Signature": sign(SECRET, body)}
    taken = receive_feedback("buyer", config(**HUBSPOT), signed, None, body, NOW)
    assert taken.status == 202, taken.answer
    assert [(n.reference_id, n.kind, n.status_text, n.at_ms) for n in taken.notices] == [
        ("1246965", "converted", None, 1462216307945),
        ("1246978", "status", "opportunity", 1462216307946),
    ]
    assert taken.answer == {
        "accepted": True,
        "notices": [{"index": 0, "event_id": taken.notices[0].event_id, "kind": "converted"},
                    {"index": 1, "event_id": taken.notices[1].event_id, "kind": "status"}],
        "refused": [{"index": 2, "error": "nothing at $.objectId", "field": "lead_id"},
                    {"index": 3, "error": "not an object (fields by name)", "field": "body"}],
    }  # fmt: skip
    # Kept whole for the dead-letter topic: the sender, answered 202, sends none again.
    assert [(u.index, u.field, orjson.loads(u.document)) for u in taken.unread] == [
        (2, "lead_id", events[2]), (3, "body", "not an event")
    ]  # fmt: skip
    for unreadable, said in (
        (events[2:], "no notice in the list could be read"),
        ([], "an empty list"),
        (events[:1] * 101, "a list of more than 100 notices"),
    ):
        body = orjson.dumps(unreadable)
        signed = {"X-Courier-Signature": sign(SECRET, body)}
        refused = receive_feedback("buyer", config(**HUBSPOT), signed, None, body, NOW)
        assert (refused.status, refused.answer["error"], refused.notices) == (400, said, ())


def outbound_message(*leads: tuple[str, str]) -> bytes:
    """A Salesforce outbound message (SOAP, its outbound messaging WSDL) about Lead records
    (their ``Id`` and ``Status``), as a Flow or a workflow rule sends it."""
    notifications = "".join(
        f"""<Notification><Id>04l5g0000{n:09d}AAA</Id>
        <sObject xsi:type="sf:Lead" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
        <sf:Id>{lead_id}</sf:Id><sf:Status>{status}</sf:Status></sObject></Notification>"""
        for n, (lead_id, status) in enumerate(leads)
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>00D5g000000ABCDEAA</OrganizationId>
   <ActionId>04k5g000000ABCDAAA</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/62.0/00D5g</EnterpriseUrl>
   <PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/62.0/00D5g</PartnerUrl>
   {notifications}
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>""".encode()


SALESFORCE = {"auth": "query_token", "notices": "$.Envelope.Body.notifications.Notification",
              "lead_id": None, "reference_id": "$.sObject.Id", "kind": "$.sObject.Status",
              "kinds": {"converted": ["Closed - Converted"],
                        "disqualified": ["Closed - Not Converted"]}}  # fmt: skip


def test_a_salesforce_outbound_message_is_read_and_acknowledged() -> None:
    """Salesforce's no-code way to tell that a lead converted is an outbound message: SOAP,
    up to 100 notifications, resent for 24 hours until acknowledged. XML was refused "not
    JSON nor a form": the conversion never counted, and the message was resent all day."""
    by_url, token = config(**SALESFORCE), {"token": SECRET}
    body = outbound_message(("00Q5g00000ABCDeEAF", "Closed - Converted"),
                            ("00Q5g00000ABCDfEAF", "Working - Contacted"))  # fmt: skip
    got = receive_feedback("buyer", by_url, {}, None, body, NOW, query=token)
    assert (got.status, got.xml) == (200, SALESFORCE_ACK), got.answer
    assert [(n.reference_id, n.kind, n.status_text) for n in got.notices] == [
        ("00Q5g00000ABCDeEAF", "converted", None),
        ("00Q5g00000ABCDfEAF", "status", "Working - Contacted"),
    ]
    one = receive_feedback("buyer", by_url, {}, None, outbound_message(("00Q1", "Closed - Not Converted")), NOW, query=token)  # fmt: skip
    assert [(n.reference_id, n.kind) for n in one.notices] == [("00Q1", "disqualified")]
    bombs = [
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><l>&b;</l>',
        b'<!DOCTYPE l [<!ENTITY x SYSTEM "file:///etc/passwd">]><l>&x;</l>',
        b"<notifications><Notification>",
    ]
    for unreadable in bombs:
        refused = receive_feedback("buyer", by_url, {}, None, unreadable, NOW, query=token)
        assert (refused.status, refused.answer["field"], refused.xml) == (400, "body", None)
    elsewhere = receive_feedback("buyer", by_url, {}, None, b"<a><b>1</b></a>", NOW, query=token)
    assert (elsewhere.status, elsewhere.answer) == (
        400, {"error": "nothing at $.Envelope.Body.notifications.Notification", "field": "notices"}
    )  # fmt: skip


def test_a_salesforce_outbound_message_from_another_org_is_refused() -> None:
    """With ``organization_id``, a message must name that org (Salesforce's guide asks a
    listener to check it): one from another org, through a leaked url and its token, was
    taken as the destination's own."""
    body = outbound_message(("00Q5g00000ABCDeEAF", "Closed - Converted"))
    token = {"token": SECRET}
    for ours in ("00D5g000000ABCDEAA", "00D5g000000ABCD"):  # its 18 characters or 15
        by_org = config(**SALESFORCE, organization_id=ours)
        got = receive_feedback("buyer", by_org, {}, None, body, NOW, query=token)
        assert (got.status, got.xml) == (200, SALESFORCE_ACK), got.answer
    by_org = config(**SALESFORCE, organization_id="00D5g000000WXYZEAA")
    for theirs in (
        body,
        outbound_message().replace(b"<OrganizationId>00D5g000000ABCDEAA</OrganizationId>", b""),
    ):
        refused = receive_feedback("buyer", by_org, {}, None, theirs, NOW, query=token)
        assert (refused.status, refused.answer, refused.notices) == (
            403, {"error": "not from this destination's Salesforce org"}, ()
        )  # fmt: skip
    with pytest.raises(ValidationError, match="organization_id"):
        config(**SALESFORCE, organization_id="acme")


def test_notices_wrapped_in_an_object_are_found_by_their_path() -> None:
    body = orjson.dumps({"account": 7, "events": [{"lead_id": "L1", "kind": "won"},
                                                   {"lead_id": "L2", "kind": "return"}]})  # fmt: skip
    signed = {"X-Courier-Signature": sign(SECRET, body)}
    got = receive_feedback("buyer", config(notices="$.events"), signed, None, body, NOW)
    assert got.status == 202 and got.xml is None
    assert [(n.lead_id, n.kind) for n in got.notices] == [("L1", "converted"), ("L2", "returned")]


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
        lambda inner: st.one_of(
            st.lists(inner, max_size=5),
            st.dictionaries(
                st.sampled_from(["lead_id", "kind", "at", "amount", "reason", "objectId"]),
                inner,
                max_size=5,
            ),
        ),
        max_leaves=30,
    )
)
def test_anything_signed_is_taken_or_refused_naming_why(doc: Any) -> None:
    """Whatever a signed request holds (objects, lists, lists of lists), the endpoint
    answers: 202 with the notices it took, or 400 saying why."""
    body = json.dumps(doc).encode()
    signed = {"X-Courier-Signature": sign(SECRET, body)}
    got = receive_feedback("buyer", config(), signed, None, body, NOW)
    assert got.status in (202, 400, 413), got.answer
    assert bool(got.notices) == (got.status == 202) and (got.status == 202 or got.answer["error"])


@pytest.mark.parametrize("at", ["¹", "٣٤٥", "\uff11\uff12\uff13", "²⁰²⁶", "."])
def test_a_time_in_digits_other_than_ascii_is_refused_naming_it(at: str) -> None:
    """ "¹" passed ``str.isdigit`` and ``Decimal`` refused it: an exception, not a 400 (and a
    poll's answer so written would have raised in the poller); "٣٤٥" was 345 seconds."""
    body = orjson.dumps({"lead_id": "L1", "kind": "returned", "at": at})
    signed = {"X-Courier-Signature": sign(SECRET, body)}
    got = receive_feedback("buyer", config(), signed, None, body, NOW)
    assert (got.status, got.answer["field"]) == (400, "at"), got.answer


@pytest.mark.parametrize(
    "at",
    [
        "Mon, 30 Nov 2026 10:00:00 +0000",
        "Mon, 30 Nov 2026 10:00:00 GMT",
        "30 Nov 2026 05:00:00 -0500",
        "Mon, 30 Nov 2026 10:00:00",
    ],
)
def test_a_time_as_rfc_2822_writes_it_is_read(at: str) -> None:
    """PHP's ``date('r')`` and HTTP dates, as postbacks' time macros write them, were
    refused ("not a time")."""
    read = notice({"lead_id": "L1", "kind": "returned", "at": at})
    assert read.at_ms == int(datetime(2026, 11, 30, 10, tzinfo=UTC).timestamp() * 1000)


XML_PARTS = ["<a>", "</a>", "<Notification>", "</Notification>", "<sf:Id>", "</sf:Id>",
             '<b id="1"/>', "<!DOCTYPE a [<!ENTITY e 'x'>]>", "&e;", "&amp;", "<![CDATA[x]]>",
             "<?xml version='1.0'?>", "text", "<", ">", '"', "\x00", "é"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(XML_PARTS), max_size=30), st.booleans())
def test_anything_that_looks_like_xml_is_taken_or_refused_naming_why(
    parts: list[str], listed: bool
) -> None:
    body = "".join(parts).encode()
    paths = {"notices": "$..Notification", "lead_id": "$.Id"} if listed else {}
    signed = {"X-Courier-Signature": sign(SECRET, body)}
    got = receive_feedback("buyer", config(**paths), signed, None, body, NOW)
    assert got.status in (200, 202, 400), got.answer
    assert bool(got.notices) == (got.status != 400) and (got.notices or got.answer["error"])


@pytest.mark.parametrize(
    ("given", "ms"),
    [(1462216307, 1462216307000), ("1462216307.5", 1462216307500),
     (1462216307945, 1462216307945), (99_999_999_999, 99_999_999_999_000)],
)  # fmt: skip
def test_a_time_in_epoch_seconds_or_milliseconds(given: Any, ms: int) -> None:
    """Epoch milliseconds (HubSpot's ``occurredAt``, JavaScript's ``Date.now()``) were read
    as seconds, past the year 9999: refused "at"."""
    assert notice({"lead_id": "L1", "kind": "return", "at": given}).at_ms == ms


def sale(at: datetime, price: str | None = "20.00") -> dict[str, Any]:
    return {"finished_at": at.isoformat(), "price": price}


def state(**accepted: dict[str, Any]) -> dict[str, Any]:
    return {"accepted": accepted, "finished": 1.0}


def at(moment: datetime, kind: str = "returned", destination: str = "buyer") -> Notice:
    ms = int(moment.timestamp() * 1000)
    return Notice(destination, kind, lead_id="L1", at_ms=ms, received_at_ms=ms)


def test_a_return_stands_once_inside_its_window_and_credits_the_price() -> None:
    sold = NOW - timedelta(days=2)
    verdict = judge(at(NOW), state(buyer=sale(sold)), 7)
    assert (verdict.accepted, verdict.credit) == (True, Decimal("20.00"))
    assert verdict.sold_at_ms == int(sold.timestamp() * 1000)
    assert judge(at(NOW), None, 7).refusal == UNKNOWN_LEAD
    assert judge(at(NOW), state(other=sale(sold)), 7).refusal == NOT_ACCEPTED
    assert judge(at(sold + timedelta(days=7, seconds=1)), state(buyer=sale(sold)), 7).refusal == (
        WINDOW_CLOSED
    )
    returned = {**state(buyer=sale(sold)), "returned": {"buyer": 1}}
    assert judge(at(NOW), returned, 7).refusal == ALREADY_RETURNED
    waiting = {**state(buyer=sale(sold)), "finished": None}
    assert judge(at(NOW), waiting, 7).refusal == STILL_IN_PROGRESS
    converted = judge(at(NOW + timedelta(days=30), "converted"), state(buyer=sale(sold)), 7)
    assert converted.accepted and converted.credit is None  # no window for good news


def test_the_same_notice_twice_has_the_same_event_id() -> None:
    first, second = at(NOW), at(NOW)
    assert first.event_id == second.event_id != at(NOW, "converted").event_id
    record = lead_feedback(first, judge(first, state(buyer=sale(NOW)), 7))
    assert record["event_id"] == first.event_id and record["credit"] == Decimal("20.0000")


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.dictionaries(
            st.sampled_from(["destination_id", "kind", "lead_id", "reference_id", "amount",
                             "at_ms", "received_at_ms", "reason", "other"]),
            st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
                      st.lists(st.integers(), max_size=2)),
        ).map(lambda doc: json.dumps(doc).encode()),
    )
)  # fmt: skip
def test_any_record_on_the_feedback_topic_is_a_notice_or_a_named_error(data: bytes) -> None:
    try:
        read = Notice.from_json(data)
    except FeedbackError as exc:
        assert exc.field and exc.reason
        return
    record = lead_feedback(read, judge(read, None, 7))  # and it can be written
    assert record["status"] == "refused"


def test_an_upstream_notice_is_kept_to_its_limits() -> None:
    doc = {"destination_id": "b", "kind": "status", "lead_id": "L" * 500, "reason": "x" * 10_000}
    read = Notice.from_json(orjson.dumps(doc))
    assert read.lead_id is not None and len(read.lead_id) == 200 and len(read.reason) == 500


def test_an_upstream_notice_without_times_was_received_when_its_record_was_written() -> None:
    doc = {"destination_id": "b", "kind": "returned", "lead_id": "L-1"}
    read = Notice.from_json(orjson.dumps(doc), received_at_ms=1_796_000_000_000)
    assert (read.received_at_ms, read.at_ms) == (1_796_000_000_000, 1_796_000_000_000)
    said = Notice.from_json(orjson.dumps({**doc, "at_ms": 5, "received_at_ms": 7}), 9)
    assert (said.received_at_ms, said.at_ms) == (7, 5)  # its own times stand
