"""One attempt, stage by stage, with ``send`` as a plain function instead of a network."""

from __future__ import annotations

import os
from typing import Any

import orjson
import pytest

from streams.config import Destination, DestinationsFile
from streams.errors import DeliveryTimeout
from streams.model import HttpRequest, HttpResponse, Lead, OutcomeCategory, OutcomeKind
from streams.stages.attempt import attempt_delivery
from streams.stages.request import idempotency_key
from tests.conftest import destination

LEAD = Lead("L-1", {"id": "L-1", "lead": {"email": "a@example.com", "first_name": "Ada"}})


class Recorder:
    """Answers every request with one fixed response and keeps what it was sent."""

    def __init__(self, response: HttpResponse | Exception) -> None:
        self.response = response
        self.sent: list[HttpRequest] = []

    async def __call__(self, req: HttpRequest, dest: Destination) -> HttpResponse:
        self.sent.append(req)
        if isinstance(self.response, Exception):
            raise self.response
        return self.response


def only(destinations: DestinationsFile) -> Destination:
    return destinations.destinations[0]


async def test_a_lead_is_mapped_sent_and_read(make_destinations: Any) -> None:
    dest = only(
        make_destinations(destination(mapping={"mail": "email", "who.first": "first_name"}))
    )
    send = Recorder(HttpResponse(200, {}, b'{"id": "R-1"}'))

    attempt = await attempt_delivery(LEAD, dest, send)

    (req,) = send.sent
    assert orjson.loads(req.body) == {"mail": "a@example.com", "who": {"first": "Ada"}}
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["Idempotency-Key"] == idempotency_key("L-1", "crm")
    assert attempt.outcome.kind is OutcomeKind.SUCCESS
    assert attempt.outcome.reference_id == "R-1"
    assert attempt.http_status == 200
    assert attempt.started_at <= attempt.finished_at
    assert attempt.recipient_ms >= 0 and attempt.overhead_ms >= 0


def test_idempotency_keys_differ_per_lead_and_destination_and_never_change() -> None:
    keys = {idempotency_key(lead, dest) for lead in ("L-1", "L-2") for dest in ("a", "b")}
    assert len(keys) == 4
    assert idempotency_key("L-1", "a") == idempotency_key("L-1", "a")
    # A separator keeps ("L-1a", "") and ("L-1", "a") apart.
    assert idempotency_key("L-1a", "b") != idempotency_key("L-1", "ab")


async def test_a_ping_and_its_post_carry_different_idempotency_keys(make_destinations: Any) -> None:
    """A buyer that honours the key must not take the post for a resend of the ping."""
    ping = {"url": "https://buyer.example.com/ping", "mapping": {"state": "state"}}
    dest = only(make_destinations(destination(ping=ping)))
    send = Recorder(HttpResponse(200, {}, b'{"bid": 12.5, "bid_id": "B-1"}'))
    await attempt_delivery(LEAD, dest.pinged, send)
    await attempt_delivery(LEAD, dest, send)
    pinged, posted = (req.headers["Idempotency-Key"] for req in send.sent)
    assert posted == idempotency_key("L-1", "crm") and pinged != posted
    await attempt_delivery(LEAD, dest.pinged, send)  # sent again: the same key as before
    assert send.sent[2].headers["Idempotency-Key"] == pinged


async def test_a_transport_error_is_an_error_outcome_with_no_status(
    make_destinations: Any,
) -> None:
    dest = only(make_destinations(destination()))
    attempt = await attempt_delivery(LEAD, dest, Recorder(DeliveryTimeout("read timeout")))
    assert attempt.outcome.kind is OutcomeKind.ERROR
    assert attempt.outcome.reason == "Timeout"
    assert attempt.outcome.retryable
    assert attempt.http_status is None
    assert attempt.request is not None  # the event still shows what we tried to send


async def test_the_event_summary_masks_credentials_and_has_no_body(
    make_destinations: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_TOKEN", "s3cr3t-value")
    dest = only(
        make_destinations(
            destination(
                url="http://127.0.0.1:9/leads?api_key=${env:CRM_TOKEN}",
                headers={"Authorization": "Bearer ${env:CRM_TOKEN}", "X-Source": "web"},
            )
        )
    )
    send = Recorder(HttpResponse(200, {}, b"{}"))
    attempt = await attempt_delivery(LEAD, dest, send)

    # The recipient gets the real credential…
    assert send.sent[0].headers["Authorization"] == "Bearer s3cr3t-value"
    # …the summary that goes into events never does.
    summary = attempt.request
    assert summary is not None
    assert summary.headers["Authorization"] == "Bearer ****"
    assert summary.headers["X-Source"] == "web"
    assert "s3cr3t" not in repr(summary)
    assert os.environ["CRM_TOKEN"] not in summary.url
    assert summary.body_bytes == len(send.sent[0].body)


async def test_an_integration_that_cannot_read_an_answer_gives_an_error_not_a_crash(
    make_destinations: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = only(make_destinations(destination()))

    def broken(req: HttpRequest, res: HttpResponse) -> Any:
        raise KeyError("data")

    monkeypatch.setattr(dest.module, "response", broken)
    attempt = await attempt_delivery(LEAD, dest, Recorder(HttpResponse(200, {}, b"<html>")))
    assert attempt.outcome.kind is OutcomeKind.ERROR
    assert attempt.outcome.reason == "Unreadable response"


async def test_outside_business_hours_or_disabled_nothing_is_sent(make_destinations: Any) -> None:
    from datetime import UTC, datetime

    today = datetime.now(UTC).date().isoformat()
    closed, disabled = make_destinations(
        destination(
            id="closed",
            schedule={
                "timezone": "UTC",
                "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "holidays": [today],
            },
        ),
        destination(id="off", enabled=False),
    ).destinations
    send = Recorder(HttpResponse(200, {}, b"{}"))
    for dest, reason in ((closed, "Outside business hours"), (disabled, "Destination disabled")):
        attempt = await attempt_delivery(LEAD, dest, send)
        assert (attempt.outcome.kind, attempt.outcome.reason) == (OutcomeKind.SKIP, reason)
    assert send.sent == []


async def test_lead_values_that_cannot_be_sent_are_invalid_data_naming_where(
    make_destinations: Any,
) -> None:
    dest = only(
        make_destinations(destination(headers={"X-Name": "{{lead.name}}"}, mapping={"n": "lead.n"}))
    )
    recorder = Recorder(HttpResponse(201, {}, b"{}"))
    control = Lead("L-1", {"id": "L-1", "lead": {"name": "Ada\x00X", "n": 1}})
    attempt = await attempt_delivery(control, dest, recorder)
    assert attempt.outcome.kind is OutcomeKind.FAILURE
    assert "header X-Name: a control character" in attempt.outcome.reason
    too_big = Lead("L-2", {"id": "L-2", "lead": {"name": "Ada", "n": 2**70}})
    attempt = await attempt_delivery(too_big, dest, recorder)
    assert attempt.outcome.reason.startswith("Invalid data: the payload cannot be written as JSON")
    assert attempt.outcome.category is OutcomeCategory.INVALID_DATA  # not a buyer's reject
    assert recorder.sent == []
