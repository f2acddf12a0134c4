"""Delivery control across partitions and worker processes, on a real broker: exact caps that
survive restarts, Retry-After honoured by parked retries, 1,000 leads over 2 workers."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from datetime import timedelta
from typing import Any

from aiohttp import web

from tests.integration.conftest import collect, decode_with_schema_file, publish
from tests.integration.recipients import Received, Recipient


def capped(recipient: Recipient) -> str:
    return f"""
destinations:
  - id: capped_buyer
    url: {recipient.url("/buyer")}
    caps: {{day: 50, timezone: America/New_York}}
    mapping: {{ref: id}}
"""


async def stop_all(*workers: Any) -> None:
    codes = await asyncio.gather(*(w.stopped(signal.SIGTERM) for w in workers))
    assert codes == [0] * len(workers), [w.log() for w in workers]


async def test_a_cap_of_50_a_day_holds_over_4_partitions_2_workers_and_a_restart(
    kafka: Any, recipient: Recipient, topics: Any, start_worker: Any
) -> None:
    first = start_worker(capped(recipient), name="a")
    second = start_worker(capped(recipient), name="b", app_id=first.app_id)
    await publish(kafka, topics.leads, [{"id": f"CAP-{i:03d}", "lead": {}} for i in range(200)])
    outcomes = await collect(kafka, topics.outcomes, 200)

    reasons = Counter(decode_with_schema_file(r.value, "lead_outcome")["reason"] for r in outcomes)
    assert reasons == {"Delivered": 50, "Cap exceeded": 150}
    assert len(recipient.requests) == 50

    await stop_all(first, second)
    first.start()
    second.start()
    await publish(kafka, topics.leads, [{"id": f"MORE-{i:02d}", "lead": {}} for i in range(20)])
    outcomes = await collect(kafka, topics.outcomes, 220)
    later = [decode_with_schema_file(r.value, "lead_outcome") for r in outcomes]
    later = [o for o in later if o["lead_id"].startswith("MORE-")]
    assert [o["reason"] for o in later] == ["Cap exceeded"] * 20  # the count survived
    assert len(recipient.requests) == 50


async def test_429_with_retry_after_is_retried_after_the_wait_it_asked_for(
    kafka: Any, topics: Any, start_worker: Any
) -> None:
    seen: Counter[str] = Counter()

    async def busy_once(recipient: Recipient, received: Received) -> web.Response:
        ref = received.json()["ref"]
        seen[ref] += 1
        if seen[ref] == 1:
            return web.json_response(
                {"error": "slow down"}, status=429, headers={"Retry-After": "1"}
            )
        return web.json_response({"id": f"R-{ref}"}, status=201)

    server = await Recipient(answer=busy_once).start()
    try:
        start_worker(
            f"""
destinations:
  - id: buyer
    url: {server.url("/buyer")}
    mapping: {{ref: id}}
"""
        )
        await publish(kafka, topics.leads, [{"id": f"RA-{i}", "lead": {}} for i in range(5)])
        outcomes = await collect(kafka, topics.outcomes, 5)
        records = await collect(kafka, topics.events, 10)
    finally:
        await server.stop()

    assert {decode_with_schema_file(r.value, "lead_outcome")["reason"] for r in outcomes} == {
        "Delivered"
    }
    events = [decode_with_schema_file(r.value, "delivery_event") for r in records]
    for i in range(5):
        first, second = sorted(
            (e for e in events if e["lead_id"] == f"RA-{i}"), key=lambda e: e["attempt"]
        )
        assert (first["attempt"], first["http_status"], first["reason"]) == (
            1,
            429,
            "Recipient busy (HTTP 429)",
        )
        assert first["retry_after_ms"] == 1000
        # Full jitter would allow less than a second; the recipient asked for one.
        assert first["next_attempt_at"] >= first["finished_at"] + timedelta(seconds=1)
        assert second["started_at"] >= first["next_attempt_at"]
        assert (second["attempt"], second["outcome"]) == (2, "success")
    assert sum(seen.values()) == 10


def spread(recipient: Recipient) -> str:
    buyers = "\n".join(
        f"""  - id: buyer_{n}
    url: {recipient.url(f"/buyer_{n}")}
    mapping: {{ref: id}}"""
        for n in range(4)
    )
    rules = "\n".join(
        f"""          - when: "lead.n % 4 == {n}"
            then: buyer_{n}"""
        for n in range(4)
    )
    return f"""
