"""Distribution through a real worker: weighted shares exact over a run of leads, each lead
sold once, a destination's fixed price on its sales' events."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

from aiohttp import web

from tests.integration.conftest import collect, decode_with_schema_file, publish
from tests.integration.recipients import Received, Recipient


async def accepted_without_a_price(recipient: Recipient, received: Received) -> web.Response:
    return web.json_response({"id": "R-1", "status": "accepted"}, status=201)


async def test_weighted_shares_are_exact_and_each_lead_sold_once(
    kafka: Any, recipient: Recipient, topics: Any, start_worker: Any
) -> None:
    unpriced = await Recipient(answer=accepted_without_a_price).start()
    try:
        await _weighted(kafka, recipient, unpriced, topics, start_worker)
    finally:
        await unpriced.stop()


async def _weighted(
    kafka: Any, recipient: Recipient, unpriced: Recipient, topics: Any, start_worker: Any
) -> None:
    start_worker(
        f"""
destinations:
  - id: buyer_a
    url: {unpriced.url("/a")}
    price: 12.5
  - id: buyer_b
    url: {recipient.url("/b")}
flows:
  - id: sell
    plan:
      weighted: {{buyer_a: 7, buyer_b: 3}}
"""
    )
    await publish(kafka, topics.leads, [{"id": f"D-{i:03d}", "lead": {}} for i in range(100)])
    outcomes = await collect(kafka, topics.outcomes, 100, settle_s=1.0)
    events = await collect(kafka, topics.events, 100, settle_s=1.0)

    sold = Counter()
    for record in outcomes:
        outcome = decode_with_schema_file(record.value, "lead_outcome")
        [buyer] = outcome["accepted_by"]  # one buyer a lead: the other is a fallback
        sold[buyer] += 1
    assert sold == {"buyer_a": 70, "buyer_b": 30}  # one worker: exact
    assert len(outcomes) == 100 and len(events) == 100
    assert (len(unpriced.requests), len(recipient.requests)) == (70, 30)
    prices = {
        event["destination_id"]: event["price"]
        for event in (decode_with_schema_file(r.value, "delivery_event") for r in events)
    }
    # buyer_a names no price: its fixed one; buyer_b's answer names one: that one.
    assert prices == {"buyer_a": Decimal("12.5000"), "buyer_b": Decimal("2.5000")}
