"""Feedback from recipients through a real worker: POST /feedback/<destination> (signed),
notices written upstream to the feedback topic, each judged in its lead's partition: a
return inside the window credits the sale once; feedback about a lead the destination
did not take is refused with the reason; a lead named by the recipient's own id is found."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.cli.broker import free_port
from streams.cli.console import NOT_REPLAYED_NOTICE, read_records, replay_dead_letters
from streams.stages.feedback import SALESFORCE_ACK, sign
from tests.integration.conftest import collect, decode_with_schema_file, publish
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Received, Recipient
from tests.integration.test_hostile_leads import publish_keyed
from tests.integration.worker import WorkerProcess
from tests.unit.stages.test_feedback import outbound_message

SECRET = "feedback-secret-of-buyer-a-0123456789"


async def sells_or_refuses(recipient: Recipient, received: Received) -> web.Response:
    lead_id = received.json()["lead_id"]
    if lead_id == "F-NO":
        return web.json_response({"message": "Outside service area"}, status=422)
    return web.json_response({"id": f"BA-{lead_id}", "price": "20.00"}, status=201)


async def post(base: str, body: Any, secret: str = SECRET) -> tuple[int, dict[str, Any]]:
    data = orjson.dumps(body) if not isinstance(body, bytes) else body
    headers = {"X-Courier-Signature": sign(secret, data), "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base}/feedback/buyer_a", data=data, headers=headers) as res,
    ):
        return res.status, await res.json()


async def ready(base: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(240):
            try:
                async with session.get(f"{base}/readyz") as res:
                    if res.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.5)
    raise AssertionError("the worker never became ready")


async def worker_taking_feedback(
    start_worker: Any, buyer: Recipient, feedback: str, port: int | None = None
) -> tuple[str, WorkerProcess]:
    """A worker delivering to ``buyer`` as buyer_a, whose ``feedback:`` block holds its
    secret and ``feedback``'s lines; its web address, once it is ready, and the worker."""
    port = port or free_port()
    worker = start_worker(
        f"""
destinations:
  - id: buyer_a
    url: {buyer.url("/a")}
    mapping: {{lead_id: id}}
    feedback:
      secret: ${{env:BUYER_A_FEEDBACK}}{feedback}""",
        env={"COURIER_WEB_PORT": str(port), "BUYER_A_FEEDBACK": SECRET},
    )
    base = f"http://127.0.0.1:{port}"
    await ready(base)
    return base, worker


