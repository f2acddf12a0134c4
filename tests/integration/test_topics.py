"""The topics a worker writes exist from its start, with its partitions and config: not left
to a broker's auto-creation (off on many Apache Kafka clusters, and it would apply the
broker's defaults, not the dead-letter topic's 16 MiB records). Reproduced first: before any
lead, only the leads, routing and work topics and the changelogs existed. They are made
before Faust starts: made from a task after the group joined, Tansu rebalanced the group and
repeated in-flight records."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.topics import DLQ_MAX_MESSAGE_BYTES
from tests.integration.kafka import KafkaTarget
from tests.integration.test_cli import courier


async def test_the_output_topics_are_made_at_start(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    start_worker("destinations: [{id: crm, url: 'https://crm.example.com'}]\n")
    wanted = {topics.events, topics.outcomes, topics.dlq, topics.control, topics.admin}
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

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        answers = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in (topics.dlq, topics.admin)]
        )
    finally:
        await admin.close()
    configs = {
        resource[3]: {entry[0]: entry[1] for entry in resource[4]}
        for answer in answers
        for resource in answer.resources
    }
    assert configs[topics.dlq]["max.message.bytes"] == str(DLQ_MAX_MESSAGE_BYTES)
    assert configs[topics.admin]["retention.ms"] == "-1"  # a pause holds for good


async def test_finished_leads_and_acceptances_expire_with_their_changelogs(
    kafka: KafkaTarget, start_worker: Any
) -> None:
    """Kept 72 h (COURIER_REMEMBER_DELIVERED_H): the broker drops older changelog records
    (compact + delete), so a recovery never brings back what RocksDB dropped by its TTL;
    the table of leads in progress is kept until each lead ends."""
    worker = start_worker("destinations: [{id: crm, url: 'https://crm.example.com'}]\n")
    names = {
        table: f"{worker.app_id}-{table}-changelog" for table in ("finished", "delivered", "leads")
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        async with asyncio.timeout(60):
            while not set(names.values()) <= set(await admin.list_topics()):
                await asyncio.sleep(0.5)
        answers = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names.values()]
        )
    finally:
        await admin.close()
    configs = {
        resource[3]: {entry[0]: entry[1] for entry in resource[4]}
        for answer in answers
        for resource in answer.resources
    }
    for table in ("finished", "delivered"):
        config = configs[names[table]]
        assert config["cleanup.policy"] == "compact,delete"
        assert config["retention.ms"] == str(72 * 3_600_000)
    assert configs[names["leads"]]["cleanup.policy"] == "compact"


def test_a_cluster_that_refuses_a_topic_stops_the_worker_in_one_line(
    kafka: KafkaTarget, topics: Any, tmp_path: Path
) -> None:
    if kafka.kind == "tansu":
        pytest.skip("Tansu creates a topic whatever replication factor is asked for")
    destinations = tmp_path / "destinations.yaml"
    destinations.write_text("destinations: [{id: crm, url: 'https://crm.example.com'}]\n")
    env = {
        **os.environ,
        "COURIER_BROKER": kafka.url,
        "COURIER_EVENTS_TOPIC": topics.events,
        "COURIER_REPLICATION": "3",  # one broker
    }
    result = courier("worker", "--destinations", str(destinations), env=env, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"could not create topic {topics.events!r}: InvalidReplicationFactorError" in (
        result.stderr
    )
