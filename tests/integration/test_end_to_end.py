"""Leads in on Kafka → mapped requests at a real recipient → Avro events back on Kafka."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from decimal import Decimal
from typing import Any

from tests.integration.conftest import collect, decode_with_schema_file, publish
from tests.integration.recipients import Recipient

BEHAVIOURS = ("ok", "ok", "ok", "reject", "error", "ok", "slow", "ok")


def destinations_for(recipient: Recipient) -> str:
    return f"""
destinations:
  - id: test_crm
    url: {recipient.url("/leads")}
    headers:
      Authorization: Bearer ${{env:TEST_CRM_TOKEN}}
    timeouts: {{connect: 1, read: 1, total: 2}}
    # A quarter of these leads fail on purpose, in bursts: the breaker would rightly open
    # (test_circuit.py covers that); here every lead must reach the recipient.
    circuit: {{enabled: false}}
    retry: {{max_attempts: 1}}  # one event per lead here; test_retries.py covers retrying
    mapping:
      ref: id
      behaviour: lead.behaviour
      email: email
      contact.first: lead.first_name
      contact.state: lead.state
      campaign: source.campaign
"""


def lead(i: int) -> dict[str, Any]:
    return {
        "id": f"E2E-{i:04d}",
        "submission": {"timestamp": "2026-11-22T10:00:00Z"},
        "source": {"campaign": f"c{i % 3}"},
        "lead": {
            "email": f"user{i}@example.com",
            "first_name": f"First{i}",
            "state": "CA",
            "behaviour": BEHAVIOURS[i % len(BEHAVIOURS)],
        },
    }


def expected_body(i: int) -> dict[str, Any]:
    return {
        "ref": f"E2E-{i:04d}",
        "behaviour": BEHAVIOURS[i % len(BEHAVIOURS)],
        "email": f"user{i}@example.com",
        "contact": {"first": f"First{i}", "state": "CA"},
        "campaign": f"c{i % 3}",
    }


async def test_200_leads_are_mapped_delivered_and_reported(
    kafka: Any, recipient: Recipient, topics: Any, start_worker: Any
) -> None:
    recipient.slow_s = 2.5  # beyond the destination's 1 s read timeout
    worker = start_worker(destinations_for(recipient), env={"TEST_CRM_TOKEN": "s3cret-token"})
    await publish(kafka, topics.leads, [lead(i) for i in range(200)])

    records = await collect(kafka, topics.events, 200)
    outcomes = await collect(kafka, topics.outcomes, 200)

    # The recipient saw exactly the mapped bodies, with our credential and idempotency key.
    await recipient.wait_for(200)
    assert sorted(recipient.bodies(), key=lambda b: b["ref"]) == [
        expected_body(i) for i in range(200)
    ]
    assert all(r.headers["Authorization"] == "Bearer s3cret-token" for r in recipient.requests)
    assert len({r.headers["Idempotency-Key"] for r in recipient.requests}) == 200

    events = [decode_with_schema_file(r.value, "delivery_event") for r in records]
    assert {r.key for r in records} == {f"E2E-{i:04d}".encode() for i in range(200)}
    by_lead = {e["lead_id"]: e for e in events}
    assert len(by_lead) == 200
    for i in range(200):
        event = by_lead[f"E2E-{i:04d}"]
        behaviour = BEHAVIOURS[i % len(BEHAVIOURS)]
        assert event["destination_id"] == "test_crm"
        assert event["attempt"] == 1
        assert event["finished_at"] >= event["started_at"]
        assert event["request"]["headers"]["Authorization"] == "Bearer ****"
        assert "s3cret" not in str(event)
        if behaviour == "ok":
            assert (event["outcome"], event["http_status"]) == ("success", 201)
            assert event["reference_id"].startswith("R-")
            assert event["price"] == Decimal("2.5000")
        elif behaviour == "reject":
            assert (event["outcome"], event["reason"], event["http_status"]) == (
                "failure",
                "Duplicate lead",
                400,
            )
        elif behaviour == "error":
            assert (event["outcome"], event["http_status"], event["retryable"]) == (
                "error",
                500,
                True,
            )
        else:
            assert (event["outcome"], event["reason"], event["http_status"]) == (
                "error",
                "Timeout",
                None,
            )

    lead_outcomes = [decode_with_schema_file(r.value, "lead_outcome") for r in outcomes]
    counts = Counter(o["outcome"] for o in lead_outcomes)
    assert counts == {"delivered": 125, "not_delivered": 75}
    # No exporter configured: spans are not recorded, yet every lead has its own trace id,
    # the same on its event and its outcome, and no traceparent goes to the recipient.
    traces = {o["lead_id"]: o["trace_id"] for o in lead_outcomes}
    assert len(set(traces.values())) == 200
    assert all(by_lead[lead_id]["trace_id"] == trace for lead_id, trace in traces.items())
    assert not any("traceparent" in r.headers for r in recipient.requests)

    # SIGUSR1 logs where every task waits (to find a stall), without lead data or secrets:
    # mode's own dump printed each frame's local variables, the stream's last record too.
    worker.process.send_signal(signal.SIGUSR1)
    async with asyncio.timeout(10):
        while "Stack for" not in worker.log_path.read_text(errors="replace"):
            await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # the dump is written in one go; let it finish
    log = worker.log_path.read_text(errors="replace")
    assert "TASK " in log and "_execute_actor" in log
    assert "@example.com" not in log and "First1" not in log and "s3cret" not in log
