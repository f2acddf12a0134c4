"""What a broker says the end of a partition is. Tansu 0.6 answers ListOffsets(latest) with
the base offset of the last record batch + 1, not the last offset + 1: a reader that trusts
it stops short whenever the last batch holds more than one record. That is BROKER.md's
"table recovered 99 of 100". The high watermark in fetch answers is right."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.cli.console import read_records
from tests.integration.conftest import create_topic
from tests.integration.kafka import KafkaTarget


async def produce_batches(kafka: KafkaTarget, topic: str, sizes: list[int]) -> None:
    await create_topic(kafka, topic, 1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=50)
    await producer.start()
    try:
        for size in sizes:  # each group is sent together, so it travels as one batch
            sent = [await producer.send(topic, value=b"x", partition=0) for _ in range(size)]
            await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def offsets(kafka: KafkaTarget, topic: str) -> tuple[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        await consumer.getmany(tp, timeout_ms=2000)
        return end, consumer.highwater(tp)
    finally:
        await consumer.stop()


async def test_end_offsets_of_a_partition_whose_last_batch_holds_several_records(
    kafka: Any, topics: Any
) -> None:
    await produce_batches(kafka, topics.leads, [1, 5])
    end, highwater = await offsets(kafka, topics.leads)
    assert highwater == 6  # right on every broker
    if kafka.kind == "tansu":
        assert end == 2, (
            "Tansu now answers ListOffsets correctly: update docs/brokers.md and this test"
        )
    else:
        assert end == 6


async def test_courier_readers_read_to_the_real_end_on_every_broker(
    kafka: Any, topics: Any
) -> None:
    await produce_batches(kafka, topics.events, [1, 5, 3])
    records = [r async for r in read_records(kafka.bootstrap, topics.events, follow=False)]
    assert [r.offset for r in records] == list(range(9))
