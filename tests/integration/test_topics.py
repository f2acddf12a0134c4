"""The topics a worker writes exist from its start, with its partitions: not left to a
broker's auto-creation (off on many Apache Kafka clusters, and it would apply the broker's
defaults, not the dead-letter topic's 16 MiB records). Reproduced first: before any lead,
only the leads, routing and work topics and the changelogs existed."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer

from tests.integration.kafka import KafkaTarget


async def test_the_output_topics_are_made_at_start(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    start_worker("destinations: [{id: crm, url: 'https://crm.example.com'}]\n")
    wanted = {topics.events, topics.outcomes, topics.dlq, topics.control}
    reader = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap)
    await reader.start()
    try:
        async with asyncio.timeout(60):
            while True:
                await reader._client.force_metadata_update()
                found = {t: len(reader.partitions_for_topic(t) or ()) for t in wanted}
                if all(found.values()):
                    break
                await asyncio.sleep(0.5)
    finally:
        await reader.stop()
    assert found == dict.fromkeys(wanted, 4)  # COURIER_PARTITIONS' default