destinations:
{buyers}
flows:
  - id: spread
    plan:
      conditional:
        rules:
{rules}
"""


async def test_1000_leads_over_4_partitions_and_2_workers_none_lost_none_twice(
    kafka: Any, recipient: Recipient, topics: Any, start_worker: Any
) -> None:
    first = start_worker(spread(recipient), name="a")
    second = start_worker(spread(recipient), name="b", app_id=first.app_id)
    leads = [{"id": f"S-{i:04d}", "lead": {"n": i}} for i in range(1000)]
    await publish(kafka, topics.leads, leads)
    outcomes = await collect(kafka, topics.outcomes, 1000, settle_s=2.0)

    decoded = [decode_with_schema_file(r.value, "lead_outcome") for r in outcomes]
    assert Counter(o["lead_id"] for o in decoded) == {lead["id"]: 1 for lead in leads}
    assert {o["reason"] for o in decoded} == {"Delivered"}
    received = Counter((r.path, r.json()["ref"]) for r in recipient.requests)
    assert received == {(f"/buyer_{i % 4}", f"S-{i:04d}"): 1 for i in range(1000)}
    # Both processes did work: the destinations' partitions are shared between them.
    assert "Worker ready" in first.log() and "Worker ready" in second.log()


async def test_retries_run_out_the_lead_is_dead_lettered_and_replay_delivers_it(
    kafka: Any, recipient: Recipient, topics: Any, start_worker: Any
) -> None:
    import os

    from tests.integration.test_cli import courier

    healthy = False

    async def down_then_up(server: Recipient, received: Received) -> web.Response:
        if healthy:
            return web.json_response({"id": "B-1"}, status=201)
        return web.Response(text="maintenance", status=503)

    buyer = await Recipient(answer=down_then_up).start()
    try:
        start_worker(
            f"""
destinations:
  - id: crm
    url: {recipient.url("/crm")}
  - id: buyer
    url: {buyer.url("/buyer")}
    retry: {{max_attempts: 3, base_s: 0.05}}
    circuit: {{enabled: false}}
flows:
  - id: sell
    plan:
      sequence: [crm, buyer]
"""
        )
        await publish(kafka, topics.leads, [{"id": "DL-1", "lead": {}}])
        (outcome,) = await collect(kafka, topics.outcomes, 1)
        (dead,) = await collect(kafka, topics.dlq, 1)
        # The CRM took it; the sequence's second call never got through.
        assert decode_with_schema_file(outcome.value, "lead_outcome")["accepted_by"] == ["crm"]
        headers = dict(dead.headers)
        assert headers["courier.dlq.reason"] == b"Delivery failed"
        assert headers["courier.dlq.detail"] == b"buyer: Recipient error (HTTP 503)"
        assert len(buyer.requests) == 3  # every attempt made, the last one said so
        events = [
            decode_with_schema_file(r.value, "delivery_event")
            for r in await collect(kafka, topics.events, 4)
        ]
        last = max(
            (e for e in events if e["destination_id"] == "buyer"), key=lambda e: e["attempt"]
        )
        assert (last["attempt"], last["retryable"], last["next_attempt_at"]) == (3, True, None)

        healthy = True
        env = {**os.environ, "COURIER_LEADS_TOPIC": topics.leads, "COURIER_DLQ_TOPIC": topics.dlq}
        replay = await asyncio.to_thread(
            courier, "replay", "--broker", kafka.url, "--reason", "Delivery failed", env=env
        )
        assert replay.returncode == 0, replay.stderr
        outcomes = await collect(kafka, topics.outcomes, 2)
    finally:
        await buyer.stop()

    second = decode_with_schema_file(outcomes[1].value, "lead_outcome")
    assert (second["lead_id"], second["reason"]) == ("DL-1", "Delivered")
    assert sorted(second["accepted_by"]) == ["buyer", "crm"]
    assert len(recipient.requests) == 1  # the CRM had it already: not sent twice