async def test_returns_conversions_and_refusals_from_a_recipient(
    kafka: KafkaTarget, topics: Any, start_worker: Any, monkeypatch: Any
) -> None:
    buyer = await Recipient(answer=sells_or_refuses).start()
    try:
        base, _ = await worker_taking_feedback(
            start_worker,
            buyer,
            """
      lead_id: $.lead.id
      reference_id: $.lead.their_id
      kind: $.event
      reason: $.why
      at: $.when
      return_window_days: 7
""",
        )
        await publish(kafka, topics.leads, [{"id": i, "lead": {}} for i in ("F-1", "F-2", "F-NO")])
        await collect(kafka, topics.outcomes, 3)

        now = "2099-01-01T00:00:00Z"  # the future: outside any window from today
        answers = [
            await post(base, {"lead": {"id": "F-1"}, "event": "Returned", "why": "Wrong number"}),
            await post(base, {"lead": {"id": "F-1"}, "event": "return", "why": "again"}),
            await post(base, {"lead": {"their_id": "BA-F-2"}, "event": "won", "amount": "150"}),
            await post(base, {"lead": {"id": "F-2"}, "event": "return", "when": now}),
            await post(base, {"lead": {"id": "F-NO"}, "event": "return"}),
            await post(base, {"lead": {"their_id": "BA-NONE"}, "event": "contacted"}),
        ]
        assert [status for status, _ in answers] == [202] * 6
        assert answers[0][1]["kind"] == "returned" and answers[2][1]["kind"] == "converted"

        # Refused at the door: each with its status and the field or reason.
        assert await post(base, {"lead": {"id": "F-1"}, "event": "x"}, secret="wrong") == (
            401,
            {"error": "not signed by this destination's recipient (X-Courier-Signature)"},
        )
        status, answer = await post(base, {"lead": {}, "event": "return"})
        assert (status, answer["field"]) == (400, "lead_id")
        status, answer = await post(base, b"x" * 70_000)
        assert status == 413

        # Upstream may write a notice to the feedback topic itself; garbage is dead-lettered.
        upstream = {
            "destination_id": "buyer_a",
            "kind": "disqualified",
            "lead_id": "F-2",
            "reason": "Duplicate",
            "received_at_ms": 1_800_000_000_000,
        }
        hostile = [
            b"{not a notice",
            b"\xff\xfe\x00",
            b"[" * 2000 + b"]" * 2000,
            orjson.dumps({**upstream, "destination_id": "nobody"}),
            orjson.dumps({**upstream, "at_ms": 10**18}),
            orjson.dumps({**upstream, "kind": "stolen"}),
            orjson.dumps({**upstream, "lead_id": ["F-2"]}),
        ]
        await publish(kafka, topics.feedback, [*hostile, upstream])

        judged = await collect(kafka, topics.feedback_events, 7, settle_s=1.0)
        dead = await collect(kafka, topics.dlq, len(hostile), settle_s=1.0)
    finally:
        await buyer.stop()

    events = [decode_with_schema_file(r.value, "lead_feedback") for r in judged]
    seen = {(e["lead_id"], e["kind"], e["status"], e["refusal"]) for e in events}
    assert seen == {
        ("F-1", "returned", "accepted", None),
        ("F-1", "returned", "refused", "Already returned"),
        ("F-2", "converted", "accepted", None),  # found by the buyer's own id
        ("F-2", "returned", "refused", "Return window closed"),
        ("F-NO", "returned", "refused", "Not accepted by this destination"),
        (None, "contacted", "refused", "Unknown reference"),
        ("F-2", "disqualified", "accepted", None),
    }
    [credited] = [e for e in events if e["credit"] is not None]
    assert (credited["lead_id"], credited["credit"]) == ("F-1", Decimal("20.0000"))
    assert credited["reason"] == "Bad phone" and credited["raw_reason"] == "Wrong number"
    converted = next(e for e in events if e["kind"] == "converted")
    assert converted["amount"] == Decimal("150.0000") and converted["reference_id"] == "BA-F-2"
    # Each hostile record dead-lettered with the field it broke; the stream went on.
    assert len(dead) == len(hostile)
    details = []
    for record in dead:
        headers = {k: v.decode() for k, v in record.headers}
        assert headers["courier.dlq.reason"] == "Unreadable feedback"
        details.append(headers["courier.dlq.detail"])
    assert "destination_id: no destination 'nobody'" in details
    assert "at_ms: out of range" in details and "lead_id: must be a string" in details


