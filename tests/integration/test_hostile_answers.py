"""Whatever a recipient answers, the lead gets its outcome: hostile answers from a real
server, through the stages and through a real worker.

A recipient is not ours: its body may be any bytes in any charset, its headers anything
(a Retry-After of "soon", an X-RateLimit-Reset of 30 digits, a charset nobody knows), its
verdict in JSON, XML, a form, a line of text or nothing. Reading an answer must never
raise for the lead, never end the worker, and always say one outcome with a bounded
reason that an Avro event can carry.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Any

import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.avro import EventEncoder
from streams.config import parse_destinations
from streams.handlers import retirement_said
from streams.model import Lead, OutcomeKind
from streams.stages.attempt import attempt_delivery
from streams.stages.delivery import HttpSender
from streams.stages.events import delivery_event
from streams.stages.routing import bid_of, bid_valid_until
from tests.integration.conftest import decode_with_schema_file
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Received, Recipient
from tests.integration.test_hostile_leads import endings, publish_keyed

# Header values a server can send: printable ASCII, no line breaks.
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
VERDICT_WORDS = ["success", "ok", "accepted", "status", "result", "error", "errors", "data",
                 "message", "reason", "id", "lead_id", "price", "detail", "Success", "LeadId",
                 "bid", "bid_id", "expires_at",
                 # the names particular readings look for: GraphQL's, error codes, bids
                 "extensions", "locations", "path", "status_code", "errorCode", "code",
                 "userErrors", "bids", "offers", "bidAmount", "expireInSeconds", "rejectReason",
                 "outcome", "records", "account_id", "error_message", "amount"]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.sampled_from(
        [
            "rejected",
            "false",
            "true",
            "Duplicate",
            "Invalid API key",
            "",
            "none",
            "NaN",
            "1e400",
            "-5",
            "0001-01-01T00:00:00+23:59",
            "9999-12-31T23:59:59-23:59",
        ]
    ),
    st.text(max_size=30),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(VERDICT_WORDS), st.text(max_size=8)), inner, max_size=6
        ),
    ),
    max_leaves=12,
)
TEXT_LINES = st.builds(
    lambda word, sep, rest: f"{word}{sep}{rest}",
    st.sampled_from(["REJECTED", "SUCCESS", "Error", "FAILURE", "OK", "Declined", "Thanks"]),
    st.sampled_from([": ", "|", " - ", " ", ""]),
    st.text(max_size=60),
)
# XML of any shape: envelopes inside envelopes, a lone child, a verdict's leaves.
XML_TAGS = st.sampled_from(
    ["r", "response", "result", "data", "lead", "return", "status", "success", "error",
     "reason", "id", "Price", "string", "bid"]
)  # fmt: skip
XML_ELEMENTS = st.recursive(
    st.builds(
        lambda tag, text: f"<{tag}>{text}</{tag}>",
        XML_TAGS,
        st.one_of(
            st.sampled_from(["rejected", "true", "Duplicate", "12.50", ""]),
            st.text(st.characters(min_codepoint=48, max_codepoint=122), max_size=12),
        ),
    ),
    lambda inner: st.builds(
        lambda tag, children: f"<{tag}>{''.join(children)}</{tag}>",
        XML_TAGS,
        st.lists(inner, min_size=1, max_size=3),
    ),
    max_leaves=8,
)
BODIES = st.one_of(
    XML_ELEMENTS.map(str.encode),
    st.binary(max_size=300),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),  # any size of integer
    # What the lenient reading meets: a Python literal (an endpoint answering str(result)),
    # JSON cut short, JSON followed by a free host's injected script
    JSON_VALUES.map(lambda value: repr(value).encode()),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()[:-1]),
    JSON_VALUES.map(lambda value: json.dumps(value).encode() + b"<script>x()</script>"),
    TEXT_LINES.map(str.encode),
    st.builds(lambda k, v: f"status={k}&reason={v}".encode(), st.text(max_size=10), HEADER_TEXT),
    st.builds(
        lambda tag, text: f"<r><{tag}>{text}</{tag}></r>".encode(),
        st.sampled_from(["status", "success", "error", "lead_id", "Price"]),
        st.text(st.characters(min_codepoint=48, max_codepoint=122), max_size=20),
    ),
    st.just(b"\xef\xbb\xbf" + b'{"success": false, "message": "Lead already exists"}'),
    # A sale's price or a ping's bid of any size: the events' decimal holds 14 digits
    st.builds(
        lambda price, at: json.dumps(
            {"id": "R-1", "price": price, "bid": price, "expires_at": at}
        ).encode(),
        st.one_of(
            st.sampled_from(["1e400", "-0", "123456789012345", 10**20, "9999999999.99999"]),
            st.integers(-(10**20), 10**20),
            st.floats(),
        ),
        st.sampled_from(["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59", "soon"]),
    ),
)
# URLs urllib cannot split (an IPv6 host without its bracket, a port past 65535).
URLS_URLLIB_REFUSES = st.sampled_from(
    ["http://[::1/x", "https://[", "http://]x[/", "https://h.example:99999/v2", "//[::1"]
)
HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "Content-Type": st.one_of(
            st.sampled_from(
                [
                    "application/json",
                    "text/plain",
                    "text/xml",
                    "text/html",
                    "application/x-www-form-urlencoded",
                ]
            ),
            st.builds(lambda cs: f"text/plain; charset={cs}", HEADER_TEXT),
        ),
        "Retry-After": st.one_of(HEADER_TEXT, st.integers(-5, 10**30).map(str)),
        "X-RateLimit-Reset": st.one_of(HEADER_TEXT, st.integers(-5, 10**30).map(str)),
        "RateLimit": HEADER_TEXT,
        "RateLimit-Reset": HEADER_TEXT,
        "X-Squid-Error": HEADER_TEXT,
        "Location": st.one_of(HEADER_TEXT, URLS_URLLIB_REFUSES),
        "Deprecation": st.one_of(
            HEADER_TEXT, st.integers(-(10**30), 10**30).map(lambda n: f"@{n}"), st.just("true")
        ),
        "Sunset": st.one_of(HEADER_TEXT, st.just("Fri, 31 Dec 99999 23:59:59 GMT")),
        "Link": st.one_of(
            HEADER_TEXT, URLS_URLLIB_REFUSES.map(lambda url: f'<{url}>; rel="deprecation"')
        ),
    },
)
STATUSES = st.one_of(
    st.sampled_from([200, 201, 202, 301, 302, 400, 401, 403, 404, 409, 422, 429, 500, 503]),
    st.integers(200, 599),
)
ANSWERS = st.tuples(STATUSES, HEADERS, BODIES)


def answer(status: int, headers: dict[str, str], body: bytes) -> web.Response:
    content_type = headers.pop("Content-Type", "application/octet-stream")
    response = web.Response(status=status, body=body, headers=headers)
    response.headers["Content-Type"] = content_type  # as sent, even a charset nobody knows
    return response


class Answering(Recipient):
    """Answers each lead (by its ``ref``) as told, else every request with ``told``."""

    def __init__(self) -> None:
        super().__init__(self._answer)
        self.answers: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.told: tuple[int, dict[str, str], bytes] = (201, {}, b"{}")

    @staticmethod
    async def _answer(recipient: Recipient, received: Received) -> web.Response:
        assert isinstance(recipient, Answering)
        try:
            ref = str(orjson.loads(received.body).get("ref"))
        except (orjson.JSONDecodeError, AttributeError):
            ref = ""
        status, headers, body = recipient.answers.get(ref, recipient.told)
        return answer(status, dict(headers), body)


@pytest.fixture
async def answering() -> Any:
    server = await Answering().start()
    yield server
    await server.stop()


SECRET = "${env:HOSTILE_ANSWERS_SECRET}"
# Every way an answer is read: the default reading, a destination's rules and captures,
# and each ready integration's own reader (its token or login requests answered alike).
READERS: dict[str, dict[str, Any]] = {
    "json_post": {"mapping": {"ref": "id"}},
    "rules": {
        "mapping": {"ref": "id"},
        "response": {
            "rules": [
                {"when": {"json": {"path": "$.status", "equals": "ok"}}, "outcome": "success"},
                {"when": {"xml": {"path": "status", "equals": "x"}}, "outcome": "failure"},
                {"when": {"body_matches": "(?i)dup"}, "outcome": "failure", "category": "duplicate"},
            ],
            "capture": {"reference_id": {"json": "$.id"}, "price": {"json": "$.price"}},
        },
    },
    "form_post": {"integration": "form_post", "mapping": {"ref": "id"}},
    "get_query": {"integration": "get_query", "mapping": {"ref": "id"}},
    "xml_post": {"integration": "xml_post", "mapping": {"ref": "id"},
                 "settings": {"soap": "1.1", "soap_action": "urn:add"}},
    "hubspot": {"integration": "hubspot", "settings": {"access_token": SECRET}},
    "hubspot_upsert": {"integration": "hubspot",
                       "settings": {"access_token": SECRET, "mode": "upsert"}},
    "pipedrive": {"integration": "pipedrive", "settings": {"api_token": SECRET, "object": "person"}},
    "mailchimp": {"integration": "mailchimp",
                  "settings": {"api_key": "${env:HOSTILE_ANSWERS_MAILCHIMP}", "list_id": "a1b2c3"}},
    "five9": {"integration": "five9",
              "settings": {"username": "u", "password": SECRET, "list_name": "Leads"}},
    "webhook": {"integration": "webhook", "settings": {"secret": "${env:HOSTILE_ANSWERS_WEBHOOK}"}},
    "ping": {"mapping": {"ref": "id"}, "ping": {"url": "{url}", "mapping": {"ref": "id"}}},
}  # fmt: skip
LEAD = Lead(
    "L-1",
    {"id": "L-1", "lead": {"email": "ada@example.com", "first_name": "Ada", "last_name": "L",
                           "phone_1": "+15555550100", "company": "Acme"}},
)  # fmt: skip


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTILE_ANSWERS_SECRET", "s3cret")
    monkeypatch.setenv("HOSTILE_ANSWERS_MAILCHIMP", "0123456789abcdef-us6")
    monkeypatch.setenv("HOSTILE_ANSWERS_WEBHOOK", "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")


@pytest.mark.parametrize("reader", list(READERS))
@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(told=ANSWERS)
async def test_every_answer_is_read_as_one_outcome_an_event_can_carry(
    reader: str,
    told: tuple[int, dict[str, str], bytes],
    answering: Answering,
    sender: HttpSender,
    secrets: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.clear()
    answering.told = told
    fields = orjson.loads(orjson.dumps(READERS[reader]).replace(b"{url}", answering.url().encode()))
    [dest] = parse_destinations(
        {"destinations": [{"id": "buyer", "url": answering.url(), **fields}]}
    ).destinations
    if reader == "ping":  # an auction's ping: its bid and how long it holds
        ping = await attempt_delivery(LEAD, dest.pinged, sender)
        bid_valid_until(ping, 60.0)
        assert 0 < len(delivery_event(replace(ping, phase="ping"))["reason"]) <= 200
        assert bid_of(ping) is None or bid_of(ping).is_finite()  # type: ignore[union-attr]
    attempt = await attempt_delivery(LEAD, dest, sender)
    outcome = attempt.outcome
    assert outcome.kind in (OutcomeKind.SUCCESS, OutcomeKind.FAILURE, OutcomeKind.ERROR), outcome
    assert 0 < len(outcome.reason) <= 200, outcome.reason
    # An integration's reader that raised: caught as "Unreadable response" and logged.
    assert "could not read" not in caplog.text, (reader, told)
    assert outcome.retry_after_s is None or outcome.retry_after_s >= 0
    if outcome.retiring is not None:  # Deprecation, Sunset: said in words and a gauge
        assert retirement_said(outcome.retiring).startswith("the recipient says")
    event = delivery_event(attempt, None, "00000000-0000-0000-0000-000000000001", None)
    encoded = EventEncoder("delivery_event").encode(event)
    assert decode_with_schema_file(encoded, "delivery_event")["reason"] == outcome.reason


def answers_yaml(recipient: Recipient) -> str:
    return f"""
