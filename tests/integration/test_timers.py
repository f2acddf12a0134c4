"""A worker's periodic jobs keep going whatever one of their entries holds: a parked
entry that cannot be read (written by another release, or damaged) is reported once and
left in place, and every other parked lead still comes back on time. Before, the parking
timer raised on it every 0.2 s and Faust ended the worker, again after every restart."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer

from streams.control.tables import partition_of
from tests.integration.conftest import collect, create_topic, decode_with_schema_file, publish
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Received, Recipient
from tests.integration.worker import WorkerProcess

PARTITIONS = 4


async def test_an_unreadable_parked_entry_stops_nothing(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    tries: Counter[str] = Counter()

    async def second_time_lucky(recipient: Recipient, received: Received) -> web.Response:
        ref = received.json()["ref"]
        tries[ref] += 1
        if tries[ref] == 1:
            return web.json_response({"error": "busy"}, status=503)
        return web.json_response({"id": f"R-{ref}"}, status=201)

    buyer = await Recipient(answer=second_time_lucky).start()
    try:
        await _poisoned(kafka, topics, start_worker, buyer)
        assert "POISON" not in tries  # never sent anywhere
    finally:
        await buyer.stop()


async def _poisoned(kafka: KafkaTarget, topics: Any, start_worker: Any, buyer: Recipient) -> None:
    config = f"""
destinations:
  - id: buyer
    url: {buyer.url("/buyer")}
    mapping: {{ref: id}}
    retry: {{max_attempts: 3, base_s: 0.2, max_delay_s: 0.5}}
    circuit: {{enabled: false}}
"""
    worker: WorkerProcess = start_worker(config)
    # The held table's changelog, as the worker will recover it: one entry whose work item
    # is not one, in the partition its lead lives in.
    changelog = f"{worker.app_id}-held-changelog"
    await create_topic(kafka, changelog, PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            changelog,
            key=b'"buyer|POISON|plan"',  # Faust's keys are JSON
            value=b'{"due": 0, "item": "not a work item", "parked_at": 0}',
            partition=partition_of("POISON", PARTITIONS),
        )
    finally:
        await producer.stop()

    leads = [f"T-{i:02d}" for i in range(20)]  # every one parked once, then accepted
    await publish(kafka, topics.leads, [{"id": ref, "lead": {}} for ref in leads])
    outcomes = await collect(kafka, topics.outcomes, len(leads), timeout_s=120)
    accepted = {
        outcome["lead_id"]
        for outcome in (decode_with_schema_file(r.value, "lead_outcome") for r in outcomes)
        if outcome["outcome"] == "delivered"
    }
    assert accepted == set(leads)
    assert worker.process is not None and worker.process.poll() is None  # still running
    await asyncio.sleep(1.0)  # a few more looks at the poisoned entry
    log = worker.log()
    assert log.count("parked entry buyer|POISON|plan cannot be read (MessageError)") == 1, log
