"""The ``capacity`` distribution through a real worker: capped destinations' counts are
reported on the control topic by the worker that counts them, every worker (and
/metrics) knows them, and leads go first to the destination with the most room."""

from __future__ import annotations

import asyncio
from typing import Any

from streams.cli.broker import free_port
from tests.integration.conftest import collect, decode_with_schema_file, publish
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Recipient
from tests.integration.test_telemetry import scrape, total


async def test_leads_go_to_the_destination_with_the_most_room(
    kafka: KafkaTarget, recipient: Recipient, topics: Any, start_worker: Any
) -> None:
    port = free_port()
    start_worker(
        f"""
destinations:
  - id: small
    url: {recipient.url("/small")}
    caps: {{day: 10}}
  - id: large
    url: {recipient.url("/large")}
    caps: {{day: 100}}
flows:
  - id: f
    plan: {{capacity: [small, large]}}
""",
        env={"COURIER_WEB_PORT": str(port)},
    )
    metrics = f"http://127.0.0.1:{port}/metrics"
    # Nothing used yet: equal room, the listed order: small takes the first five.
    await publish(kafka, topics.leads, [{"id": f"C-{i}", "lead": {}} for i in range(5)])
    await collect(kafka, topics.outcomes, 5)
    async with asyncio.timeout(30):  # its report has reached the worker's board
        while True:
            try:
                samples = await scrape(metrics)
            except OSError:
                samples = {}
            if samples and total(samples, "courier_cap_used", destination="small") == 5:
                break
            await asyncio.sleep(0.5)
    assert total(samples, "courier_cap_limit", destination="small", window="day") == 10
    # small has half its room left, large all of it: large first now.
    await publish(kafka, topics.leads, [{"id": f"D-{i}", "lead": {}} for i in range(5)])
    outcomes = await collect(kafka, topics.outcomes, 10)
    sold = {
        record["lead_id"]: record["accepted_by"]
        for record in (decode_with_schema_file(r.value, "lead_outcome") for r in outcomes)
    }
    assert {lead: buyers[0] for lead, buyers in sold.items()} == {
        **{f"C-{i}": "small" for i in range(5)},
        **{f"D-{i}": "large" for i in range(5)},
    }
