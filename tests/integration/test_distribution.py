"""Distribution through a real worker: weighted shares exact over a run of leads, each lead
sold once, a destination's fixed price on its sales' events; a performance ranking that
learns from every worker's attempts; weighted shares over two workers."""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from streams.cli.broker import free_port
from tests.integration.conftest import collect, decode_with_schema_file, publish
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Received, Recipient
from tests.integration.test_engine import both_working
from tests.integration.test_hostile_leads import publish_keyed
from tests.integration.test_telemetry import scrape, total


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


async def refused(recipient: Recipient, received: Received) -> web.Response:
    return web.json_response({"message": "Duplicate lead"}, status=400)


async def test_a_performance_ranking_learns_from_every_workers_attempts(
    kafka: KafkaTarget, recipient: Recipient, topics: Any, start_worker: Any
) -> None:
    picky = await Recipient(answer=refused).start()
    try:
        await _performance(kafka, recipient, picky, topics, start_worker)
    finally:
        await picky.stop()


async def _performance(
    kafka: KafkaTarget, recipient: Recipient, picky: Recipient, topics: Any, start_worker: Any
) -> None:
    config = f"""
destinations:
  - id: picky
    url: {picky.url("/picky")}
  - id: keen
    url: {recipient.url("/keen")}
flows:
  - id: f
    plan: {{performance: {{by: acceptance, window_min: 60, among: [picky, keen]}}}}
"""
    port = free_port()
    worker = start_worker(config, env={"COURIER_WEB_PORT": str(port)})
    await publish(kafka, topics.leads, [{"id": f"P-{i:02d}", "lead": {}} for i in range(20)])
    await collect(kafka, topics.outcomes, 20)
    tried = len(picky.requests)
    assert tried >= 1  # nothing known at first: the listed order, picky first
    # The first worker's tally of its attempts reaches the control topic; then it stops.
    async with asyncio.timeout(30):
        while told_attempts(await collect(kafka, topics.control, 1, settle_s=1.0)) < tried:
            await asyncio.sleep(0.5)
    await worker.stopped()

    # Another worker of the group (another process, another name) knows from the start
    # that picky refused all of those: it never asks picky again. Alone, it would have
    # tried picky first (the prior).
    worker.start()
    async with asyncio.timeout(60):
        while True:
            try:
                samples = await scrape(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                samples = {}
            if samples and total(samples, "courier_performance_attempts", destination="picky"):
                break
            await asyncio.sleep(0.5)
    assert total(samples, "courier_performance_attempts", destination="picky") == tried
    assert total(samples, "courier_performance_accepted", destination="picky") == 0
    await publish(kafka, topics.leads, [{"id": f"Q-{i:02d}", "lead": {}} for i in range(10)])
    outcomes = await collect(kafka, topics.outcomes, 30)
    later = [
        outcome
        for outcome in (decode_with_schema_file(r.value, "lead_outcome") for r in outcomes)
        if outcome["lead_id"].startswith("Q-")
    ]
    assert [o["accepted_by"] for o in later] == [["keen"]] * 10
    assert len(picky.requests) == tried  # not asked again


def told_attempts(records: list[Any]) -> int:
    """Attempts to picky in the PerformanceTally records on the control topic."""
    attempts = 0
    for record in records:
        try:
            tally = decode_with_schema_file(record.value, "performance_tally")
        except AssertionError:
            continue  # a circuit event or cap usage
        if tally["destination_id"] == "picky":
            attempts = max(attempts, sum(m["attempts"] for m in tally["minutes"]))
    return attempts


async def test_weighted_shares_hold_over_two_workers_and_four_partitions(
    kafka: KafkaTarget, recipient: Recipient, topics: Any, start_worker: Any
) -> None:
    config = f"""
destinations:
  - id: buyer_a
    url: {recipient.url("/a")}
    headers: {{X-Worker: "${{env:WORKER_TAG}}"}}
    mapping: {{ref: id}}
  - id: buyer_b
    url: {recipient.url("/b")}
    headers: {{X-Worker: "${{env:WORKER_TAG}}"}}
    mapping: {{ref: id}}
flows:
  - id: sell
    plan: {{weighted: {{buyer_a: 70, buyer_b: 30}}}}
"""
    first = start_worker(config, name="a", env={"WORKER_TAG": "a"})
    start_worker(config, name="b", app_id=first.app_id, env={"WORKER_TAG": "b"})
    await both_working(recipient, kafka, topics, "warm")
    before = len(recipient.requests)
    await publish(kafka, topics.leads, [{"id": f"W-{i:04d}", "lead": {}} for i in range(1000)])
    async with asyncio.timeout(180):
        while True:
            run = [r for r in recipient.requests[before:] if r.json()["ref"].startswith("W-")]
            if len(run) >= 1000:
                break
            await asyncio.sleep(0.2)
    sold = Counter(r.path for r in run)
    assert len({r.json()["ref"] for r in run}) == 1000  # each lead sold once
    assert {r.headers["X-Worker"] for r in run} == {"a", "b"}
    # Each worker's turns are exact over any run of its leads to within 2 a destination
    # (smooth weighted round robin): two workers, within 4 (the issue asks ±2 %: ±20).
    assert abs(sold["/a"] - 700) <= 4, sold


async def test_a_buyer_that_sends_its_sales_back_drops_in_a_revenue_ranking(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    """`performance: {by: revenue}` ranks by what a buyer keeps paying for: returns credited
    come off its revenue (before, a buyer that returned every lead it bought stayed first)."""
    buyers = await Recipient(answer=accepted_without_a_price).start()
    try:
        start_worker(
            f"""
destinations:
  - id: returner
    url: {buyers.url("/returner")}
    price: 50
    feedback: {{secret: "${{env:RETURNER_SECRET}}"}}
  - id: steady
    url: {buyers.url("/steady")}
    price: 20
flows:
  - id: to_returner
    when: source.name == 'returner'
    plan: returner
  - id: to_steady
    when: source.name == 'steady'
    plan: steady
  - id: sell
    plan: {{performance: {{by: revenue, window_min: 60, among: [returner, steady]}}}}
""",
            env={"RETURNER_SECRET": "feedback-secret-of-the-returner-0123"},
        )
        # Sales the ranking learns from: returner two sales of 50 (33.33 a try, with the prior's one),
        # steady one of 20 (10 a try).
        first = [("R-1", "returner"), ("R-2", "returner"), ("S-1", "steady")]
        leads = [{"id": lead, "source": {"name": name}, "lead": {}} for lead, name in first]
        await publish(kafka, topics.leads, leads)
        await collect(kafka, topics.outcomes, 3)
        # returner sends both back: credited, so what it keeps paying for is 0 a try.
        returns = [
            (
                lead,
                orjson.dumps({"destination_id": "returner", "lead_id": lead, "kind": "returned"}),
            )
            for lead in ("R-1", "R-2")
        ]
        await publish_keyed(kafka, topics.feedback, returns)
        judged = await collect(kafka, topics.feedback_events, 2)
        notices = [decode_with_schema_file(r.value, "lead_feedback") for r in judged]
        assert [n["status"] for n in notices] == ["accepted", "accepted"]
        await publish(kafka, topics.leads, [{"id": f"N-{i}", "lead": {}} for i in range(4)])
        outcomes = await collect(kafka, topics.outcomes, 7)
    finally:
        await buyers.stop()
    sold = {
        o["lead_id"]: o["accepted_by"]
        for o in (decode_with_schema_file(r.value, "lead_outcome") for r in outcomes)
    }
    assert [sold[f"N-{i}"] for i in range(4)] == [["steady"]] * 4
