"""What a broker says the end of a partition is. Tansu 0.6 answers ListOffsets(latest) with
the base offset of the last record batch + 1, not the last offset + 1: a reader that trusts
it stops short whenever the last batch holds more than one record. That is BROKER.md's
"table recovered 99 of 100". The high watermark in fetch answers is right."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from streams.app import TRANSPORT_SCHEME
from streams.cli.console import read_records
from streams.kafka_clients import takes_idempotent_producer
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


async def refused_by_tansu(producer: AIOKafkaProducer, what: str) -> None:
    """Tansu 0.6 cannot start ``producer`` (InitProducerId answers an unknown error)."""
    try:
        await asyncio.wait_for(producer.start(), 30)
    except KafkaError:
        return
    finally:
        await producer.stop()
    raise AssertionError(f"Tansu started {what}: revisit docs/brokers.md")


async def test_transactions_are_there_on_kafka_and_not_on_the_embedded_broker(
    kafka: Any, topics: Any
) -> None:
    """Why the worker does not offer Faust's ``exactly_once`` yet (docs/brokers.md): on
    Tansu 0.6 a transactional producer cannot even start (InitProducerId with a
    transactional id answers an unknown error); on Apache Kafka an aborted write stays
    hidden from a read_committed reader."""
    await create_topic(kafka, topics.outcomes, 1)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, transactional_id=f"tx-{topics.outcomes}"
    )
    if kafka.kind == "tansu":
        await refused_by_tansu(producer, "a transactional producer")
        return
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topics.outcomes, b"kept", partition=0)
        await producer.begin_transaction()
        await producer.send_and_wait(topics.outcomes, b"aborted", partition=0)
        await producer.abort_transaction()
    finally:
        await producer.stop()
    reader = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await reader.start()
    try:
        tp = TopicPartition(topics.outcomes, 0)
        reader.assign([tp])
        await reader.seek_to_beginning(tp)
        batch = await reader.getmany(tp, timeout_ms=5000)
        assert [record.value for record in batch.get(tp, [])] == [b"kept"]
    finally:
        await reader.stop()


async def test_an_idempotent_producer_starts_on_kafka_and_not_on_the_embedded_broker(
    kafka: Any, topics: Any
) -> None:
    """Why a record can be written twice without a kill (docs/brokers.md): a producer
    retrying a request the broker had already written writes it again unless it is
    idempotent, and on Tansu 0.6 an idempotent producer cannot start (InitProducerId
    answers an unknown error even without a transactional id)."""
    await create_topic(kafka, topics.outcomes, 1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, enable_idempotence=True)
    if kafka.kind == "tansu":
        await refused_by_tansu(producer, "an idempotent producer")
        return
    await producer.start()
    try:
        await producer.send_and_wait(topics.outcomes, b"once", partition=0)
    finally:
        await producer.stop()


async def test_the_workers_producer_is_idempotent_where_the_broker_takes_one(
    kafka: KafkaTarget, topics: Any
) -> None:
    """``kafka_idempotence=auto``: the worker asks the broker first, and its producer
    (Faust's, ours) is made idempotent only where the broker takes one."""
    takes = await takes_idempotent_producer(kafka.bootstrap, None)
    assert takes is (kafka.kind != "tansu")
    await create_topic(kafka, topics.outcomes, 1)
    app: Any = faust.App(
        f"idempotence-{uuid.uuid4().hex[:8]}",
        broker=f"{TRANSPORT_SCHEME}://{kafka.bootstrap}",
        autodiscover=False,
    )
    app.idempotent_producer = takes
    producer = app.producer
    await producer.start()
    try:
        client = producer._ensure_producer()  # aiokafka's: it keeps sequence numbers
        assert (client._txn_manager is not None) is takes
        await producer.send_and_wait(topics.outcomes, None, b"once", 0, None, None)
    finally:
        await producer.stop()
    records = [r async for r in read_records(kafka.bootstrap, topics.outcomes, follow=False)]
    assert [record.value for record in records] == [b"once"]


async def test_a_worker_told_to_be_idempotent_on_a_broker_that_refuses_says_so(
    kafka: KafkaTarget, start_worker: Any
) -> None:
    worker = start_worker(
        "destinations:\n  - id: crm\n    url: https://crm.example.com/leads\n",
        env={"COURIER_KAFKA_IDEMPOTENCE": "on"},
    )
    if kafka.kind != "tansu":
        await worker.logged("courier: producer: idempotent")
        return
    assert worker.process is not None
    assert await asyncio.to_thread(worker.process.wait, 120) == 2
    lines = worker.log().strip().splitlines()
    assert lines[-1] == (
        "courier: kafka_idempotence: on, but the broker did not start an idempotent "
        "producer (InitProducerId refused, or not answered in 30 s; the embedded Tansu "
        "always refuses): set COURIER_KAFKA_IDEMPOTENCE=auto or off"
    )
    assert "Traceback" not in worker.log()


async def test_a_fetch_past_the_end_of_the_log_starts_again_on_kafka_and_waits_on_tansu(
    kafka: KafkaTarget,
) -> None:
    # Where a group stands after its topic was deleted and created again (Tansu keeps the
    # group's offsets; Kafka drops them with the topic, this is what it would do if not).
    topic = f"past-the-end-{uuid.uuid4().hex[:8]}"
    await produce_batches(kafka, topic, [1, 1])
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 10)
        got = await consumer.getmany(tp, timeout_ms=3000)
        got = got or await consumer.getmany(tp, timeout_ms=3000)
        if kafka.kind == "tansu":
            # No "offset out of range": nothing, and the high watermark says where the end is.
            assert not got and await consumer.position(tp) == 10
            assert consumer.highwater(tp) == 2
        else:
            assert [r.offset for r in got[tp]] == [0, 1]  # reset to the beginning
    finally:
        await consumer.stop()