async def test_a_postback_by_get_credits_a_return_and_counts_a_conversion(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    """A platform's postback url (``?lead_id={lead_id}&event={event}&key=…``), sent as a
    GET: the notice is read from the url, checked by the token in it, and judged as a
    posted one is."""
    buyer = await Recipient(answer=sells_or_refuses).start()
    try:
        base, _ = await worker_taking_feedback(
            start_worker,
            buyer,
            """
      auth: query_token
      token_parameter: key
      lead_id: $.lead_id
      kind: $.event
      reason: $.why
      amount: $.payout
""",
        )
        await publish(kafka, topics.leads, [{"id": i, "lead": {}} for i in ("G-1", "G-2")])
        await collect(kafka, topics.outcomes, 2)
        answers = []
        async with aiohttp.ClientSession() as session:
            for query in (
                {"lead_id": "G-1", "event": "return", "why": "Wrong number", "key": SECRET},
                {"lead_id": "G-2", "event": "sale", "payout": "45.00", "key": SECRET},
                {"lead_id": "G-2", "event": "return", "key": "a guess"},
                {"key": SECRET},  # Mailchimp's check of a webhook's url, before saving it
            ):
                async with session.get(f"{base}/feedback/buyer_a", params=query) as res:
                    answers.append((res.status, await res.json()))
        assert [status for status, _ in answers] == [202, 202, 401, 200], answers
        assert answers[2][1]["error"].endswith("(the url's key parameter)")
        judged = await collect(kafka, topics.feedback_events, 2, settle_s=1.0)
    finally:
        await buyer.stop()
    events = {
        (e["lead_id"], e["kind"]): e
        for e in (decode_with_schema_file(r.value, "lead_feedback") for r in judged)
    }
    returned, converted = events[("G-1", "returned")], events[("G-2", "converted")]
    assert (returned["status"], returned["credit"]) == ("accepted", Decimal("20.0000"))
    assert returned["reason"] == "Bad phone"
    assert (converted["status"], converted["amount"]) == ("accepted", Decimal("45.0000"))


async def test_a_crms_list_of_events_is_judged_event_by_event(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    """HubSpot's webhooks: a POST of a list of events, each naming the contact by HubSpot's
    own id and timed in milliseconds, signed HubSpot's way (v3: the url it called, with
    its query). Each readable event is written and judged on its own (a list was refused
    400, every event in it lost); the unreadable one is named in the answer."""
    buyer = await Recipient(answer=sells_or_refuses).start()
    port = free_port()
    url = f"http://127.0.0.1:{port}/feedback/buyer_a"
    try:
        base, worker = await worker_taking_feedback(
            start_worker,
            buyer,
            f"""
      auth: hubspot
      public_url: {url}
      lead_id: null
      reference_id: $.objectId
      kind: $.propertyValue
      at: $.occurredAt
      kinds: {{converted: [customer]}}
""",
            port,
        )
        await publish(kafka, topics.leads, [{"id": i, "lead": {}} for i in ("H-1", "H-2")])
        await collect(kafka, topics.outcomes, 2)
        now_ms = int(time.time() * 1000)
        events = [
            {"objectId": "BA-H-1", "propertyName": "lifecyclestage", "propertyValue": "customer",
             "subscriptionType": "contact.propertyChange", "occurredAt": now_ms},
            {"objectId": "BA-H-2", "propertyName": "lifecyclestage",
             "propertyValue": "salesqualifiedlead", "occurredAt": now_ms + 1},
            {"objectId": "BA-NONE", "propertyValue": "customer", "occurredAt": now_ms + 2},
            {"propertyValue": "customer", "occurredAt": now_ms + 3},
        ]  # fmt: skip
        body = orjson.dumps(events)
        signed = f"POST{url}?portal=62515&at=a:b".encode() + body + str(now_ms).encode()
        mac = hmac.new(SECRET.encode(), signed, hashlib.sha256).digest()
        headers = {"X-HubSpot-Signature-v3": base64.b64encode(mac).decode(),
                   "X-HubSpot-Request-Timestamp": str(now_ms),
                   "Content-Type": "application/json"}  # fmt: skip
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{base}/feedback/buyer_a?portal=62515&at=a%3Ab", data=body, headers=headers
            ) as res,
        ):
            status, answer = res.status, await res.json()
        assert status == 202, answer
        assert [n["index"] for n in answer["notices"]] == [0, 1, 2]
        assert answer["refused"] == [
            {"index": 3, "error": "nothing at $.objectId", "field": "lead_id"}
        ]
        # also in the log (a SOAP acknowledgement could not say it), without the values
        said = "feedback from buyer_a: 1 notice(s) could not be read (3: lead_id)"
        assert said in worker.log()
        judged = await collect(kafka, topics.feedback_events, 3, settle_s=1.0)
        # and kept whole on the dead-letter topic (it was lost: HubSpot sends no list twice)
        (letter,) = [r async for r in read_records(kafka.bootstrap, topics.dlq, follow=False)]
        assert (letter.key, orjson.loads(letter.value)) == (None, events[3])
        assert {k: v.decode() for k, v in letter.headers} == {
            "courier.dlq.reason": "Unreadable feedback notice",
            "courier.dlq.detail": "lead_id: nothing at $.objectId",
            "courier.dlq.topic": "/feedback/buyer_a",
            "courier.dlq.notice": "3",
        }
        # a replay leaves it (no topic ever held it), saying why
        replayed = await replay_dead_letters(kafka.bootstrap, topics.dlq, topics.leads)
        assert replayed == {NOT_REPLAYED_NOTICE: 1}
    finally:
        await buyer.stop()
    seen = {
        (
            e["reference_id"],
            e["lead_id"],
            e["kind"],
            e["status"],
            e["refusal"],
            int(e["feedback_at"].timestamp() * 1000),
        )
        for e in (decode_with_schema_file(r.value, "lead_feedback") for r in judged)
    }
    assert seen == {
        ("BA-H-1", "H-1", "converted", "accepted", None, now_ms),
        ("BA-H-2", "H-2", "status", "accepted", None, now_ms + 1),
        ("BA-NONE", None, "converted", "refused", "Unknown reference", now_ms + 2),
    }


