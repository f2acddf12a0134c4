"""A record is handled once per worker, however often it reaches the agents.

The pick-up of records Faust left behind (``streams.commits``) looks for partitions whose
records below the end are neither held by an agent nor acknowledged. A record waiting in
Faust's queue while the agent is busy is in neither place: after two looks the pick-up
read it again and handed it over, and the worker handled it twice (its lead's events and
outcome written twice: the same ids, but billing reading the outcome topic saw two
records). Reproduced here with an agent allowed one record at a time and a recipient that
answers the first lead after 15 s (10 of 12 leads got two outcome records). Fixed twice
over: the pick-up looks only while the agent is idle (``InOrder.idle``: nothing taken for
a second, slots free, so nothing waits in its queue), and an agent skips a record it has
taken already in this worker's life (``InOrder.seen``, tests/unit/test_agents.py)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from aiohttp import web

from tests.integration.conftest import collect, decode_with_schema_file, publish
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Received, Recipient

SLOW_S = 15.0  # longer than two looks of the pick-up (5 s apart) and its read


async def test_a_record_waiting_in_faust_s_queue_is_handled_once(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    async def slow_first(recipient: Recipient, received: Received) -> web.Response:
        ref = received.json()["ref"]
        if ref == "SLOW":
            await asyncio.sleep(SLOW_S)
        return web.json_response({"id": f"R-{ref}"}, status=201)

    buyer = await Recipient(answer=slow_first).start()
    try:
        config = f"""
destinations:
  - id: buyer
    url: {buyer.url("/buyer")}
    mapping: {{ref: id}}
    timeouts: {{read: 30, total: 40}}
"""
        worker = start_worker(config, env={"COURIER_HELD_PER_AGENT": "1"})
        await publish(kafka, topics.leads, [{"id": "SLOW", "lead": {}}])
        async with asyncio.timeout(60):
            while not buyer.requests:
                await asyncio.sleep(0.1)
        fast = [f"F-{i:02d}" for i in range(12)]  # most in other partitions than SLOW's
        await publish(kafka, topics.leads, [{"id": ref, "lead": {}} for ref in fast])

        leads = {"SLOW", *fast}
        outcomes = await collect(kafka, topics.outcomes, len(leads), timeout_s=90, settle_s=8)
        per_lead = Counter(
            decode_with_schema_file(record.value, "lead_outcome")["lead_id"] for record in outcomes
        )
        events = await collect(kafka, topics.events, len(leads), timeout_s=30, settle_s=2)
        attempts = Counter(
            decode_with_schema_file(record.value, "delivery_event")["lead_id"] for record in events
        )
        # Every lead was sent once and has one outcome record and one delivery event ...
        assert Counter(r.json()["ref"] for r in buyer.requests) == Counter(leads)
        assert per_lead == Counter(leads), per_lead
        assert attempts == Counter(leads), attempts
        # ... and the pick-up left the records waiting in the queue alone (the whole log:
        # ``worker.log()`` keeps only its end, where an early warning would not show).
        log = worker.log_path.read_text()
        assert "were fetched but never handled" not in log, log[-5000:]
    finally:
        await buyer.stop()
