"""How far the delivery workers are behind: their consumer group's committed offsets
against each partition's end, read from the cluster (not from a worker), so the dashboard
shows it whichever workers run and whether they answer."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.broker_offsets import fetched_end_offsets
from streams.config.kafka import KafkaSecurity
from streams.kafka_clients import client_options, started, stop_consumer


async def group_lag(
    bootstrap: str, group_id: str, topics: list[str], security: KafkaSecurity | None = None
) -> dict[str, dict[int, int]]:
    """Records waiting per topic and partition for ``group_id`` (a partition it has not
    committed in counts from its start)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options(security))
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        **client_options(security),
    )  # fmt: skip
    await started(admin)
    try:
        await started(reader)
        try:
            partitions = await _partitions(reader, topics)
            # Asked partition by partition: Tansu 0.6 answers the "every partition" form of
            # OffsetFetch with a body aiokafka cannot read (docs/brokers.md).
            committed: dict[Any, Any] = (
                await admin.list_consumer_group_offsets(group_id, partitions=partitions)
                if partitions
                else {}
            )
            listed = await reader.end_offsets(partitions) if partitions else {}
            ends = await fetched_end_offsets(reader, listed) if listed else {}
        finally:
            await stop_consumer(reader)
    finally:
        await admin.close()
    lag: dict[str, dict[int, int]] = {}
    for tp, end in ends.items():
        done = committed.get(tp)
        offset = done.offset if done is not None and done.offset >= 0 else 0
        lag.setdefault(tp.topic, {})[tp.partition] = max(end - offset, 0)
    return lag


async def _partitions(reader: AIOKafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    def known() -> list[TopicPartition]:
        return [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(reader.partitions_for_topic(topic) or ())
        ]

    if not known():
        await reader._client.force_metadata_update()  # a reader just started knows none
    return known()