async def test_a_salesforce_outbound_message_is_judged_and_acknowledged(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    """Salesforce tells that a lead converted with an outbound message (SOAP), resent for
    24 hours until it is acknowledged: each notification is judged, and the answer is
    Salesforce's acknowledgement (XML was refused 400, the conversion never counted)."""
    buyer = await Recipient(answer=sells_or_refuses).start()
    try:
        base, _ = await worker_taking_feedback(
            start_worker,
            buyer,
            """
      auth: query_token
      notices: $.Envelope.Body.notifications.Notification
      lead_id: null
      reference_id: $.sObject.Id
      kind: $.sObject.Status
      kinds: {converted: [Closed - Converted]}
""",
        )
        await publish(kafka, topics.leads, [{"id": "S-1", "lead": {}}])
        await collect(kafka, topics.outcomes, 1)
        body = outbound_message(("BA-S-1", "Closed - Converted"), ("BA-NONE", "Working"))
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{base}/feedback/buyer_a", data=body, params={"token": SECRET},
                headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
            ) as res,
        ):  # fmt: skip
            status, content_type, answer = res.status, res.content_type, await res.read()
        assert (status, content_type, answer) == (200, "text/xml", SALESFORCE_ACK)
        judged = await collect(kafka, topics.feedback_events, 2, settle_s=1.0)
    finally:
        await buyer.stop()
    seen = {
        (e["reference_id"], e["lead_id"], e["kind"], e["status"], e["refusal"])
        for e in (decode_with_schema_file(r.value, "lead_feedback") for r in judged)
    }
    assert seen == {
        ("BA-S-1", "S-1", "converted", "accepted", None),
        ("BA-NONE", None, "status", "refused", "Unknown reference"),
    }


# ── hostile notices through a real worker ─────────────────────────────────────
@st.composite
def notices(draw: st.DrawFn, tag: str) -> list[tuple[str, bytes]]:
    """Records for the feedback topic, each naming ``<tag>-<n>`` as its lead id or its
    reference (so its ending can be found), or raw bytes keyed by it."""
    text = st.text(max_size=40)
    anything = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        text,
        st.lists(st.integers(), max_size=2),
    )
    out = []
    for n in range(draw(st.integers(5, 25))):
        name = f"{tag}-{n}"
        if draw(st.integers(0, 9)) == 0:
            out.append((name, draw(st.binary(max_size=64))))
            continue
        doc: dict[str, Any] = {
            "destination_id": draw(st.sampled_from(["buyer_a", "buyer_a", "nobody", 7])),
            "kind": draw(st.sampled_from(["returned", "converted", "status", "stolen", None])),
        }
        named = draw(st.sampled_from(["lead_id", "reference_id"]))
        doc[named] = name
        for field in ("reason", "raw_reason", "status_text", "amount", "at_ms", "received_at_ms"):
            if draw(st.booleans()):
                doc[field] = draw(
                    st.one_of(anything, st.sampled_from(["1e-30", "NaN", "-5", "9" * 30]))
                )
        out.append((name, json.dumps(doc).encode()))
    return out


@pytest.fixture
def feedback_worker(start_worker: Any) -> Any:
    """One worker for every example (Hypothesis runs them in one test)."""
    return start_worker(
        """
destinations:
  - id: buyer_a
    url: https://buyer.example.com/leads
    feedback: {secret: "${env:BUYER_A_FEEDBACK}", reference_id: $.ref}
""",
        env={"BUYER_A_FEEDBACK": SECRET},
    )


