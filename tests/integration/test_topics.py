"""The topics a worker writes exist from its start, with its partitions and config: not left
to a broker's auto-creation (off on many Apache Kafka clusters, and it would apply the
broker's defaults, not the dead-letter topic's 16 MiB records). Reproduced first: before any
lead, only the leads, routing and work topics and the changelogs existed. They are made
before Faust starts: made from a task after the group joined, Tansu rebalanced the group and
repeated in-flight records."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.topics import DLQ_MAX_MESSAGE_BYTES
from tests.integration.conftest import collect, publish
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Recipient
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


async def test_a_leads_topic_created_again_loses_no_lead(
    kafka: KafkaTarget, recipient: Recipient, topics: Any, start_worker: Any
) -> None:
    """Deleted and created again under a running worker (to change its partitions, say).
    On Tansu the worker waits at its group's old offsets, past the new log's end, and says
    so; restarted, it reads the new topic from its beginning: every lead delivered once."""
    yaml = f"destinations: [{{id: crm, url: '{recipient.url()}', mapping: {{ref: id}}}}]\n"
    worker = start_worker(yaml)
    await publish(kafka, topics.leads, [{"id": f"A-{n}", "lead": {}} for n in range(40)])
    await collect(kafka, topics.outcomes, 40)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topics.leads])
        await asyncio.sleep(2)
        await admin.create_topics([NewTopic(topics.leads, 4, 1)])
    finally:
        await admin.close()
    await publish(kafka, topics.leads, [{"id": f"B-{n}", "lead": {}} for n in range(8)])
    if kafka.kind == "tansu":
        await worker.logged("past the log's end", timeout_s=30)
        worker.stop()
        start_worker(yaml)
    outcomes = await collect(kafka, topics.outcomes, 48, settle_s=3.0)
    again = Counter(o.key for o in outcomes if o.key.startswith(b"B-"))
    assert again == {f"B-{n}".encode(): 1 for n in range(8)}
    posted = Counter(r.json()["ref"] for r in recipient.requests)
    assert all(posted[f"B-{n}"] == 1 for n in range(8)) and len(posted) == 48