destinations:
  - id: buyer
    url: {recipient.url()}
    retry: {{max_attempts: 1}}
    circuit: {{enabled: false}}
    mapping:
      ref: id
"""


@settings(
    max_examples=1,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(told=st.lists(ANSWERS, min_size=60, max_size=60))
async def test_hostile_answers_through_a_worker_each_end_their_lead_once(
    told: list[tuple[int, dict[str, str], bytes]],
    answering: Answering,
    kafka: KafkaTarget,
    topics: Any,
    start_worker: Any,
) -> None:
    run = uuid.uuid4().hex[:8]
    keys = [f"H-{run}-{n}" for n in range(len(told))]
    answering.answers.update(zip(keys, told, strict=True))
    worker = start_worker(answers_yaml(answering))
    await publish_keyed(
        kafka, topics.leads, [(k, orjson.dumps({"id": k, "lead": {"n": 1}})) for k in keys]
    )
    outcomes, dead = await endings(kafka, topics, set(keys))
    assert all(outcomes[key] == 1 for key in keys), outcomes
    assert not dead
    assert "Traceback" not in worker.log()


@pytest.mark.parametrize("price", ["1e400", "123456789012345", 10**20, "9999999999.99999"])
async def test_a_price_or_bid_an_event_cannot_carry_is_no_price(
    price: object, answering: Answering, sender: HttpSender, secrets: None
) -> None:
    """Found by the fuzz above: a sale priced "1e400" made its event unwritable, and the
    sale an internal error; a bid so large, the auction's."""
    body = json.dumps({"id": "R-1", "price": price, "bid": price}).encode()
    answering.told = (200, {"Content-Type": "application/json"}, body)
    fields = orjson.loads(orjson.dumps(READERS["ping"]).replace(b"{url}", answering.url().encode()))
    [dest] = parse_destinations(
        {"destinations": [{"id": "buyer", "url": answering.url(), **fields}]}
    ).destinations
    for attempt in (
        await attempt_delivery(LEAD, dest, sender),
        await attempt_delivery(LEAD, dest.pinged, sender),
    ):
        assert (attempt.outcome.kind, attempt.outcome.price) == (OutcomeKind.SUCCESS, None)
        EventEncoder("delivery_event").encode(delivery_event(attempt, None, "e-1", None))