async def endings_of(kafka: KafkaTarget, topics: Any, names: set[str]) -> tuple[Counter[str], ...]:
    """Feedback events and dead letters naming each of ``names``, once each has one."""

    def named(key: bytes) -> str:
        return key.decode(errors="replace").split("|")[-1]

    judged: Counter[str] = Counter()
    dead: Counter[str] = Counter()
    for _ in range(240):
        judged = Counter(
            [
                named(r.key)
                async for r in read_records(kafka.bootstrap, topics.feedback_events, follow=False)
            ]
        )
        dead = Counter(
            [named(r.key) async for r in read_records(kafka.bootstrap, topics.dlq, follow=False)]
        )
        if all(judged[n] or dead[n] for n in names):
            return judged, dead
        await asyncio.sleep(0.5)
    missing = sorted(n for n in names if not (judged[n] or dead[n]))
    raise AssertionError(f"no feedback event nor dead letter for {missing}")


@settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_fuzzed_notices_each_get_exactly_one_ending(
    data: st.DataObject, kafka: KafkaTarget, topics: Any, feedback_worker: Any
) -> None:
    batch = data.draw(notices(uuid.uuid4().hex[:8]))
    await publish_keyed(kafka, topics.feedback, batch)
    judged, dead = await endings_of(kafka, topics, {name for name, _ in batch})
    for name, _ in batch:
        assert judged[name] + dead[name] == 1, name


async def test_a_polled_status_api_reports_each_change_until_a_conversion(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    """A recipient with only a status API: asked about each lead it accepted, with its own
    credentials, every interval; a change becomes feedback, a conversion ends the polling."""
    statuses = {"B-P-1": "new"}
    asked: list[tuple[str, str | None]] = []

    async def buyer_api(server: Recipient, received: Received) -> web.Response:
        if received.method == "POST":
            return web.json_response({"id": f"B-{received.json()['lead_id']}"}, status=201)
        reference = received.path.rsplit("/", 1)[-1]
        asked.append((reference, received.headers.get("X-Api-Key")))
        if reference not in statuses:
            return web.json_response({"error": "unknown"}, status=404)
        return web.json_response({"lead": reference, "status": statuses[reference]})

    buyer = await Recipient(answer=buyer_api).start()
    try:
        start_worker(
            f"""
destinations:
  - id: buyer_p
    url: {buyer.url("/leads")}
    auth: {{type: api_key, name: X-Api-Key, value: "${{env:BUYER_P_KEY}}"}}
    mapping: {{lead_id: id}}
    feedback:
      lead_id: null
      reference_id: $.lead
      kind: $.status
      reason: null
      amount: null
      at: null
      poll: {{url: "{buyer.url("/status/{reference_id}")}", every_minutes: 0.1, for_days: 1}}
""",
            env={"BUYER_P_KEY": "the-buyers-api-key"},
        )
        await publish(kafka, topics.leads, [{"id": "P-1", "lead": {}}])
        await collect(kafka, topics.outcomes, 1)
        first = await collect(kafka, topics.feedback_events, 1, timeout_s=60)
        statuses["B-P-1"] = "Converted"
        both = await collect(kafka, topics.feedback_events, 2, timeout_s=60)
        polls_then = len(asked)
        await asyncio.sleep(14)  # two intervals: nothing more is asked after a conversion
        env = {**os.environ, "COURIER_BROKER": kafka.url,
               "COURIER_FEEDBACK_EVENTS_TOPIC": topics.feedback_events}  # fmt: skip
        printed = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "streams.cli", "events", "--topic", "feedback"],
            capture_output=True, text=True, timeout=60, env=env, check=False,
        )  # fmt: skip
    finally:
        await buyer.stop()
    events = [decode_with_schema_file(r.value, "lead_feedback") for r in both]
    assert decode_with_schema_file(first[0].value, "lead_feedback")["kind"] == "status"
    assert [(e["lead_id"], e["kind"], e["status"]) for e in events] == [
        ("P-1", "status", "accepted"), ("P-1", "converted", "accepted"),
    ]  # fmt: skip
    assert events[0]["status_text"] == "new" and events[1]["reference_id"] == "B-P-1"
    assert {key for _, key in asked} == {"the-buyers-api-key"}  # its own credentials
    assert len(asked) >= 2 and len(asked) == polls_then  # unchanged answers said nothing
    lines = [orjson.loads(line) for line in printed.stdout.splitlines()]
    assert [(e["type"], e["kind"]) for e in lines] == [
        ("LeadFeedback", "status"), ("LeadFeedback", "converted"),
    ]  # fmt: skip
